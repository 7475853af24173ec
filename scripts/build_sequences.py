"""Validate a dataset and write its sequence shards with the pyarrow or the Spark backend:

    python scripts/build_sequences.py data=synthetic backend=spark period=pretrain spark.master=local[2]

The last line printed is the sequence folder, so runs can be chained."""

import re
import sys

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli

# Hydra's override grammar reads `[` as the start of a list, so `spark.master=local[2]` would be a syntax
# error; Spark masters are plain strings, so such a value is quoted before Hydra parses the command line.
_MASTER = re.compile(r"^(\+{0,2}spark\.master)=([^'\"].*\[.*)$")


def quote_master(argv: list[str]) -> list[str]:
    """`spark.master=local[2]` -> `spark.master='local[2]'`; every other argument unchanged."""
    return [_MASTER.sub(r"\1='\2'", arg) for arg in argv]


@hydra.main(version_base="1.3", config_path="../conf", config_name="build_sequences")
def main(cfg: DictConfig) -> None:
    from foundation.data.spark.backends import build_sequence_folder

    def job():
        report = build_sequence_folder(cfg)
        for line in report.lines():
            print(line)
        return report.out_dir

    run_cli(job)


if __name__ == "__main__":
    sys.argv = quote_master(sys.argv)
    main()
