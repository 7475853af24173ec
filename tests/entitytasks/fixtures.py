"""A hand-built canonical event table with known entity-task answers (times in days after 2024-02-01)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DAY = 86_400_000
T0 = 1_706_745_600_000  # 2024-02-01T00:00:00Z, the train period's start (tests/conftest.py PERIODS)

# (day, merchant, customer, event_type, decline_code, amount, is_fraud)
ROWS = [
    (-40, "m1", "c1", "charge", None, 10.0, 0.0),   # history before the first as-of date
    (-5, "m1", "c1", "charge", None, 20.0, 1.0),    # fraud label known at day 2 (7-day delay)
    (-1, "m1", "c2", "decline", "51", 30.0, 0.0),
    (0, "m1", "c1", "charge", None, 40.0, 0.0),     # exactly at as_of = day 0: a feature, not the target
    (1, "m1", "c1", "charge", None, 50.0, 0.0),
    (2, "m1", "c2", "dispute", None, 50.0, None),
    (3, "m1", "c2", "decline", "51", 60.0, 1.0),
    (10, "m1", "c1", "charge", None, 70.0, 0.0),
    (30, "m1", "c1", "charge", None, 80.0, 1.0),    # exactly at as_of + 30d: the last event of the target
    (31, "m1", "c1", "dispute", None, 80.0, None),  # after the horizon
    (-3, "m2", "c3", "charge", None, 5.0, 0.0),
    (45, "m2", "c3", "charge", None, 5.0, 0.0),
]


def fixture_events(rows: list[tuple] = ROWS) -> pa.Table:
    """The canonical events table (what `load_events` returns) of `rows`, in an arbitrary row order."""
    rows = rows[::-1]  # the timeline sorts: the table's order must not matter
    return pa.table({
        "event_id": pa.array([f"e{i:03d}" for i in range(len(rows))], pa.string()),
        "event_time": pa.array([T0 + int(r[0] * DAY) for r in rows], pa.timestamp("ms")),
        "customer_id": pa.array([r[2] for r in rows], pa.string()),
        "merchant_id": pa.array([r[1] for r in rows], pa.string()),
        "issuer_id": pa.array(["i1"] * len(rows), pa.string()),
        "event_type": pa.array([r[3] for r in rows], pa.string()),
        "decline_code": pa.array([r[4] for r in rows], pa.string()),
        "amount": pa.array([r[5] for r in rows], pa.float64()),
        "channel": pa.array(["ecommerce"] * len(rows), pa.string()),
        "is_fraud": pa.array([np.nan if r[6] is None else r[6] for r in rows], pa.float64()),
        "approved": pa.array([1.0] * len(rows), pa.float64()),
    })


def at(day: float) -> np.ndarray:
    return np.array([T0 + int(day * DAY)], np.int64)
