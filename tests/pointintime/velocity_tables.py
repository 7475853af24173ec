"""Tiny hand-built event tables for the velocity tests: one row per (id, hours after T0, ...) tuple."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

T0 = np.datetime64("2024-03-01T05:00", "ms")
HOUR_MS = 3_600_000

COLUMNS = pa.schema([
    ("event_id", pa.string()), ("event_time", pa.timestamp("ms")), ("customer_id", pa.string()),
    ("merchant_id", pa.string()), ("event_type", pa.string()), ("amount", pa.float64()),
    ("is_fraud", pa.float64()), ("disputed_event_id", pa.string()),
])


def event(event_id: str, hours: float, customer: str | None = "c1", merchant: str | None = "m1",
          kind: str = "charge", amount: float = 10.0, fraud: float | None = 0.0, ref: str | None = None) -> dict:
    """One row; disputes default to no label of their own."""
    return {"event_id": event_id, "event_time": T0 + np.timedelta64(int(round(hours * HOUR_MS)), "ms"),
            "customer_id": customer, "merchant_id": merchant, "event_type": kind, "amount": amount,
            "is_fraud": None if kind == "dispute" else fraud, "disputed_event_id": ref}


def table(rows: list[dict], drop: tuple[str, ...] = ()) -> pa.Table:
    """The rows as a canonical table (columns in `drop` removed)."""
    return pa.Table.from_pylist(rows, schema=COLUMNS).drop_columns(list(drop))


def value(features, event_id: str, name: str) -> float:
    """One feature of one event."""
    return float(features.rows([event_id])[0, features.names.index(name)])
