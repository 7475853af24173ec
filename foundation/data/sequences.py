"""Sequence store on one machine (pyarrow): the canonical event table -> time-ordered sequences per entity,
as sharded parquet plus `manifest.json`.

One row per entity (the sequence shard contract): `entity_type`, `entity_id`, `length` (int32), then list
columns `event_id`, `event_time`, one per field and one per label, ordered by (`event_time`, `event_id`).
An entity type with `representation: aggregate` holds one list element per non-empty time bucket instead
(see aggregates.py). What to write (window, entity types, shard schema, manifest) is decided in
sequence_plan.py, shared with the Spark backend, which writes the same files.

Shards are reproducible without Python loops, so Spark can write the same files: the distinct entity ids of
a type (non-null key, in the period) are sorted in string (UTF-8 byte) order and entity number r goes to
shard r // entities_per_shard. Shards are built one at a time (select the shard's rows, sort, build the
lists, write, free), so memory beyond the input table is one shard plus a few integer arrays per row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.data.aggregates import aggregate_shard, aligned_bounds, resolve_aggregate_spec
from foundation.data.schema import DataSchema
from foundation.data.sequence_manifest import (
    MANIFEST,
    ROW_GROUP_ENTITIES,
    EntitySequenceStats,
    SequenceManifest,
    shard_file,
)
from foundation.data.sequence_plan import (
    ARROW_KINDS,
    EntityPlan,
    SequenceJob,
    entity_stats,
    start_folder,
    start_type_folder,
)

__all__ = ["MANIFEST", "EntitySequenceStats", "SequenceManifest", "build_sequences", "shard_file"]


def build_sequences(
    events: pa.Table,
    schema: DataSchema,
    out_dir: str | os.PathLike,
    period: str | None = None,
    *,
    until: Any = None,
    entities_per_shard: int = 10_000,
    entity_types: Sequence[str] | None = None,
    count_values: Mapping[str, Sequence[str]] | None = None,
) -> SequenceManifest:
    """Write time-ordered sequences per entity type as sharded parquet plus `manifest.json`.

    Args:
        events: the canonical event table, N rows, any row order.
        schema: the dataset's DataSchema (entities, fields, labels, splits).
        out_dir: the sequence folder, e.g. `<data_dir>/<dataset>/sequences/<period>`.
        period: split name; keeps events with event_time in its [start, end). None = no lower bound.
        until: exclusive upper bound on event_time (ISO string, date or Timestamp; "all history before T");
            combined with `period` by taking the earlier end.
        entities_per_shard: entities per parquet shard (contiguous ranges of sorted entity ids).
        entity_types: entity types to build (default: every type the schema declares).
        count_values: aggregate types only: {entity_type: values of `count_by` to count}, to pin the
            `agg_n_<value>` columns (default: the 8 most frequent values in `events`, the whole table, so
            every period built from one table gets the same columns).
    Returns:
        The SequenceManifest (also written to `<out_dir>/manifest.json`).
    Raises:
        ValueError: bad arguments, a table that breaks the canonical event table contract, or a window that
            holds no event (names the period).
    """
    job = SequenceJob.from_args(schema, period, until, entities_per_shard, entity_types)
    _check_columns(events, job.expected_columns())
    event_time_ms = events.column("event_time").cast(pa.int64()).to_numpy()
    in_period = _time_mask(event_time_ms, job.start_ms, job.end_ms)
    job.check_not_empty(len(event_time_ms), len(event_time_ms) if in_period is None else int(in_period.sum()),
                        int(event_time_ms.min()) if len(event_time_ms) else None,
                        int(event_time_ms.max()) if len(event_time_ms) else None)

    plans = job.plans(lambda name, bucket, column, count_by, pinned: resolve_aggregate_spec(
        name, bucket, job.fields, events, _key_valid(events, column), count_by, pinned), count_values)
    out = start_folder(out_dir)
    manifest = job.manifest()
    for plan in plans:
        in_buckets = in_period
        if plan.aggregate is not None:
            lo, hi = aligned_bounds(plan.aggregate.bucket_ms, job.start_ms, job.end_ms)
            in_buckets = in_period if (lo, hi) == (job.start_ms, job.end_ms) else _time_mask(event_time_ms, lo, hi)
        manifest.entity_types[plan.name] = _build_entity_type(
            events, job, plan, _key_valid(events, plan.column), in_period, in_buckets, out)
    manifest.write(out)
    return manifest


def _check_columns(events: pa.Table, expected: dict[str, str]) -> None:
    """Clear errors for a table that breaks the canonical event table contract."""
    for name, kind in expected.items():
        if name not in events.column_names:
            raise ValueError(f"canonical event table: column {name!r} is missing (have {events.column_names})")
        if events.schema.field(name).type != ARROW_KINDS[kind]:
            raise ValueError(f"canonical event table: column {name!r} has type {events.schema.field(name).type}, "
                             f"expected {ARROW_KINDS[kind]}")
    for name in ("event_id", "event_time"):
        if events.column(name).null_count:
            raise ValueError(f"canonical event table: column {name!r} has {events.column(name).null_count} nulls")


def _key_valid(events: pa.Table, column: str) -> np.ndarray:
    """(N,) bool: the row has a key for this entity type."""
    return events.column(column).is_valid().to_numpy(zero_copy_only=False)


def _time_mask(t: np.ndarray, start_ms: int | None, end_ms: int | None) -> np.ndarray | None:
    """(N,) bool for start_ms <= t < end_ms given (N,) epoch ms; None when unbounded."""
    if start_ms is None and end_ms is None:
        return None
    mask = np.ones(len(t), dtype=bool)
    if start_ms is not None:
        mask &= t >= start_ms
    if end_ms is not None:
        mask &= t < end_ms
    return mask


def _entity_ranks(key: pa.ChunkedArray, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Sorted distinct ids among `rows` and each row's index in that order.

    Args:
        key: the entity key column, N rows.
        rows: (M,) indices of the selected rows (all non-null).
    Returns:
        (entity_ids: K sorted distinct ids, rank: (M,) int32 index of each row's id in entity_ids).
    """
    distinct = pc.drop_null(pc.unique(key))
    codes = pc.fill_null(pc.index_in(key, value_set=distinct), -1).to_numpy()[rows]
    present = np.flatnonzero(np.bincount(codes, minlength=len(distinct)))
    ids = distinct.take(pa.array(present))
    order = pc.sort_indices(ids).to_numpy()  # string order = UTF-8 byte order, as Spark sorts
    rank_of_code = np.full(len(distinct), -1, dtype=np.int32)
    rank_of_code[present[order]] = np.arange(len(present), dtype=np.int32)
    return ids.take(pa.array(order)), rank_of_code[codes]


