"""Tiny hand-built sequence tables (the sequence shard contract) and their DataSchema for tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema
from tests.conftest import make_schema as data_schema

DESCRIPTORS = ["AMZN MKTP US*2K4", "SHELL OIL 5744", "UBER *TRIP", "NETFLIX.COM", "AMZN MKTP US*9Z1",
               "STARBUCKS 1123", "SHELL OIL 1020", "UBER *EATS"]
MCCS = ["5411", "5812", "4121", "5541", "5999", "7011"]
EVENT_TYPES = ["charge", "decline", "refund", "dispute"]
T0_MS = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC, a Monday


FIELDS: dict[str, dict[str, Any]] = {
    "event_type": {"type": "categorical", "outcome": True, "min_count": 1},
    "amount": {"type": "numeric"},
    "mcc": {"type": "categorical", "min_count": 2},
    "descriptor": {"type": "text"},
}


def make_schema(**field_overrides: Mapping[str, Any]) -> DataSchema:
    """The DataSchema of these tables: FIELDS (a keyword replaces that field's config) and the is_fraud label."""
    return data_schema(fields={**FIELDS, **field_overrides}, labels=("is_fraud",), entities=("customer",))


def sequences_from_events(entity_type: str, entity: np.ndarray, columns: dict[str, pa.Array]) -> pa.Table:
    """Group flat events (already time-ordered within each entity) into one row per entity."""
    order = np.argsort(entity, kind="stable")
    ids, counts = np.unique(entity[order], return_counts=True)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    take = pa.array(order)
    out = {"entity_type": pa.array([entity_type] * len(ids)), "entity_id": pa.array(ids.astype(str)),
           "length": pa.array(counts.astype(np.int32))}
    for name, values in columns.items():
        out[name] = pa.ListArray.from_arrays(offsets, values.take(take))
    return pa.table(out)


def make_events(n_events: int = 300, n_entities: int = 12, seed: int = 0) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Random payment events sorted by time: (entity ids (N,), {column: flat array})."""
    rng = np.random.default_rng(seed)
    times = np.sort(T0_MS + rng.integers(0, 30 * 86_400_000, n_events))
    entity = rng.integers(0, n_entities, n_events)
    amount = np.round(rng.lognormal(3.0, 1.2, n_events), 2)
    amount_arr = pa.array(amount, mask=rng.random(n_events) < 0.05)
    # Labels: 1/0 on most events, null (unknown) on the rest.
    fraud = np.where(rng.random(n_events) < 0.2, np.nan, (rng.random(n_events) < 0.1).astype(np.float64))
    fraud = pa.array(fraud, from_pandas=True)
    columns = {
        "event_id": pa.array(np.arange(n_events).astype(str)),
        "event_time": pa.array(times, pa.timestamp("ms")),
        "event_type": pa.array(rng.choice(EVENT_TYPES, n_events, p=[0.8, 0.1, 0.07, 0.03])),
        "amount": amount_arr,
        "mcc": pa.array(rng.choice(MCCS + ["0001"], n_events, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.09, 0.01])),
        "descriptor": pa.array(rng.choice(DESCRIPTORS, n_events)),
        "is_fraud": fraud,
    }
    return entity, columns


def customer_table(n_events: int = 300, n_entities: int = 12, seed: int = 0) -> pa.Table:
    entity, columns = make_events(n_events, n_entities, seed)
    return sequences_from_events("customer", entity, columns)


def issuer_table(n_buckets: int = 40, seed: int = 1) -> pa.Table:
    """An aggregate entity: hourly buckets with agg_* numeric columns, no schema fields."""
    rng = np.random.default_rng(seed)
    times = T0_MS + 3_600_000 * np.arange(1, n_buckets + 1)
    entity = np.repeat(np.array([0, 1]), [n_buckets // 2, n_buckets - n_buckets // 2])
    times = np.concatenate([times[: n_buckets // 2], times[: n_buckets - n_buckets // 2]])
    columns = {
        "event_time": pa.array(times, pa.timestamp("ms")),
        "agg_n_events": pa.array(rng.integers(0, 50, n_buckets).astype(np.float64)),
        "agg_amount_sum": pa.array(rng.lognormal(6, 1, n_buckets)),
    }
    return sequences_from_events("issuer", entity, columns)


def assert_tables_equal(a: pa.Table, b: pa.Table) -> None:
    """Exact equality of encoded tables, NaN == NaN (labels hold NaN for unknown)."""
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        while pa.types.is_list(x.type):
            assert pc.list_value_length(x).equals(pc.list_value_length(y)), name
            x, y = x.flatten(), y.flatten()
        np.testing.assert_array_equal(x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False),
                                      err_msg=name)
