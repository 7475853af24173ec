"""Events/s of the data stages: synthetic generation, read + validation, sequence building, tokenizer encode."""

from __future__ import annotations

import time
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


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


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
        sequences (all entity types) and tokenizer encode.
    """
    work_dir = Path(work_dir)
    events_dir = work_dir / "events"
    n_merchants = max(n_customers // 10, 50)
    config = synthetic_config(seed=seed, n_events=n_events, n_customers=n_customers, n_merchants=n_merchants,
                              n_issuers=30, events_dir=str(events_dir))
    summary, t_gen = _timed(lambda: write_synthetic(config, progress=True))
    schema = synthetic_schema(events_dir, work_dir)
    raw, t_read = _timed(lambda: read_events(schema))
    result, t_val = _timed(lambda: validate(raw, schema, quarantine_dir=work_dir / "quarantine"))
    events = result.table
    n = events.num_rows
    del raw
    seq_dir = work_dir / "sequences"
    manifest, t_seq = _timed(lambda: build_sequences(events, schema, seq_dir))
    del events, result
    customer_files = sorted((seq_dir / "customer").glob("part-*.parquet"))
    tables = [pq.read_table(f) for f in customer_files]
    tokenizer, t_fit = _timed(lambda: EventTokenizer.fit(tables, schema, progress=False))
    n_customer_events = sum(int(t["length"].to_numpy().sum()) for t in tables)
    _, t_enc = _timed(lambda: [tokenizer.encode(t) for t in tables])

    def row(count: int, seconds: float) -> dict:
        return {"events": int(count), "seconds": round(seconds, 3), "events_per_s": round(count / seconds)}

    assert isinstance(manifest, SequenceManifest)
    return {
        "generation": row(summary.n_events, t_gen),
        "read": row(n, t_read),
        "validation": row(n, t_val),
        "sequences": row(n, t_seq),
        "tokenizer_fit": row(n_customer_events, t_fit),
        "tokenizer_encode": row(n_customer_events, t_enc),
        "quarantined": result.n_quarantined,
    }
