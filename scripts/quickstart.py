"""The main job on the embedded synthetic data: generate -> validate -> sequences -> tokenizer -> pretrain
-> embeddings + fine-tuned heads -> results table. `make quickstart` runs it with experiment=default."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    from foundation.quickstart import quickstart

    run_cli(lambda: quickstart(cfg))


if __name__ == "__main__":
    main()
