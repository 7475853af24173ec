"""Sequence shards on Spark: the same files, rows, order and manifest as `foundation.data.sequences`.

Per entity type, Spark does the work the pyarrow backend does shard by shard:
1. keep the events in the window that have a key (for an aggregate type, the whole buckets in it, each
   already reduced to one row per (entity, bucket), aggregates.py);
2. number the entities by a global sort of their distinct ids (Spark's string order is binary UTF-8, the
   pyarrow backend's order): a range-partitioned sort, then each partition's offset from the per-partition
   counts (a few numbers on the driver); entity r goes to shard r // entities_per_shard;
3. send every event to its shard's partition (one shuffle) and fold each entity's events into list columns
   there with `sort_array(collect_list(struct(event_time, event_id, ...)))`, which orders by
   (event_time, event_id) since those lead the struct (strings compare as UTF-8 bytes, as in Arrow);
4. write each shard with the exact Arrow schema and parquet options (writer.py), then the manifest, last.

Only counts, a few values per aggregate type and one record per written file reach the driver.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tqdm.auto import tqdm

from foundation.data.aggregates import AggregateSpec, aligned_bounds
from foundation.data.sequences import (
    HF_CACHE,
    MANIFEST,
    ROW_GROUP_ENTITIES,
    EntitySequenceStats,
    SequenceManifest,
    _iso,
    _items,
    _option,
    _period_bounds,
    _schema_name,
    _to_ms,
    shard_file,
)
from foundation.data.spark.aggregates import bucket_events, resolve_aggregate_spec
from foundation.data.spark.writer import publish, staging_dir, write_keyed_files

_T = "__t"  # event time in epoch ms
_SHARD = "__shard"
_BROADCAST_IDS = 1_000_000  # entity ranks are broadcast to the events up to this many entities
_CANONICAL = {"categorical": pa.string(), "text": pa.string(), "numeric": pa.float64(), "timestamp": pa.timestamp("ms")}


@dataclass(frozen=True)
class _Plan:
    name: str
    column: str
    aggregate: AggregateSpec | None


def build_sequences(
    frame: DataFrame,
    schema: Any,
    out_dir: str | os.PathLike,
    period: str | None = None,
    *,
    until: Any = None,
    entities_per_shard: int = 10_000,
    entity_types: Sequence[str] | None = None,
    count_values: Mapping[str, Sequence[str]] | None = None,
) -> SequenceManifest:
    """Write time-ordered sequences per entity type as sharded parquet plus `manifest.json`, on Spark.

    Same arguments and output as `foundation.data.sequences.build_sequences`; `frame` is the canonical event
    DataFrame (e.g. `SparkValidationResult.frame`; persist it, every entity type reads it). `out_dir` must be
    a path the driver and every executor see (local disk for `local[*]`, a shared file system on a cluster).

    Args:
        frame: canonical events (architecture.md section 2 columns; times as Spark timestamps), any order.
        schema: foundation.data.schema.DataSchema (or an object with the same attributes).
        out_dir: the sequence folder, e.g. `<data_dir>/<dataset>/sequences/<period>`.
        period: split name; keeps events with event_time in its [start, end). None = no lower bound.
        until: exclusive upper bound on event_time, combined with `period` by taking the earlier end.
        entities_per_shard: entities per parquet shard (contiguous ranges of sorted entity ids).
        entity_types: entity types to build (default: every type the schema declares).
        count_values: aggregate types only: {entity_type: values of `count_by` to count}; default the
            schema option, else the 8 most frequent values in `frame` (the whole frame).
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
    _check_columns(frame, fields, labels, [column for _, column, _ in chosen])

    plans = []
    for name, column, spec in chosen:
        aggregate = None
        if str(_option(spec, "representation", "events")) == "aggregate":
            bucket = _option(spec, "bucket_ms") or _option(spec, "bucket")
            if bucket is None:
                raise ValueError(f"entity {name!r}: representation aggregate needs a bucket (e.g. 1h)")
            pinned = count_values.get(name) if count_values else _option(spec, "count_values")
            aggregate = resolve_aggregate_spec(name, bucket, fields, frame, column, _option(spec, "count_by"), pinned)
        plans.append(_Plan(name, column, aggregate))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # As in the pyarrow backend: the manifest marks a complete folder, so it goes first and comes back last.
    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / HF_CACHE, ignore_errors=True)
    manifest = SequenceManifest(schema=_schema_name(schema), period=period, start=_iso(start_ms), end=_iso(end_ms),
                                entities_per_shard=entities_per_shard)
    events = frame.withColumn(_T, _epoch_ms(frame, "event_time"))
    windows = {p.name: _windows(p, start_ms, end_ms) for p in plans}
    counts = _count_rows(events, _between(F.col(_T), start_ms, end_ms), plans, windows)
    for plan in tqdm(plans, desc="sequences (spark)", unit="entity type", leave=False):
        manifest.entity_types[plan.name] = _build_entity_type(
            events, plan, windows[plan.name][1], counts, fields, labels, out, entities_per_shard)
    manifest.write(out)
    return manifest


