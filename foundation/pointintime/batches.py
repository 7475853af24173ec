"""Point-in-time model inputs built from rows: a live history -> sequence tables -> model batches.

The online scorer calls these on one entity's live history; the batch path reads the same layouts from the
sequence shards, so online == batch by construction.

- `event_rows` / `bucket_rows`: a live history (canonical rows) -> a one-row sequence table (the layout of
  `foundation.data.sequences`; hourly buckets for aggregate entities).
- `canonical_rows`: canonical rows -> a canonical event table (raw-field features of an attempt).
- `window_batch` / `event_batch`: encoded sequence + a window (or one event) -> the model batch
  (`foundation.data.collate.assemble`'s keys and shapes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from foundation.data.aggregates import AggregateSpec, aggregate_shard
from foundation.data.collate import ArrowRows, assemble, batch_columns


def _list_column(values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


def event_rows(entity_type: str, entity_id: str, events: Sequence[Mapping[str, Any]], canonical: pa.Schema,
               fields: Sequence[str]) -> pa.Table:
    """A one-row sequence table (the per-entity sequence layout) from canonical rows of one entity.

    Args:
        entity_type, entity_id: the entity.
        events: canonical rows (event_time and timestamp fields as epoch ms), time-ordered.
        canonical: the canonical arrow schema (DataSchema.canonical_schema()), for the column types.
        fields: field names to include (labels are never features and are left out).
    Returns:
        pa.Table, 1 row: entity_type, entity_id, length, event_id, event_time, one list column per field.
    """
    columns: dict[str, pa.Array] = {
        "entity_type": pa.array([entity_type]), "entity_id": pa.array([entity_id]),
        "length": pa.array([len(events)], pa.int32()),
        "event_id": _list_column(pa.array([e["event_id"] for e in events], pa.string())),
        "event_time": _list_column(pa.array([e["event_time"] for e in events], pa.int64()).cast(pa.timestamp("ms"))),
    }
    for name in fields:
        dtype = canonical.field(name).type
        values = [e.get(name) for e in events]
        array = (pa.array(values, pa.int64()).cast(dtype) if pa.types.is_timestamp(dtype)
                 else pa.array(values, dtype, from_pandas=True))
        columns[name] = _list_column(array)
    return pa.table(columns)


def canonical_rows(events: Sequence[Mapping[str, Any]], canonical: pa.Schema) -> pa.Table:
    """Canonical rows (timestamps as epoch ms) -> a canonical event table, e.g. for the raw-field
    features of GBDT heads."""
    columns = {}
    for f in canonical:
        values = [e.get(f.name) for e in events]
        columns[f.name] = (pa.array(values, pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                           else pa.array(values, f.type, from_pandas=True))
    return pa.table(columns, schema=canonical)


def bucket_rows(entity_type: str, entity_id: str, events: Sequence[Mapping[str, Any]],
                spec: AggregateSpec) -> pa.Table:
    """A one-row aggregate sequence table (hourly buckets): the entity's raw events -> one element per non-empty
    bucket, stamped with the bucket end, computed by the batch path's own `aggregate_shard`.

    Args:
        events: canonical rows of one aggregate entity, time-ordered by (event_time, event_id).
        spec: the entity type's AggregateSpec (bucket width, aggregated fields, counted values).
    Returns:
        pa.Table, 1 row: entity_type, entity_id, length, event_id, event_time, the agg_* list columns.
    """
    rows: dict[str, pa.Array] = {
        "event_time": pa.array([e["event_time"] for e in events], pa.int64()).cast(pa.timestamp("ms"))}
    for name in spec.numeric_fields:
        rows[name] = pa.array([e.get(name) for e in events], pa.float64(), from_pandas=True)
    if spec.count_values:
        rows[spec.count_by] = pa.array([e.get(spec.count_by) for e in events], pa.string())
    if spec.distinct_customers:
        rows["customer_id"] = pa.array([e.get("customer_id") for e in events], pa.string())
    rank = np.zeros(len(events), dtype=np.int64)
    _, buckets = aggregate_shard(pa.table(rows), rank, spec, entity_type, pa.array([entity_id]))
    columns = {"entity_type": pa.array([entity_type]), "entity_id": pa.array([entity_id]),
               "length": pa.array([buckets.num_rows], pa.int32())}
    columns.update({name: _list_column(buckets[name].combine_chunks()) for name in buckets.column_names})
    return pa.table(columns)


def window_batch(encoded: pa.Table, field_specs: Sequence[Mapping[str, Any]], start: int,
                 count: int) -> dict[str, torch.Tensor]:
    """The model batch of events [start, start + count) of a one-row encoded table.

    Args:
        encoded: EventTokenizer.encode output, 1 row.
        field_specs: EventTokenizer.field_specs().
        start, count: the window inside the row.
    Returns:
        batch dict with B = 1, T = count.
    """
    source = ArrowRows(encoded)
    zero = np.zeros(1, dtype=np.int64)
    return assemble(source, batch_columns(field_specs), zero, np.array([start]), np.array([count]), zero)


def event_batch(encoded: pa.Table, field_specs: Sequence[Mapping[str, Any]], position: int) -> dict[str, torch.Tensor]:
    """The model batch holding only event `position` of a one-row encoded table (B = T = 1).

    Same keys and values as `window_batch(encoded, field_specs, position, 1)`, gathered directly: scoring
    builds one such batch per request and the general gather costs more than the model call.
    """
    batch: dict[str, torch.Tensor] = {
        "entity_type": torch.tensor([int(encoded["entity_type"][0].as_py())]),
        "lengths": torch.ones(1, dtype=torch.long),
        "attention_mask": torch.ones(1, 1, dtype=torch.bool),
        "entity_index": torch.zeros(1, dtype=torch.long),
    }
    for column in batch_columns(field_specs):
        dtype = torch.float32 if column.kind in ("float", "label") else torch.long
        if column.name not in encoded.column_names:
            shape = (1, 1, column.max_tokens) if column.kind == "tokens" else (1, 1)
            batch[column.name] = torch.full(shape, column.pad, dtype=dtype)
            continue
        values = encoded[column.name].chunk(0).values
        if column.kind == "tokens":
            flat = values.values.to_numpy(zero_copy_only=False)
            value = flat[position * column.max_tokens : (position + 1) * column.max_tokens].reshape(1, 1, -1)
        else:
            value = values.to_numpy(zero_copy_only=False)[position : position + 1].reshape(1, 1)
        batch[column.name] = torch.tensor(value, dtype=dtype)
    return batch
