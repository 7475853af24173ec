"""Batch scoring: python scripts/score.py head_dir=<finetune run>/heads/<task>/<head> events=<parquet> out=<path>

Writes event_id, entity ids, event_time, score (and label when the table has it); the last line printed is
the scores file."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    from foundation.finetuning.batch_scoring import score_events

    run_cli(lambda: score_events(cfg))


if __name__ == "__main__":
    main()
