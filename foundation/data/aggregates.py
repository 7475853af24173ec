"""Time-bucket aggregates: the sequence representation of high-volume entities.

Why: an issuer (or a large merchant) sees thousands of events a day, so a model window of 256 raw events
would span a few minutes of its history and say nothing about its daily or weekly rhythm. With
`representation: aggregate` and `bucket: 1h` each non-empty hour becomes one event, so 256 positions span
about ten days, and the sequence length no longer grows with the entity's traffic.

A bucket covers the half-open interval [end - bucket, end) of epoch-aligned time and is stamped with its
**end**: its counts are only known once it closes, so a model that reads the bucket at its time stamp
never sees an event from after that time. The aggregate fields (all float64) are, in this order:

- `agg_n_events`: events in the bucket;
- `agg_<f>_sum`, `agg_<f>_mean`, `agg_<f>_max` for each numeric field `f` (null when no event of the
  bucket has a value, as in SQL);
- `agg_n_<value>` for the counted values of the categorical field `count_by` (default `event_type`);
- `agg_n_distinct_customers` when the table has a `customer_id` column (and the entity is not the customer).

Labels are not aggregated: they belong to raw events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.aggregate_spec import (
    CUSTOMER_COLUMN,
    MAX_COUNT_VALUES,
    AggregateSpec,
    aligned_bounds,
    bucket_ms,
    build_aggregate_spec,
    count_column_name,
)

__all__ = ["AggregateSpec", "aggregate_shard", "aligned_bounds", "bucket_ms", "count_column_name",
           "resolve_aggregate_spec", "top_values"]


def top_values(column: pa.ChunkedArray | pa.Array, rows: np.ndarray | None, limit: int = MAX_COUNT_VALUES) -> list[str]:
    """The `limit` most frequent non-null values of a string column, ties by value, returned sorted.

    Args:
        column: categorical (string) column, N rows.
        rows: row indices, or an (N,) bool mask, of the rows to count over (None = every row).
        limit: the most values kept.
    Returns:
        Up to `limit` distinct values in string order.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    codes = pc.fill_null(encoded.indices, -1).to_numpy()
    if rows is not None:
        codes = codes[rows]
    counts = np.bincount(codes[codes >= 0], minlength=len(encoded.dictionary))
    present = np.flatnonzero(counts)
    if len(present) == 0:
        return []
    values = encoded.dictionary.take(pa.array(present))
    value_rank = np.empty(len(present), np.int64)
    value_rank[pc.sort_indices(values).to_numpy()] = np.arange(len(present))
    keep = np.lexsort((value_rank, -counts[present]))[:limit]
    return sorted(values.take(pa.array(keep)).to_pylist())


def resolve_aggregate_spec(entity_type: str, bucket: int | str, fields: Sequence[tuple[str, str]], events: pa.Table,
                           key_rows: np.ndarray, count_by: str | None = None,
                           count_values: Sequence[str] | None = None) -> AggregateSpec:
    """`aggregate_spec.build_aggregate_spec` over a pyarrow table (the other arguments are its own).

    Args:
        events: the canonical table (the whole input, so every period built from it gets the same columns).
        key_rows: (N,) bool mask (or row indices) of the rows with a key for this entity type; unpinned
            count values are the 8 most frequent among them.
    """
    return build_aggregate_spec(entity_type, bucket, fields, CUSTOMER_COLUMN in events.column_names,
                                lambda column: top_values(events.column(column), key_rows), count_by, count_values)


def _float_list(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.float64, copy=False), type=pa.float64(), mask=null)


def aggregate_shard(
    rows: pa.Table, local_rank: np.ndarray, spec: AggregateSpec, entity_type: str, entity_ids: pa.Array
) -> tuple[np.ndarray, pa.Table]:
    """Turn one shard's time-ordered raw events into one row per (entity, non-empty bucket).

    Args:
        rows: the shard's events sorted by (entity, event_time, event_id): columns `event_time` and the
            fields the spec reads; E rows.
        local_rank: (E,) int entity index within the shard, non-decreasing.
        spec: what to compute.
        entity_type: written into the bucket event ids.
        entity_ids: the shard's entity ids, indexed by local rank.
    Returns:
        (bucket_entity (G,) local rank of each bucket, non-decreasing; flat table of G buckets with columns
        `event_id` ("<entity_type>:<entity_id>:<bucket_end_ms>"), `event_time` (bucket end) and
        spec.columns(), in time order within each entity).
    """
    t = rows.column("event_time").combine_chunks().cast(pa.int64()).to_numpy()
    end = (t // spec.bucket_ms + 1) * spec.bucket_ms  # floor division: epoch-aligned, half-open buckets
    n = len(t)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (local_rank[1:] != local_rank[:-1]) | (end[1:] != end[:-1])
    starts = np.flatnonzero(new_group)
    n_events = np.diff(np.append(starts, n))
    bucket_entity = local_rank[starts]
    bucket_end = end[starts]

    out: dict[str, pa.Array] = {}
    ids = pc.binary_join_element_wise(
        pa.scalar(entity_type), entity_ids.take(pa.array(bucket_entity)), pc.cast(pa.array(bucket_end), pa.string()), ":"
    )
    out["event_id"] = ids
    out["event_time"] = pa.array(bucket_end).cast(pa.timestamp("ms"))
    out["agg_n_events"] = _float_list(n_events)
    for f in spec.numeric_fields:
        v = rows.column(f).combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64)
        valid = ~np.isnan(v)
        n_valid = np.add.reduceat(valid.astype(np.int64), starts)
        total = np.add.reduceat(np.where(valid, v, 0.0), starts)
        peak = np.maximum.reduceat(np.where(valid, v, -np.inf), starts)
        empty = n_valid == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_valid
        out[f"agg_{f}_sum"] = _float_list(total, empty)
        out[f"agg_{f}_mean"] = _float_list(mean, empty)
        out[f"agg_{f}_max"] = _float_list(peak, empty)
    if spec.count_values:
        codes, dictionary = _codes(rows.column(spec.count_by))
        value_codes = pc.index_in(pa.array(spec.count_values, pa.string()), value_set=dictionary)
        for value, code in zip(spec.count_values, value_codes.to_pylist()):
            hit = codes == (-2 if code is None else code)  # a value absent from this shard counts 0
            out[count_column_name(value)] = _float_list(np.add.reduceat(hit.astype(np.int64), starts))
    if spec.distinct_customers:
        out["agg_n_distinct_customers"] = _float_list(_distinct_per_group(rows.column(CUSTOMER_COLUMN), new_group))
    return bucket_entity, pa.table(out)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(N,) int64 dictionary codes of a string column (-1 for null) and the dictionary."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64), encoded.dictionary


def _distinct_per_group(column: pa.ChunkedArray, new_group: np.ndarray) -> np.ndarray:
    """(G,) number of distinct non-null values of `column` in each run of rows started by `new_group`."""
    codes, dictionary = _codes(column)
    width = max(len(dictionary), 1)
    group = np.cumsum(new_group) - 1
    valid = codes >= 0
    pairs = np.sort(group[valid] * width + codes[valid])  # sort + diff: far faster than np.unique's hash path
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:] != pairs[:-1]
    n_groups = int(group[-1]) + 1 if len(group) else 0
    return np.bincount(pairs[first] // width, minlength=n_groups)
