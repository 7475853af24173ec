"""Benchmark every stage on this machine: python scripts/benchmark.py (make bench), about 20 minutes on 2 cores.

Writes benchmarks/results.json and benchmarks/results.md; the last line printed is the path of results.md.
    python scripts/benchmark.py sections=[training,serving]      # some sections (the others stay in results.json)
    python scripts/benchmark.py data.n_events=100000000 data.n_customers=1000000   # scale up
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.lifestream` is not an installed package

from foundation.cli import run_cli  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    from foundation.benchmark.suite import run_suite

    run_cli(lambda: run_suite(cfg))


if __name__ == "__main__":
    main()
