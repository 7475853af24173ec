"""Tiny raw event files in the synthetic world's layout (docs/architecture.md section 7), written by the
tests themselves, and the repo's conf/data/synthetic.yaml pointed at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from foundation.data.schema import DataSchema

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_YAML = REPO / "conf" / "data" / "synthetic.yaml"
START_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def write_events(path: Path, n: int = 400, n_customers: int = 12, n_merchants: int = 6, n_issuers: int = 3,
                 seed: int = 0) -> pa.Table:
    """Write `n` raw events to `path` (parquet, synthetic column names), time-ordered; returns the table."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(10 * 60_000, n).astype(np.int64) + 1  # ~10 minutes apart, strictly increasing
    ts = START_MS + np.cumsum(gaps)
    kind = rng.choice(np.array(["charge", "decline", "refund"]), n, p=[0.8, 0.15, 0.05])
    attempt = kind != "refund"
    table = pa.table({
        "event_id": pa.array(np.arange(1000, 1000 + n), pa.int64()),
        "ts": pa.array(ts, pa.timestamp("ms")),
        "card_id": pa.array(rng.integers(0, n_customers, n), pa.int64()),
        "merchant_id": pa.array(rng.integers(100, 100 + n_merchants, n), pa.int64()),
        "issuer_id": pa.array(rng.integers(900, 900 + n_issuers, n), pa.int64()),
        "event_type": pa.array(kind),
        "amount": pa.array(np.round(rng.lognormal(3.0, 1.0, n), 2)),
        "currency": pa.array(rng.choice(np.array(["USD", "EUR"]), n)),
        "mcc": pa.array(rng.choice(np.array(["5411", "5812", "5999", "4111"]), n)),
        "merchant_country": pa.array(rng.choice(np.array(["US", "GB"]), n)),
        "card_country": pa.array(rng.choice(np.array(["US", "FR"]), n)),
        "channel": pa.array(rng.choice(np.array(["card_present", "ecommerce", "recurring"]), n)),
        "decline_code": pa.array(np.where(kind == "decline", "05", None).tolist(), pa.string()),
        "merchant_descriptor": pa.array([f"SHOP {i % 7} STORE" for i in range(n)]),
        "is_fraud": pa.array(np.where(attempt, (rng.random(n) < 0.05).astype(float), np.nan), from_pandas=True),
        "approved": pa.array(np.where(attempt, (kind == "charge").astype(float), np.nan), from_pandas=True),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table


def synthetic_schema(events_path: Path, data_dir: Path) -> DataSchema:
    """The repo's synthetic data schema with its source pointed at `events_path`."""
    return DataSchema.from_yaml(SYNTHETIC_YAML, overrides=[f"source.path={events_path}"],
                                root={"paths": {"data_dir": str(data_dir)}})


def json_event(table: pa.Table, i: int) -> dict:
    """Row i of a raw table as the JSON a client sends (ISO timestamps, NaN labels as null)."""
    from foundation.serving.replay import json_value

    return {k: json_value(v) for k, v in table.slice(i, 1).to_pylist()[0].items()}


def build_checkpoint(run_dir: Path, events_dir: Path, data_dir: Path, max_position: int = 8, seed: int = 0,
                     **config_overrides):
    """A real (untrained) tiny checkpoint as training writes it: <run>/hf (model, next-event heads, tokenizer),
    <run>/config.yaml.

    The tokenizer is fitted on the fixture's own sequences; the model is `tiny` with a short window
    (max_position) so that short histories already cross several window blocks; `config_overrides` are
    FoundationConfig fields (e.g. encoder_type="gru").

    Returns:
        (schema, sequence folder with the batch path's shards of every event).
    """
    import torch
    from omegaconf import OmegaConf

    from foundation.data.events import read_events
    from foundation.data.sequences import build_sequences
    from foundation.data.validate import validate
    from foundation.model import FoundationModel, tiny
    from foundation.objectives.next_event import NextEventObjective
    from foundation.pointintime import save_next_event_heads
    from foundation.tokenization import EventTokenizer

    root = {"paths": {"data_dir": str(data_dir)}}
    node = OmegaConf.merge(OmegaConf.load(SYNTHETIC_YAML), OmegaConf.from_dotlist([f"source.path={events_dir}"]))
    data_cfg = OmegaConf.to_container(OmegaConf.create({**root, "data": node}), resolve=True)["data"]
    schema = DataSchema.from_config(data_cfg)
    events = validate(read_events(schema), schema, on_error="raise").table
    seq_dir = run_dir / "sequences"
    manifest = build_sequences(events, schema, seq_dir)
    tables = [pq.read_table(seq_dir / path) for stats in manifest.entity_types.values() for path in stats.shards]
    tokenizer = EventTokenizer.fit(tables, schema, min_count=1, num_bins=8, num_time_bins=8, text_vocab_size=60,
                                   max_tokens=4, progress=False)
    config = tiny(fields=tokenizer.field_specs(), entity_types=tokenizer.entity_types, max_position=max_position,
                  dropout=0.0, **config_overrides)
    torch.manual_seed(seed)
    model = FoundationModel(config)
    model.save_pretrained(run_dir / "hf")
    # the next-event heads, as the HFExport callback writes them (event surprise features)
    save_next_event_heads(NextEventObjective(config.hidden_size, config.fields), run_dir / "hf")
    tokenizer.save_pretrained(run_dir / "hf")
    OmegaConf.save(OmegaConf.create({"data": data_cfg}), run_dir / "config.yaml")
    return schema, seq_dir
