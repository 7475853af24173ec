"""Sequence store: the canonical event table -> time-ordered sequences per entity, as sharded parquet.

Layout (docs/architecture.md section 3):
```
<out_dir>/manifest.json
<out_dir>/<entity_type>/part-00000.parquet, part-00001.parquet, ...
```
One row per entity: `entity_type`, `entity_id`, `length` (int32), then list columns `event_id`,
`event_time`, one per field and one per label, ordered by (`event_time`, `event_id`). An entity type with
`representation: aggregate` holds one list element per non-empty time bucket instead (see aggregates.py).

Shards are reproducible without Python loops, so Spark can write the same files: the distinct entity ids of
a type (non-null key, in the period) are sorted in string (UTF-8 byte) order and entity number r goes to
shard r // entities_per_shard. Shards are built one at a time (select the shard's rows, sort, build the
lists, write, free), so memory beyond the input table is one shard plus a few integer arrays per row.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.data.aggregates import AggregateSpec, aggregate_shard, aligned_bounds, resolve_aggregate_spec
from foundation.data.schema import SPLIT_NAMES

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ROW_GROUP_ENTITIES = 1024  # entities per parquet row group: bounds the memory of a streaming reader
HF_CACHE = ".hf_cache"  # datasets.py keeps its Arrow cache here; a rebuild invalidates it


def shard_file(entity_type: str, shard: int) -> str:
    """Path of a shard relative to the sequence folder: `<entity_type>/part-00000.parquet`."""
    return f"{entity_type}/part-{shard:05d}.parquet"


@dataclass
class EntitySequenceStats:
    """What was written for one entity type.

    Args:
        representation: "events" or "aggregate".
        key_column: canonical key column (`<entity_type>_id`).
        entities: number of entities (rows over all shards).
        events: list elements over all shards (raw events, or buckets for an aggregate type).
        source_events: raw events that went into the sequences.
        skipped_null_key: in-period rows without a key for this type (e.g. refunds with no issuer).
        skipped_partial_bucket: in-period rows of buckets cut by the period bounds (aggregate only).
        shards: shard paths relative to the sequence folder, in order.
        columns: output column names, in order.
        bucket_ms, count_by, count_values: the aggregate spec (aggregate only).
    """

    representation: str
    key_column: str
    entities: int
    events: int
    source_events: int
    skipped_null_key: int
    skipped_partial_bucket: int
    shards: list[str]
    columns: list[str]
    bucket_ms: int | None = None
    count_by: str | None = None
    count_values: list[str] | None = None


@dataclass
class SequenceManifest:
    """`manifest.json` of a sequence folder.

    Args:
        schema: schema name.
        period: split name or None.
        start, end: ISO bounds of the half-open time window, None when open.
        entities_per_shard: entities per shard.
        entity_types: entity type -> EntitySequenceStats, in schema order.
    """

    schema: str
    period: str | None
    start: str | None
    end: str | None
    entities_per_shard: int
    entity_types: dict[str, EntitySequenceStats] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, seq_dir: str | os.PathLike) -> Path:
        path = Path(seq_dir) / MANIFEST
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, seq_dir: str | os.PathLike) -> SequenceManifest:
        """Load `<seq_dir>/manifest.json`."""
        path = Path(seq_dir) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"{path}: no sequence manifest (run build_sequences first)")
        raw = json.loads(path.read_text())
        raw["entity_types"] = {k: EntitySequenceStats(**v) for k, v in raw["entity_types"].items()}
        return cls(**raw)


# --- duck-typed schema access: DataSchema, or any object with the same attributes -----------------------


def _items(collection: Any, key_attrs: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, spec) pairs from a mapping or from a list of specs carrying their name."""
    if collection is None:
        return []
    if isinstance(collection, Mapping):
        return [(str(k), v) for k, v in collection.items()]
    pairs = []
    for spec in collection:
        if isinstance(spec, str):
            pairs.append((spec, spec))
            continue
        name = next((getattr(spec, a) for a in key_attrs if getattr(spec, a, None) is not None), None)
        if name is None:
            raise TypeError(f"schema entry {spec!r} has none of the attributes {list(key_attrs)}")
        pairs.append((str(name), spec))
    return pairs


