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
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from tqdm.auto import tqdm

from foundation.data.aggregate_spec import aligned_bounds
from foundation.data.schema import DataSchema
from foundation.data.sequence_manifest import (
    ROW_GROUP_ENTITIES,
    EntitySequenceStats,
    SequenceManifest,
    shard_file,
)
from foundation.data.sequence_plan import (
    EntityPlan,
    SequenceJob,
    entity_stats,
    start_folder,
    start_type_folder,
)
from foundation.data.spark.aggregates import bucket_events, resolve_aggregate_spec
from foundation.data.spark.writer import publish, staging_dir, write_keyed_files

_T = "__t"  # event time in epoch ms
_SHARD = "__shard"
_BROADCAST_IDS = 1_000_000  # entity ranks are broadcast to the events up to this many entities
_SPARK_KINDS = {"string": (T.StringType,), "double": (T.DoubleType,),
                "timestamp": (T.TimestampType, T.TimestampNTZType)}


def build_sequences(frame: DataFrame, schema: DataSchema, out_dir: str | os.PathLike, period: str | None = None, *,
                    until: Any = None, entities_per_shard: int = 10_000, entity_types: Sequence[str] | None = None,
                    count_values: Mapping[str, Sequence[str]] | None = None) -> SequenceManifest:
    """Write time-ordered sequences per entity type as sharded parquet plus `manifest.json`, on Spark.

    Same arguments, checks and output as `foundation.data.sequences.build_sequences` (see its docstring),
    but for:

    Args:
        frame: the canonical events (times as Spark timestamps), any order, e.g.
            `SparkValidationResult.frame`; persist it, every entity type reads it.
        out_dir: a path the driver and every executor see (local disk for `local[*]`, a shared file system
            on a cluster).
        count_values: unpinned aggregate count values are the 8 most frequent in `frame` (the whole frame).
    Returns:
        The SequenceManifest (also written to `<out_dir>/manifest.json`).
    """
    job = SequenceJob.from_args(schema, period, until, entities_per_shard, entity_types)
    _check_columns(frame, job.expected_columns())
    plans = job.plans(lambda name, bucket, column, count_by, pinned: resolve_aggregate_spec(
        name, bucket, job.fields, frame, column, count_by, pinned), count_values)
    events = frame.withColumn(_T, _epoch_ms(frame, "event_time"))
    windows = {p.name: _windows(p, job.start_ms, job.end_ms) for p in plans}
    counts = _count_rows(events, _between(F.col(_T), job.start_ms, job.end_ms), plans, windows)
    job.check_not_empty(counts["rows"], counts["in_period"], counts["first"], counts["last"])
    out = start_folder(out_dir)
    manifest = job.manifest()
    for plan in tqdm(plans, desc="sequences (spark)", unit="entity type", leave=False):
        manifest.entity_types[plan.name] = _build_entity_type(events, job, plan, windows[plan.name][1], counts, out)
    manifest.write(out)
    return manifest


def _check_columns(frame: DataFrame, expected: dict[str, str]) -> None:
    """Clear errors for a frame that breaks the canonical event table contract (nulls are checked later)."""
    types = {f.name: f.dataType for f in frame.schema.fields}
    for name, kind in expected.items():
        allowed = _SPARK_KINDS[kind]
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


def _windows(plan: EntityPlan, start_ms: int | None, end_ms: int | None) -> tuple[Column, Column]:
    """(in the period, in the rows this type uses): whole buckets only for an aggregate type."""
    t = F.col(_T)
    in_period = _between(t, start_ms, end_ms)
    if plan.aggregate is None:
        return in_period, in_period
    lo, hi = aligned_bounds(plan.aggregate.bucket_ms, start_ms, end_ms)
    return in_period, _between(t, lo, hi)


def _count_rows(events: DataFrame, in_period: Column, plans: list[EntityPlan], windows: dict[str, tuple[Column, Column]]
                ) -> dict[str, int]:
    """Every count the manifest needs, in one pass; raises on null event ids or times as pyarrow does."""
    def total(cond: Column, alias: str) -> Column:
        return F.sum(F.when(cond, F.lit(1)).otherwise(F.lit(0))).alias(alias)

    aggs = [F.count(F.lit(1)).alias("rows"), total(F.col("event_id").isNull(), "null:event_id"),
            total(F.col("event_time").isNull(), "null:event_time"), total(in_period, "in_period"),
            F.min(_T).alias("first"), F.max(_T).alias("last")]
    for plan in plans:
        keyed = F.col(plan.column).isNotNull()
        aggs += [total(keyed & windows[plan.name][0], f"keyed:{plan.name}"),
                 total(keyed & windows[plan.name][1], f"selected:{plan.name}")]
    row = events.agg(*aggs).first()
    counts = {k: v if k in ("first", "last") else int(v or 0) for k, v in row.asDict().items()}
    for name in ("event_id", "event_time"):
        if counts[f"null:{name}"]:
            raise ValueError(f"canonical event frame: column {name!r} has {counts[f'null:{name}']} nulls")
    return counts


def _shard_rows(selected: DataFrame, plan: EntityPlan, fields: list[tuple[str, str]], labels: list[str],
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


def _build_entity_type(events: DataFrame, job: SequenceJob, plan: EntityPlan, window: Column,
                       counts: dict[str, int], out: Path) -> EntitySequenceStats:
    """Write every shard of one entity type; returns its stats."""
    type_dir = start_type_folder(out, plan.name)
    schema = job.output_schema(plan)
    selected = events.filter(F.col(plan.column).isNotNull() & window)
    ranks, n_entities = entity_ranks(selected.select(plan.column).distinct(), plan.column)
    n_shards = max(1, -(-n_entities // job.entities_per_shard))
    dictionary_cols = job.dictionary_columns(schema)
    if n_entities == 0:
        pq.write_table(schema.empty_table(), out / shard_file(plan.name, 0), compression="zstd",
                       row_group_size=ROW_GROUP_ENTITIES, use_dictionary=dictionary_cols)
        n_events = 0
    else:
        rows = _shard_rows(selected, plan, job.fields, job.labels, ranks, n_entities, n_shards,
                           job.entities_per_shard)
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
    return entity_stats(plan, schema, n_shards, entities=n_entities, elements=n_events,
                        in_period=counts["in_period"], keyed=counts[f"keyed:{plan.name}"],
                        selected=counts[f"selected:{plan.name}"])
