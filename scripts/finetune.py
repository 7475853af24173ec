"""Fine-tune task heads: python scripts/finetune.py task=fraud head=all checkpoint=checkpoints/<run>

Prints the results table; the last line printed is the run folder (report, heads/<task>/<head>/)."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="finetune")
def main(cfg: DictConfig) -> None:
    from foundation.finetuning import finetune

    run_cli(lambda: finetune(cfg))


if __name__ == "__main__":
    main()
