"""Pretrain the foundation model: python scripts/pretrain.py experiment=default model=base objective=combined

The last line printed is the run's checkpoint folder, so runs can be chained."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    from foundation.training import pretrain

    run_cli(lambda: pretrain(cfg))


if __name__ == "__main__":
    main()