def _list_column(values: pa.ChunkedArray | pa.Array, offsets: pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pa.ListArray.from_arrays(offsets, values)


def _build_entity_type(
    events: pa.Table,
    job: SequenceJob,
    plan: EntityPlan,
    key_valid: np.ndarray,
    in_period: np.ndarray | None,
    in_buckets: np.ndarray | None,
    out: Path,
) -> EntitySequenceStats:
    """Write every shard of one entity type; returns its stats."""
    start_type_folder(out, plan.name)
    per_shard = job.entities_per_shard
    keyed = key_valid if in_period is None else key_valid & in_period
    selected = keyed if in_buckets is None else key_valid & in_buckets
    # int32 indices halve the per-row index memory; pyarrow's take accepts them.
    rows = np.flatnonzero(selected).astype(np.int32 if key_valid.size < 2**31 else np.int64)

    entity_ids, rank = _entity_ranks(events.column(plan.column), rows)
    shard = rank // per_shard
    n_shards = max(1, -(-len(entity_ids) // per_shard))
    # Group row indices by shard; a 16-bit key lets numpy use its O(N) radix sort.
    order = np.argsort(shard.astype(np.uint16 if n_shards <= 2**16 else np.int64), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(shard, minlength=n_shards))])
    schema = job.output_schema(plan)
    read_cols = ["event_id", "event_time"]
    if plan.aggregate is None:
        read_cols += [n for n, _ in job.fields] + job.labels
    else:
        agg = plan.aggregate
        read_cols += list(agg.numeric_fields) + ([agg.count_by] if agg.count_values else [])
        read_cols += ["customer_id"] if agg.distinct_customers else []
    source = events.select(list(dict.fromkeys(read_cols)))
    dictionary_cols = job.dictionary_columns(schema)
    n_list = 0
    for s in tqdm(range(n_shards), desc=f"sequences {plan.name}", unit="shard", leave=False):
        part = order[bounds[s] : bounds[s + 1]]
        ids = entity_ids[s * per_shard : (s + 1) * per_shard]
        table = _shard_table(source, rows[part], rank[part] - s * per_shard, ids, plan, schema)
        n_list += int(pc.sum(table.column("length")).as_py() or 0)
        pq.write_table(table, out / shard_file(plan.name, s), compression="zstd",
                       row_group_size=ROW_GROUP_ENTITIES, use_dictionary=dictionary_cols)
        del table
    n_in_period = key_valid.size if in_period is None else int(in_period.sum())
    return entity_stats(plan, schema, n_shards, entities=len(entity_ids), elements=n_list, in_period=n_in_period,
                        keyed=int(keyed.sum()), selected=len(rows))


def _shard_table(
    source: pa.Table, rows: np.ndarray, local: np.ndarray, ids: pa.Array, plan: EntityPlan, schema: pa.Schema
) -> pa.Table:
    """One shard: its rows sorted by (entity, event_time, event_id), folded into one list row per entity.

    Args:
        source: canonical columns this type reads, N rows.
        rows: (M,) row indices of the shard's events.
        local: (M,) entity index within the shard of each row.
        ids: the shard's K sorted entity ids.
    Returns:
        K-row table with the output schema.
    """
    if len(ids) == 0:
        return schema.empty_table()
    # Sort on the two key columns only, then gather every column once in final order, one column at a time:
    # the peak is one shard plus one column.
    index = pa.array(rows)
    keys = pa.table({
        "_entity": local,
        "event_time": source.column("event_time").take(index),
        "event_id": source.column("event_id").take(index),
    })
    order = pc.sort_indices(
        keys, sort_keys=[("_entity", "ascending"), ("event_time", "ascending"), ("event_id", "ascending")]
    )
    keys = keys.take(order)
    index, local = pa.array(rows[order.to_numpy()]), local[order.to_numpy()]
    shard = pa.table({
        name: keys.column(name) if name in ("event_time", "event_id") else source.column(name).take(index)
        for name in source.column_names
    })
    del keys
    if plan.aggregate is None:
        flat, element_entity = shard, local
    else:
        element_entity, flat = aggregate_shard(shard, local, plan.aggregate, plan.name, ids)
    del shard
    lengths = np.bincount(element_entity, minlength=len(ids))
    if lengths.sum() > np.iinfo(np.int32).max:
        raise ValueError(f"entity {plan.name}: a shard holds {lengths.sum()} events; lower entities_per_shard")
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    columns = {
        "entity_type": pa.repeat(pa.scalar(plan.name), len(ids)),
        "entity_id": ids,
        "length": pa.array(lengths.astype(np.int32)),
    }
    for name in schema.names[3:]:
        columns[name] = _list_column(flat.column(name), offsets)
    return pa.table(columns, schema=schema)
