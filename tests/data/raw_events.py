"""Tiny raw event tables for the schema/validation tests (no reads from /work/shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


def synthetic_raw(n: int = 200, seed: int = 0) -> pa.Table:
    """Raw events with the column names and types of the synthetic world (the synthetic raw event contract)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "ms").astype(np.int64)
    ts = np.sort(start + rng.integers(0, 180 * 86_400_000, n))
    event_type = rng.choice(["charge", "decline", "refund", "dispute"], n, p=[0.8, 0.1, 0.05, 0.05])
    charge = np.isin(event_type, ["charge", "decline"])
    decline_code = np.where(event_type == "decline", rng.choice(["05", "51", "59"], n), None)
    return pa.table({
        "event_id": pa.array(np.arange(1000, 1000 + n, dtype=np.int64)),
        "ts": pa.array(ts, pa.timestamp("ms")),
        "card_id": pa.array(rng.integers(0, 30, n)),
        "merchant_id": pa.array(rng.integers(0, 10, n)),
        "issuer_id": pa.array(rng.integers(0, 3, n)),
        "event_type": pa.array(event_type),
        "amount": pa.array(np.round(rng.lognormal(3, 1, n), 2)),
        "currency": pa.array(rng.choice(["USD", "EUR"], n)),
        "mcc": pa.array(rng.choice(["5411", "5812", "0742"], n)),
        "merchant_country": pa.array(rng.choice(["US", "FR"], n)),
        "card_country": pa.array(rng.choice(["US", "GB"], n)),
        "channel": pa.array(rng.choice(["card_present", "ecommerce", "recurring"], n)),
        "merchant_descriptor": pa.array(rng.choice(["AMZN MKTP US*2K4", "SHELL OIL 5744"], n)),
        "decline_code": pa.array(decline_code, pa.string()),
        "disputed_event_id": pa.array(np.where(event_type == "dispute", 1000, None), pa.int64()),
        "is_fraud": pa.array(np.where(charge, (rng.random(n) < 0.05).astype(float), np.nan), from_pandas=True),
        "approved": pa.array(np.where(charge, (event_type == "charge").astype(float), np.nan), from_pandas=True),
    })


def sparkov_raw(n: int = 200, seed: int = 0) -> pa.Table:
    """A slice shaped like the real Sparkov file: same column names and arrow types."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-01-01T00:00:00", "us").astype(np.int64)
    ts = np.sort(start + rng.integers(0, 730 * 86_400_000_000, n))
    cards = np.array(["213167089870927", "3558416169284518", "4613314721966", "0060495593109"])
    return pa.table({
        "event_id": pa.array(np.arange(n, dtype=np.int64)),
        "card_id": pa.array(rng.choice(cards, n), pa.large_string()),
        "ts": pa.array(ts, pa.timestamp("us")),
        "category": pa.array(rng.choice(["gas_transport", "grocery_pos", "shopping_net"], n), pa.large_string()),
        "amount": pa.array(np.round(rng.lognormal(3.5, 1.2, n), 2)),
        "merchant_id": pa.array(rng.choice(["fraud_Harber Inc", "fraud_Berge LLC", "fraud_Kuhn LLC"], n),
                                pa.large_string()),
        "merch_lat": pa.array(rng.uniform(25, 48, n)),
        "merch_long": pa.array(rng.uniform(-122, -70, n)),
        "cust_lat": pa.array(rng.uniform(25, 48, n)),
        "cust_long": pa.array(rng.uniform(-122, -70, n)),
        "state": pa.array(rng.choice(["RI", "TX", "NC"], n), pa.large_string()),
        "city_pop": pa.array(rng.integers(100, 2_000_000, n)),
        "gender": pa.array(rng.choice(["M", "F"], n), pa.large_string()),
        "dob": pa.array(rng.choice(["1987-12-20", "1963-10-26"], n), pa.large_string()),
        "is_fraud": pa.array((rng.random(n) < 0.05).astype(np.int64)),
    })


def small_schema_dict(**overrides) -> dict:
    """A plain-dict schema over `synthetic_raw` columns (no interpolation), for error-path tests."""
    cfg = {
        "name": "tiny",
        "source": {"path": "events.parquet", "format": "parquet"},
        "timestamp": {"column": "ts", "unit": None},
        "event_id": "event_id",
        "entities": {"customer": {"column": "card_id"}, "merchant": {"column": "merchant_id"},
                     "issuer": {"column": "issuer_id", "representation": "aggregate", "bucket": "1h"}},
        "fields": {"event_type": {"column": "event_type", "type": "categorical", "outcome": True},
                   "amount": {"column": "amount", "type": "numeric", "min": 0, "allow_null": False},
                   "mcc": {"column": "mcc", "type": "categorical", "min_count": 5},
                   "descriptor": {"column": "merchant_descriptor", "type": "text"}},
        "labels": {"is_fraud": {"column": "is_fraud"}},
        "splits": {"pretrain": {"start": "2024-01-01", "end": "2024-04-01"},
                   "train": {"start": "2024-02-01", "end": "2024-04-08"},
                   "validation": {"start": "2024-04-15", "end": "2024-05-13"},
                   "test": {"start": "2024-05-20", "end": "2024-07-01"}, "label_delay": "7d"},
        "validation": {"on_error": "raise"},
    }
    cfg.update(overrides)
    return cfg