def _option(spec: Any, name: str, default: Any = None) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name, default)
    value = getattr(spec, name, None)
    if value is None:
        options = getattr(spec, "options", None)
        if isinstance(options, Mapping):
            value = options.get(name)
    return default if value is None else value


def _to_ms(value: Any) -> int:
    """Epoch milliseconds of an ISO string / date / datetime / Timestamp (naive = UTC)."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value // 1_000_000)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms").isoformat()


def _period_bounds(schema: Any, period: str) -> tuple[int, int]:
    """[start, end) of a split in epoch ms, from `schema.splits.<period>` (or a mapping of periods)."""
    splits = getattr(schema, "splits", None)
    if isinstance(splits, Mapping):
        bounds = splits.get(period)
    else:  # a Splits object: one attribute per split name
        bounds = getattr(splits, period, None) if period in SPLIT_NAMES else None
    if bounds is None:
        have = list(splits) if isinstance(splits, Mapping) else [n for n in SPLIT_NAMES if getattr(splits, n, None)]
        raise ValueError(f"period {period!r} is not a split of schema {_schema_name(schema)!r}: have {have}")
    return _to_ms(_option(bounds, "start")), _to_ms(_option(bounds, "end"))


def _schema_name(schema: Any) -> str:
    return str(getattr(schema, "name", "unnamed"))


@dataclass(frozen=True)
class _EntityPlan:
    name: str
    column: str
    aggregate: AggregateSpec | None


def _check_columns(events: pa.Table, fields: list[tuple[str, str]], labels: list[str], keys: list[str]) -> None:
    """Clear errors for a table that does not follow architecture.md section 2."""
    expected: dict[str, tuple[pa.DataType, ...]] = {"event_id": (pa.string(),), "event_time": (pa.timestamp("ms"),)}
    kinds = {
        "categorical": (pa.string(),),
        "text": (pa.string(),),
        "numeric": (pa.float64(),),
        "timestamp": (pa.timestamp("ms"),),
    }
    for key in keys:
        expected[key] = (pa.string(),)
    for name, kind in fields:
        if kind not in kinds:
            raise ValueError(f"field {name!r}: unknown type {kind!r} (expected one of {sorted(kinds)})")
        expected[name] = kinds[kind]
    for name in labels:
        expected[name] = (pa.float64(),)
    for name, types in expected.items():
        if name not in events.column_names:
            raise ValueError(f"canonical event table: column {name!r} is missing (have {events.column_names})")
        if events.schema.field(name).type not in types:
            raise ValueError(
                f"canonical event table: column {name!r} has type {events.schema.field(name).type}, expected {types[0]}"
            )
    for name in ("event_id", "event_time"):
        if events.column(name).null_count:
            raise ValueError(f"canonical event table: column {name!r} has {events.column(name).null_count} nulls")


# --- building ------------------------------------------------------------------------------------------


def build_sequences(
    events: pa.Table,
    schema: Any,
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
        events: canonical event table (architecture.md section 2), N rows, any row order.
        schema: foundation.data.schema.DataSchema (or any object with its `.name`, `.entities`, `.fields`,
            `.labels`, `.splits` attributes; entities may carry `count_by`/`count_values` options).
        out_dir: the sequence folder, e.g. `<data_dir>/<dataset>/sequences/<period>`.
        period: split name; keeps events with event_time in its [start, end). None = no lower bound.
        until: exclusive upper bound on event_time (ISO string, date or Timestamp; "all history before T");
            combined with `period` by taking the earlier end.
        entities_per_shard: entities per parquet shard (contiguous ranges of sorted entity ids).
        entity_types: entity types to build (default: every type the schema declares).
        count_values: aggregate types only: {entity_type: values of `count_by` to count}, to pin the
            `agg_n_<value>` columns (default: the schema option `count_values`, else the 8 most frequent
            values in `events`, the whole table, so every period built from one table gets the same columns).
    Returns:
        The SequenceManifest (also written to `<out_dir>/manifest.json`).
    """
    if entities_per_shard < 1:
        raise ValueError(f"entities_per_shard must be >= 1, got {entities_per_shard}")
    start_ms, end_ms = _period_bounds(schema, period) if period is not None else (None, None)
    if until is not None:
        end_ms = _to_ms(until) if end_ms is None else min(end_ms, _to_ms(until))

    declared = _items(getattr(schema, "entities", None), ("type", "name"))
    if not declared:
        raise ValueError(f"schema {_schema_name(schema)!r} declares no entities")
    wanted = [n for n, _ in declared] if entity_types is None else list(entity_types)
    unknown = sorted(set(wanted) - {n for n, _ in declared})
    if unknown:
        raise ValueError(f"entity_types {unknown} are not declared in schema {_schema_name(schema)!r}")
    fields = [(n, str(_option(s, "type"))) for n, s in _items(getattr(schema, "fields", None), ("name",))]
    labels = [n for n, _ in _items(getattr(schema, "labels", None), ("name",))]

    chosen = [(name, _option(spec, "id_column", f"{name}_id"), spec) for name, spec in declared if name in wanted]
    _check_columns(events, fields, labels, [column for _, column, _ in chosen])
    plans = []
    for name, column, spec in chosen:
        aggregate = None
        if str(_option(spec, "representation", "events")) == "aggregate":
            bucket = _option(spec, "bucket_ms") or _option(spec, "bucket")
            if bucket is None:
                raise ValueError(f"entity {name!r}: representation aggregate needs a bucket (e.g. 1h)")
            pinned = count_values.get(name) if count_values else _option(spec, "count_values")
            aggregate = resolve_aggregate_spec(
                name, bucket, fields, events, _key_valid(events, column), _option(spec, "count_by"), pinned
            )
        plans.append(_EntityPlan(name, column, aggregate))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The manifest is written last and marks a complete folder: drop the old one first so an interrupted
    # rebuild is never mistaken for a finished one. The HF cache describes the old shards.
    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / HF_CACHE, ignore_errors=True)
    manifest = SequenceManifest(
        schema=_schema_name(schema),
        period=period,
        start=_iso(start_ms),
        end=_iso(end_ms),
        entities_per_shard=entities_per_shard,
    )
    event_time_ms = events.column("event_time").cast(pa.int64()).to_numpy()
    in_period = _time_mask(event_time_ms, start_ms, end_ms)
    for plan in plans:
        in_buckets = in_period
        if plan.aggregate is not None:
            lo, hi = aligned_bounds(plan.aggregate.bucket_ms, start_ms, end_ms)
            in_buckets = in_period if (lo, hi) == (start_ms, end_ms) else _time_mask(event_time_ms, lo, hi)
        manifest.entity_types[plan.name] = _build_entity_type(
            events, plan, _key_valid(events, plan.column), in_period, in_buckets, fields, labels, out, entities_per_shard
        )
    manifest.write(out)
    return manifest


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


