"""Export entity embeddings: python scripts/embed.py checkpoint=checkpoints/<run> mode=last|per_event

The last line printed is the output folder (manifest.json + <entity_type>/part-*.parquet)."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="embed")
def main(cfg: DictConfig) -> None:
    from foundation.embeddings import embed

    run_cli(lambda: embed(cfg))


if __name__ == "__main__":
    main()