def _check_columns(frame: DataFrame, fields: list[tuple[str, str]], labels: list[str], keys: list[str]) -> None:
    """Clear errors for a frame that does not follow architecture.md section 2 (nulls are checked later)."""
    string, double, times = (T.StringType,), (T.DoubleType,), (T.TimestampType, T.TimestampNTZType)
    kinds = {"categorical": string, "text": string, "numeric": double, "timestamp": times}
    expected: dict[str, tuple] = {"event_id": string, "event_time": times, **{k: string for k in keys}}
    for name, kind in fields:
        if kind not in kinds:
            raise ValueError(f"field {name!r}: unknown type {kind!r} (expected one of {sorted(kinds)})")
        expected[name] = kinds[kind]
    expected.update({name: double for name in labels})
    types = {f.name: f.dataType for f in frame.schema.fields}
    for name, allowed in expected.items():
        if name not in types:
            raise ValueError(f"canonical event frame: column {name!r} is missing (have {frame.columns})")
        if not isinstance(types[name], allowed):
            raise ValueError(f"canonical event frame: column {name!r} has type {types[name].simpleString()}, "
                             f"expected {allowed[0]().simpleString()}")


def _epoch_ms(frame: DataFrame, name: str) -> Column:
    """A canonical timestamp column -> epoch ms (naive timestamps are UTC; the session zone is UTC)."""
    column = F.col(name)
    if isinstance(frame.schema[name].dataType, T.TimestampNTZType):
        column = column.cast("timestamp")
    return F.unix_millis(column)


def _between(t: Column, start: int | None, end: int | None) -> Column:
    cond = F.lit(True)
    if start is not None:
        cond = cond & (t >= F.lit(start))
    if end is not None:
        cond = cond & (t < F.lit(end))
    return cond


def _windows(plan: _Plan, start_ms: int | None, end_ms: int | None) -> tuple[Column, Column]:
    """(in the period, in the rows this type uses): whole buckets only for an aggregate type."""
    t = F.col(_T)
    in_period = _between(t, start_ms, end_ms)
    if plan.aggregate is None:
        return in_period, in_period
    lo, hi = aligned_bounds(plan.aggregate.bucket_ms, start_ms, end_ms)
    return in_period, _between(t, lo, hi)


def _count_rows(events: DataFrame, in_period: Column, plans: list[_Plan], windows: dict[str, tuple[Column, Column]]
                ) -> dict[str, int]:
    """Every count the manifest needs, in one pass; raises on null event ids or times as pyarrow does."""
    def total(cond: Column, alias: str) -> Column:
        return F.sum(F.when(cond, F.lit(1)).otherwise(F.lit(0))).alias(alias)

    aggs = [F.count(F.lit(1)).alias("rows"), total(F.col("event_id").isNull(), "null:event_id"),
            total(F.col("event_time").isNull(), "null:event_time"), total(in_period, "in_period")]
    for plan in plans:
        keyed = F.col(plan.column).isNotNull()
        aggs += [total(keyed & windows[plan.name][0], f"keyed:{plan.name}"),
                 total(keyed & windows[plan.name][1], f"selected:{plan.name}")]
    row = events.agg(*aggs).first()
    counts = {k: int(v or 0) for k, v in row.asDict().items()}
    for name in ("event_id", "event_time"):
        if counts[f"null:{name}"]:
            raise ValueError(f"canonical event frame: column {name!r} has {counts[f'null:{name}']} nulls")
    return counts


def _output_schema(plan: _Plan, fields: list[tuple[str, str]], labels: list[str]) -> pa.Schema:
    """architecture.md section 3, exactly as the pyarrow backend builds it."""
    head = [("entity_type", pa.string()), ("entity_id", pa.string()), ("length", pa.int32())]
    head += [("event_id", pa.list_(pa.string())), ("event_time", pa.list_(pa.timestamp("ms")))]
    if plan.aggregate is not None:
        return pa.schema(head + [(c, pa.list_(pa.float64())) for c in plan.aggregate.columns()])
    return pa.schema(head + [(n, pa.list_(_CANONICAL[k])) for n, k in fields] + [(n, pa.list_(pa.float64()))
                                                                               for n in labels])


def _shard_rows(selected: DataFrame, plan: _Plan, fields: list[tuple[str, str]], labels: list[str],
                ranks: DataFrame, n_entities: int, n_shards: int, entities_per_shard: int) -> DataFrame:
    """One row per entity with its shard and its events (or buckets) as list columns in time order.

    The shard number is attached to each event (bucket) first, so the events are shuffled once, straight into
    their shard's partition, and grouped there (`groupBy(shard, entity)` needs no further shuffle).
    """
    key = plan.column
    if plan.aggregate is None:
        rows = selected.select(key, F.col(_T).alias("_t"), F.col("event_id").alias("_eid"),
                               *[(_epoch_ms(selected, n) if k == "timestamp" else F.col(n)).alias(n) for n, k in fields],
                               *labels)
        names = [n for n, _ in fields] + labels
    else:
        rows = bucket_events(selected, key, _T, plan.aggregate, plan.name)
        names = plan.aggregate.columns()
    ranks = ranks.select(F.col("entity_id").alias(key),
                         F.floor(F.col("rank") / entities_per_shard).cast("int").alias(_SHARD))
    rows = rows.join(F.broadcast(ranks) if n_entities <= _BROADCAST_IDS else ranks, key)
    structs = F.struct(F.col("_t"), F.col("_eid"), *[F.col(n) for n in names])
    grouped = (rows.repartition(n_shards, _SHARD).groupBy(_SHARD, key)
               .agg(F.sort_array(F.collect_list(structs)).alias("_seq")))
    return grouped.select(
        _SHARD, F.lit(plan.name).alias("entity_type"), F.col(key).alias("entity_id"),
        F.size("_seq").cast("int").alias("length"), F.col("_seq._eid").alias("event_id"),
        F.col("_seq._t").alias("event_time"), *[F.col(f"_seq.{n}").alias(n) for n in names])


