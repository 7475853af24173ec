"""pytorch-lifestream CoLES (GRU and transformer) on our sequence shards: throughput and embeddings.

    bash benchmarks/lifestream/setup_env.sh      # once: the isolated ptls environment (.venv-lifestream)
    python scripts/bench_lifestream.py --seq-dir data/synthetic/sequences/pretrain --hidden 128 --steps 200 \
        --out outputs/bench/lifestream --schema conf/data/synthetic.yaml

Prints one JSON object: encoder -> {events_per_s, params, wall_s, ..., entity_embeddings, pit_embeddings}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: `benchmarks` is not installed

from benchmarks.lifestream.harness import ENCODERS, run_lifestream_benchmark  # noqa: E402


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(",") if v]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-dir", required=True, help="<seq-dir>/<entity-type>/part-*.parquet")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", required=True)
    p.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated: rnn,transformer")
    p.add_argument("--schema", help="conf/data/<name>.yaml: fields and labels from the DataSchema")
    p.add_argument("--labels", help="comma-separated label columns (when no --schema)")
    p.add_argument("--exclude", default="", help="comma-separated columns to leave out (e.g. text fields)")
    p.add_argument("--embed-seq-dir", help="shards to embed (default: --seq-dir)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="KEY=VALUE run_coles.py options, e.g. --extra split_count=5 pit_from=2024-04-01 no_pit=true")
    args = p.parse_args()

    schema = None
    if args.schema:
        from foundation.data.schema import DataSchema

        # Only fields and labels are read; the source path the YAML interpolates is never opened.
        schema = DataSchema.from_yaml(args.schema, root={"paths": {"root_dir": ".", "data_dir": "data"}})
    options = {}
    for item in args.extra:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--extra {item!r}: expected KEY=VALUE")
        # Bare run_coles.py flags (no_pit, no_time_features) take true/false.
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    results = run_lifestream_benchmark(
        args.seq_dir, args.hidden, args.steps, args.out, encoders=_names(args.encoders), schema=schema,
        labels=_names(args.labels), exclude=_names(args.exclude) or (), embed_seq_dir=args.embed_seq_dir,
        batch_size=args.batch_size, max_len=args.max_len, **options)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
