"""A tiny payments world written by the tests themselves (raw files in the synthetic layout of
docs/architecture.md section 7, spanning the splits of conf/data/synthetic.yaml) and a tiny untrained
checkpoint laid out as a pretraining run writes it (<run>/hf with the next-event heads + <run>/config.yaml).

Planted signals, so heads have something easy to learn from an event's own non-outcome fields:
fraud = gambling (mcc 7995) bought online; a decline = an amount above 250.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[2]
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
END_MS = 1_719_792_000_000  # 2024-07-01T00:00:00Z
MCCS = np.array(["5411", "5812", "5999", "4111", "7995"])


def raw_events(n: int = 1500, n_customers: int = 24, n_merchants: int = 6, n_issuers: int = 3, seed: int = 0,
               start_ms: int = START_MS, end_ms: int = END_MS, first_id: int = 1) -> pa.Table:
    """`n` raw events between start and end, with charge attempts (labels), refunds and disputes.

    A few pairs of events share a millisecond (ties broken by event id), and disputes land days after the
    charge they reference.
    """
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(start_ms, end_ms, n))
    ts[1::97] = ts[0::97][: len(ts[1::97])]  # same-millisecond pairs
    ts = np.sort(ts)
    mcc = rng.choice(MCCS, n, p=[0.35, 0.25, 0.2, 0.1, 0.1])
    channel = rng.choice(np.array(["card_present", "ecommerce", "recurring"]), n, p=[0.5, 0.4, 0.1])
    amount = np.round(rng.lognormal(3.5, 1.2, n), 2)
    kind = np.where(amount > 250, "decline", "charge").astype(object)
    kind[rng.random(n) < 0.04] = "refund"
    attempt = kind != "refund"
    fraud = (mcc == "7995") & (channel == "ecommerce")
    ids = np.arange(first_id, first_id + n)
    # disputes of some fraudulent charges, 2-10 days later, as separate events at the end of the table
    charged = np.flatnonzero(fraud & (kind == "charge"))
    table = pa.table({
        "event_id": pa.array(ids, pa.int64()),
        "ts": pa.array(ts, pa.timestamp("ms")),
        "card_id": pa.array(rng.integers(0, n_customers, n), pa.int64()),
        "merchant_id": pa.array(rng.integers(100, 100 + n_merchants, n), pa.int64()),
        "issuer_id": pa.array(rng.integers(900, 900 + n_issuers, n), pa.int64()),
        "event_type": pa.array(kind.tolist(), pa.string()),
        "amount": pa.array(amount),
        "currency": pa.array(rng.choice(np.array(["USD", "EUR"]), n)),
        "mcc": pa.array(mcc),
        "merchant_country": pa.array(rng.choice(np.array(["US", "GB"]), n)),
        "card_country": pa.array(rng.choice(np.array(["US", "FR"]), n)),
        "channel": pa.array(channel),
        "decline_code": pa.array(np.where(kind == "decline", "51", None).tolist(), pa.string()),
        "merchant_descriptor": pa.array([f"SHOP {i % 9} STORE" for i in range(n)]),
        "disputed_event_id": pa.nulls(n, pa.int64()),
        "is_fraud": pa.array(np.where(attempt, fraud.astype(float), np.nan), from_pandas=True),
        "approved": pa.array(np.where(attempt, (kind == "charge").astype(float), np.nan), from_pandas=True),
    })
    if len(charged):
        disputes = table.take(pa.array(charged[: max(1, len(charged) // 2)]))
        lag = rng.integers(2 * 86_400_000, 10 * 86_400_000, disputes.num_rows)
        dispute_ts = np.minimum(disputes["ts"].cast(pa.int64()).to_numpy() + lag, end_ms - 1)
        disputes = disputes.set_column(0, "event_id", pa.array(ids[-1] + 1 + np.arange(disputes.num_rows)))
        disputes = disputes.set_column(1, "ts", pa.array(dispute_ts).cast(pa.timestamp("ms")))
        disputes = disputes.set_column(disputes.schema.get_field_index("disputed_event_id"), "disputed_event_id",
                                       table["event_id"].take(pa.array(charged[: disputes.num_rows])))
        disputes = disputes.set_column(disputes.schema.get_field_index("event_type"), "event_type",
                                       pa.array(["dispute"] * disputes.num_rows))
        for label in ("is_fraud", "approved"):
            disputes = disputes.set_column(disputes.schema.get_field_index(label), label,
                                           pa.nulls(disputes.num_rows, pa.float64()))
        table = pa.concat_tables([table, disputes])
    return table


def data_config(events_dir: Path, data_dir: Path) -> DictConfig:
    """The repo's conf/data/synthetic.yaml pointed at `events_dir`, with paths, as `prepare` reads it."""
    cfg = OmegaConf.create({"paths": {"root_dir": str(data_dir.parent), "data_dir": str(data_dir)},
                            "tokenizer": {"min_count": 2, "num_bins": 8, "max_tokens": 4}})
    cfg.data = OmegaConf.load(REPO / "conf" / "data" / "synthetic.yaml")
    cfg.data.source.path = str(events_dir)
    return cfg


def write_events(events_dir: Path, table: pa.Table) -> Path:
    events_dir.mkdir(parents=True, exist_ok=True)
    for old in events_dir.glob("*.parquet"):
        old.unlink()
    pq.write_table(table, events_dir / "part-00000.parquet")
    return events_dir


def build_run(root: Path, table: pa.Table | None = None, max_position: int = 8, seed: int = 0,
              hidden_size: int = 32) -> Path:
    """Raw events -> prepared data -> a tiny untrained model saved as a pretraining run folder.

    Returns:
        The run folder (hf/ with model + tokenizer, config.yaml with the data config).
    """
    import torch

    from foundation.model import FoundationModel, tiny
    from foundation.objectives.next_event import NextEventObjective
    from foundation.pointintime import save_next_event_heads
    from foundation.preparation import prepare

    table = raw_events(seed=seed) if table is None else table
    cfg = data_config(write_events(root / "events", table), root / "data")
    prepared = prepare(cfg, encode_periods=())
    torch.manual_seed(seed)
    config = tiny(prepared.tokenizer.field_specs(), prepared.tokenizer.entity_types, max_position=max_position,
                  hidden_size=hidden_size, dropout=0.0)
    model = FoundationModel(config).eval()
    run = root / "run"
    model.save_pretrained(run / "hf")
    # the next-event heads, as pretraining exports them (event surprise features)
    save_next_event_heads(NextEventObjective(config.hidden_size, config.fields), run / "hf")
    prepared.tokenizer.save_pretrained(run / "hf")
    OmegaConf.save(cfg, run / "config.yaml", resolve=True)
    return run


@dataclass
class World:
    """The tiny world as the tests use it: the run folder, the loaded run, its store and schema."""

    run_dir: Path
    run: Any
    store: Any
    schema: Any


_WORLDS: dict[Path, World] = {}


def session_world(tmp_path_factory: Any) -> World:
    """Build the world once per test session (shared by tests/embeddings and tests/heads modules)."""
    from foundation.pointintime import PretrainedRun

    base = tmp_path_factory.getbasetemp()
    if base not in _WORLDS:
        run_dir = build_run(tmp_path_factory.mktemp("world"))
        run = PretrainedRun.load(run_dir)
        schema, store, _ = run.store(run.data_config())
        _WORLDS[base] = World(run_dir, run, store, schema)
    return _WORLDS[base]
