"""Run the online scoring service: python scripts/serve.py checkpoint=checkpoints/<run> finetune_run=<run>

Without a checkpoint the service only ingests events (scores answer 503). See docs/guide/serving.md."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from foundation.serving.app import serve

    run_cli(lambda: serve(cfg))


if __name__ == "__main__":
    main()