def _output_schema(events: pa.Table, plan: _EntityPlan, fields: list[tuple[str, str]], labels: list[str]) -> pa.Schema:
    head = [("entity_type", pa.string()), ("entity_id", pa.string()), ("length", pa.int32())]
    head += [("event_id", pa.list_(pa.string())), ("event_time", pa.list_(pa.timestamp("ms")))]
    if plan.aggregate is not None:
        return pa.schema(head + [(c, pa.list_(pa.float64())) for c in plan.aggregate.columns()])
    names = [n for n, _ in fields] + labels
    return pa.schema(head + [(n, pa.list_(events.schema.field(n).type)) for n in names])


def _build_entity_type(
    events: pa.Table,
    plan: _EntityPlan,
    key_valid: np.ndarray,
    in_period: np.ndarray | None,
    in_buckets: np.ndarray | None,
    fields: list[tuple[str, str]],
    labels: list[str],
    out: Path,
    entities_per_shard: int,
) -> EntitySequenceStats:
    """Write every shard of one entity type; returns its stats."""
    type_dir = out / plan.name
    type_dir.mkdir(exist_ok=True)
    for stale in type_dir.glob("part-*.parquet"):  # a previous build may have had more shards
        stale.unlink()
    keyed = key_valid if in_period is None else key_valid & in_period
    selected = keyed if in_buckets is None else key_valid & in_buckets
    # int32 indices halve the per-row index memory; pyarrow's take accepts them.
    rows = np.flatnonzero(selected).astype(np.int32 if key_valid.size < 2**31 else np.int64)
    n_keyed = int(keyed.sum())
    skipped_null = (key_valid.size if in_period is None else int(in_period.sum())) - n_keyed
    skipped_partial = n_keyed - len(rows)

    entity_ids, rank = _entity_ranks(events.column(plan.column), rows)
    shard = rank // entities_per_shard
    n_shards = max(1, -(-len(entity_ids) // entities_per_shard))
    # Group row indices by shard; a 16-bit key lets numpy use its O(N) radix sort.
    order = np.argsort(shard.astype(np.uint16 if n_shards <= 2**16 else np.int64), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(shard, minlength=n_shards))])
    schema = _output_schema(events, plan, fields, labels)
    read_cols = ["event_id", "event_time"]
    if plan.aggregate is None:
        read_cols += [n for n, _ in fields] + labels
    else:
        agg = plan.aggregate
        read_cols += list(agg.numeric_fields) + ([agg.count_by] if agg.count_values else [])
        read_cols += ["customer_id"] if agg.distinct_customers else []
    source = events.select(list(dict.fromkeys(read_cols)))

    # Dictionary pages pay off on repetitive strings only; unique ids and floats compress better without.
    # (Parquet names the leaf of list column `c` "c.list.element".)
    dictionary_cols = ["entity_type"] + [
        f"{n}.list.element" for n, kind in fields if kind in ("categorical", "text") and n in schema.names
    ]
    shards, n_list = [], 0
    for s in tqdm(range(n_shards), desc=f"sequences {plan.name}", unit="shard", leave=False):
        shard_rows = rows[order[bounds[s] : bounds[s + 1]]]
        local = rank[order[bounds[s] : bounds[s + 1]]] - s * entities_per_shard
        ids = entity_ids[s * entities_per_shard : (s + 1) * entities_per_shard]
        table = _shard_table(source, shard_rows, local, ids, plan, schema)
        n_list += int(pc.sum(table.column("length")).as_py() or 0)
        path = shard_file(plan.name, s)
        pq.write_table(
            table, out / path, compression="zstd", row_group_size=ROW_GROUP_ENTITIES, use_dictionary=dictionary_cols
        )
        shards.append(path)
        del table
    agg = plan.aggregate
    return EntitySequenceStats(
        representation="events" if agg is None else "aggregate",
        key_column=plan.column,
        entities=len(entity_ids),
        events=n_list,
        source_events=len(rows),
        skipped_null_key=skipped_null,
        skipped_partial_bucket=skipped_partial,
        shards=shards,
        columns=schema.names,
        bucket_ms=None if agg is None else agg.bucket_ms,
        count_by=None if agg is None else agg.count_by,
        count_values=None if agg is None else list(agg.count_values),
    )


def _shard_table(
    source: pa.Table, rows: np.ndarray, local: np.ndarray, ids: pa.Array, plan: _EntityPlan, schema: pa.Schema
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