def entity_ranks(ids: DataFrame, key: str) -> tuple[DataFrame, int]:
    """Number distinct entity ids in string (UTF-8 byte) order without one task doing all the work.

    The ids are sorted by Spark's range partitioning; each sorted partition is checkpointed (so a rerun cannot
    draw other partition bounds) and numbered from its own position plus the size of the partitions before it.

    Args:
        ids: distinct, non-null ids in column `key`.
        key: the id column.
    Returns:
        (DataFrame of `entity_id`, `rank` (0-based), number of ids).
    """
    ordered = ids.orderBy(key).select(
        F.col(key).alias("entity_id"), F.spark_partition_id().alias("_part"),
        (F.monotonically_increasing_id() - F.spark_partition_id().cast("long") * (1 << 33)).alias("_pos"))
    ordered = ordered.localCheckpoint(eager=True)
    sizes = sorted((r["_part"], r["n"]) for r in ordered.groupBy("_part").agg(F.count(F.lit(1)).alias("n")).collect())
    offsets, seen = [], 0
    for part, n in sizes:
        offsets.append((part, seen))
        seen += n
    table = ids.sparkSession.createDataFrame(offsets or [(0, 0)], "_part int, _offset long")
    ranks = ordered.join(F.broadcast(table), "_part").select("entity_id", (F.col("_offset") + F.col("_pos")).alias("rank"))
    return ranks, seen


def _build_entity_type(events: DataFrame, plan: _Plan, window: Column, counts: dict[str, int],
                       fields: list[tuple[str, str]], labels: list[str], out: Path,
                       entities_per_shard: int) -> EntitySequenceStats:
    """Write every shard of one entity type; returns its stats."""
    type_dir = out / plan.name
    type_dir.mkdir(exist_ok=True)
    for stale in type_dir.glob("part-*.parquet"):  # a previous build may have had more shards
        stale.unlink()
    schema = _output_schema(plan, fields, labels)
    selected = events.filter(F.col(plan.column).isNotNull() & window)
    ranks, n_entities = entity_ranks(selected.select(plan.column).distinct(), plan.column)
    n_shards = max(1, -(-n_entities // entities_per_shard))
    dictionary_cols = ["entity_type"] + [
        f"{n}.list.element" for n, kind in fields if kind in ("categorical", "text") and n in schema.names]
    if n_entities == 0:
        pq.write_table(schema.empty_table(), out / shard_file(plan.name, 0), compression="zstd",
                       row_group_size=ROW_GROUP_ENTITIES, use_dictionary=dictionary_cols)
        n_events = 0
    else:
        rows = _shard_rows(selected, plan, fields, labels, ranks, n_entities, n_shards, entities_per_shard)
        staging = staging_dir(type_dir)
        try:
            written = write_keyed_files(rows, _SHARD, n_shards, ["entity_id"], staging, "part-{key:05d}.parquet",
                                        schema, row_group_size=ROW_GROUP_ENTITIES, compression="zstd",
                                        use_dictionary=dictionary_cols, sum_column="length", prepartitioned=True)
            expected = [Path(shard_file(plan.name, s)).name for s in range(n_shards)]
            if [w.file for w in written] != expected or sum(w.rows for w in written) != n_entities:
                raise RuntimeError(f"entity {plan.name}: wrote {[w.file for w in written]} with "
                                   f"{sum(w.rows for w in written)} entities, expected {expected} with {n_entities}")
            publish(staging, type_dir, expected)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        n_events = sum(w.total for w in written)
    in_period = counts["in_period"]
    keyed, n_selected = counts[f"keyed:{plan.name}"], counts[f"selected:{plan.name}"]
    agg = plan.aggregate
    return EntitySequenceStats(
        representation="events" if agg is None else "aggregate",
        key_column=plan.column,
        entities=n_entities,
        events=n_events,
        source_events=n_selected,
        skipped_null_key=in_period - keyed,
        skipped_partial_bucket=keyed - n_selected,
        shards=[shard_file(plan.name, s) for s in range(n_shards)],
        columns=schema.names,
        bucket_ms=None if agg is None else agg.bucket_ms,
        count_by=None if agg is None else agg.count_by,
        count_values=None if agg is None else list(agg.count_values),
    )
