"""Section 8 of docs/architecture.md as functions: windows, point-in-time entity states, event vectors and
task features. The online scorer calls them on one entity's live history; the batch path (embeddings,
heads) calls the same functions on whole sequences, so online == batch by construction.

- `window_start(i, max_len)`: the one window rule (blocks of stride S = max_len // 2).
- `event_rows` / `bucket_rows`: a live history (canonical rows) -> a one-row sequence table (section 3).
- `window_batch` / `event_batch`: encoded sequence + a window (or one event) -> the section-5 batch.
- `event_vectors`: the model's own event embedding with the `outcome` fields removed (padding ids).
- `task_features`: [h_entity_1(t), ..., h_entity_k(t), event_vector(e), has_history_1, ..., has_history_k].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from foundation.data.aggregates import AggregateSpec, aggregate_shard
from foundation.data.collate import ArrowRows, assemble, batch_columns


def window_start(i: int | np.ndarray, max_len: int) -> int | np.ndarray:
    """First event of the window of event i: max(0, (i // S) * S - (max_len - S)), S = max_len // 2.

    Every event of the block [kS, (k+1)S) shares one start, so one causal pass over
    [kS - (max_len - S), (k+1)S) gives the exact state of every event in the block, and the window never
    exceeds max_len events.

    Args:
        i: event index (or (N,) array of indices) in the entity's full time-ordered sequence.
        max_len: the model's max_position.
    """
    stride = max(max_len // 2, 1)
    start = (np.asarray(i) // stride) * stride - (max_len - stride)
    out = np.maximum(start, 0)
    return int(out) if np.ndim(out) == 0 else out


def _list_column(values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


def event_rows(entity_type: str, entity_id: str, events: Sequence[Mapping[str, Any]], canonical: pa.Schema,
               fields: Sequence[str]) -> pa.Table:
    """A one-row sequence table (section 3) from canonical rows of one entity.

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
    """Canonical rows (timestamps as epoch ms) -> a canonical event table (section 2), e.g. for the raw-field
    features of GBDT heads."""
    columns = {}
    for f in canonical:
        values = [e.get(f.name) for e in events]
        columns[f.name] = (pa.array(values, pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                           else pa.array(values, f.type, from_pandas=True))
    return pa.table(columns, schema=canonical)


def bucket_rows(entity_type: str, entity_id: str, events: Sequence[Mapping[str, Any]],
                spec: AggregateSpec) -> pa.Table:
    """A one-row aggregate sequence table (section 3): the entity's raw events -> one element per non-empty
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
    """The section-5 batch of events [start, start + count) of a one-row encoded table.

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
    """The section-5 batch holding only event `position` of a one-row encoded table (B = T = 1).

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


def outcome_keys(field_specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Batch keys of the `outcome` fields (e.g. event_type, decline_code): unknown when an event is scored."""
    keys: list[str] = []
    for spec in field_specs:
        if spec.get("outcome"):
            keys += {"categorical": [spec["name"]], "numeric": [f"{spec['name']}_bin", f"{spec['name']}_value"],
                     "text": [f"{spec['name']}_tokens"]}.get(spec["kind"], [])
    return keys


@torch.inference_mode()
def event_vectors(model: Any, batch: Mapping[str, torch.Tensor],
                  field_specs: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """The model's event embedding of every event with its outcome fields removed (set to padding, which
    embeds to zero), so an event's own result never leaks into its score.

    Args:
        model: FoundationModel (its `embeddings` module).
        batch: section-5 batch (B, T).
        field_specs: EventTokenizer.field_specs() (carry the `outcome` flags).
    Returns:
        (B, T, H) event vectors.
    """
    clean = dict(batch)
    for key in outcome_keys(field_specs):
        if key in clean:
            clean[key] = torch.zeros_like(clean[key])
    return model.embeddings(clean)  # (B, T, H)


def task_features(hidden: Sequence[np.ndarray], has_history: Sequence[bool], event_vector: np.ndarray,
                  surprise: np.ndarray | None = None) -> np.ndarray:
    """Features of one charge attempt for a task head.

    Args:
        hidden: per task entity (in the task's `entities` order), its (H,) state as of the attempt
            (zeros without history).
        has_history: per task entity, whether it had any event before the attempt.
        event_vector: (H,) the attempt's event vector.
        surprise: (F,) the attempt's surprise under its customer's state (foundation.embeddings.surprise),
            for heads trained with it; None otherwise.
    Returns:
        (k * H + H + k [+ F],) float32: [h_1, ..., h_k, event_vector, has_history_1, ..., has_history_k,
        surprise...].
    """
    flags = np.asarray(has_history, dtype=np.float32)
    parts = [*(np.asarray(h, np.float32) for h in hidden), np.asarray(event_vector, np.float32), flags]
    if surprise is not None:
        parts.append(np.asarray(surprise, np.float32))
    return np.concatenate(parts)
