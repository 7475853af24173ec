"""One stage of scripts/scale_run.py that has no script of its own, in its own process:

    python scripts/scale_stage.py validate  RESULT.json [conf/pretrain.yaml overrides...]   # read + validate
    python scripts/scale_stage.py tokenizer RESULT.json [conf/pretrain.yaml overrides...]   # fit + encode

Writes the stage's counts as JSON to RESULT.json; the last line printed is RESULT.json.
"""

import sys

from foundation.cli import run_cli


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    from foundation.benchmark.scale_stage import run_stage

    def job() -> str:
        print(run_stage(argv[0], argv[1], argv[2:]))
        return argv[1]

    run_cli(job)


if __name__ == "__main__":
    main(sys.argv[1:])
