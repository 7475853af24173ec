"""Events/s of the data stages: synthetic generation, read + validation, sequence building, tokenizer encode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
from omegaconf import OmegaConf

from foundation.data.events import read_events
from foundation.data.schema import DataSchema
from foundation.data.sequences import SequenceManifest, build_sequences
from foundation.data.synthetic import synthetic_config, write_synthetic
from foundation.data.validate import validate
from foundation.tokenization import EventTokenizer

CONF = Path(__file__).resolve().parents[2] / "conf"


@contextmanager
def _stopwatch(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall time of the block to `seconds[stage]`."""
    start = time.perf_counter()
    yield
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def synthetic_schema(events_dir: Path, data_dir: Path) -> DataSchema:
    """The synthetic data config pointed at `events_dir` (quarantine under `data_dir`)."""
    node = OmegaConf.load(CONF / "data" / "synthetic.yaml")
    root = OmegaConf.create({"paths": {"data_dir": str(data_dir), "root_dir": str(data_dir)}, "data": node})
    root.data.source.path = str(events_dir)
    return DataSchema.from_config(root.data)


def bench_data_stages(n_events: int, n_customers: int, work_dir: Path, seed: int = 7) -> dict:
    """Generate `n_events` synthetic events, then validate, build sequences and encode them; time each stage.

    Returns:
        {stage: {"events": N, "seconds": s, "events_per_s": N/s}} for generation, read, validation,
        sequences (all entity types), tokenizer fit and encode (customer sequences), plus the quarantined
        row count and the entities per type.
    """
    work_dir = Path(work_dir)
    events_dir = work_dir / "events"
    n_merchants = max(n_customers // 10, 60)  # the generator needs two merchants per category (56)
    config = synthetic_config(seed=seed, n_events=n_events, n_customers=n_customers, n_merchants=n_merchants,
                              n_issuers=30, events_dir=str(events_dir))
    seconds: dict[str, float] = {}
    with _stopwatch(seconds, "generation"):
        summary = write_synthetic(config, progress=True)
    schema = synthetic_schema(events_dir, work_dir)
    with _stopwatch(seconds, "read"):
        raw = read_events(schema)
    with _stopwatch(seconds, "validation"):
        result = validate(raw, schema, quarantine_dir=work_dir / "quarantine")
    del raw  # only one copy of the 10M-row table at a time
    n, n_quarantined = result.table.num_rows, result.n_quarantined
    seq_dir = work_dir / "sequences"
    with _stopwatch(seconds, "sequences"):
        manifest = build_sequences(result.table, schema, seq_dir)
    del result
    assert isinstance(manifest, SequenceManifest)
    customer_files = sorted((seq_dir / "customer").glob("part-*.parquet"))
    tables = [pq.read_table(f) for f in customer_files]
    n_customer_events = sum(int(t["length"].to_numpy().sum()) for t in tables)
    with _stopwatch(seconds, "tokenizer_fit"):
        tokenizer = EventTokenizer.fit(tables, schema, progress=False)
    with _stopwatch(seconds, "tokenizer_encode"):
        for table in tables:
            tokenizer.encode(table)  # output dropped shard by shard: the speed is the point here

    def row(stage: str, count: int) -> dict:
        return {"events": int(count), "seconds": round(seconds[stage], 3),
                "events_per_s": round(count / max(seconds[stage], 1e-9))}

    return {
        "generation": row("generation", summary.n_events),
        "read": row("read", n),
        "validation": row("validation", n),
        "sequences": row("sequences", n),
        "tokenizer_fit": row("tokenizer_fit", n_customer_events),
        "tokenizer_encode": row("tokenizer_encode", n_customer_events),
        "quarantined": n_quarantined,
        "entities": {t: s.entities for t, s in manifest.entity_types.items()},
    }
