"""The data path and a short pretraining at scale, each stage in its own process with its wall time and peak RSS:

    python scripts/scale_run.py paths.root_dir=/tmp/scale50m n_events=50000000
    python scripts/scale_run.py paths.root_dir=/tmp/scale1m pretrain.ddp=false pretrain.steps=5

Writes benchmarks/scale.json and benchmarks/scale.md; the world, sequences, runs and stage logs go under the
scratch root `paths.root_dir`. The last line printed is the path of scale.md.
"""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="scale")
def main(cfg: DictConfig) -> None:
    from foundation.benchmark.scale import run_scale

    run_cli(lambda: run_scale(cfg))


if __name__ == "__main__":
    main()
