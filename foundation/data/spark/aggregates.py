"""Time-bucket aggregates on Spark: the same buckets and fields as `foundation.data.aggregates`.

A bucket holds the events in [end - bucket, end) of epoch-aligned time and is stamped with its end; its
fields (float64) are `agg_n_events`, `agg_<f>_sum/_mean/_max` per numeric field (null when no event has a
value), `agg_n_<value>` for the counted values of `count_by`, and `agg_n_distinct_customers`. Buckets are a
plain `groupBy(entity, bucket_end)`; the order of the additions in a sum is Spark's, so sums can differ from
the pyarrow backend's in the last bits (relative 1e-15 for a bucket of a few thousand events).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from foundation.data.aggregate_spec import (
    CUSTOMER_COLUMN,
    MAX_COUNT_VALUES,
    AggregateSpec,
    build_aggregate_spec,
    count_column_name,
)


def resolve_aggregate_spec(entity_type: str, bucket: int | str, fields: Sequence[tuple[str, str]], frame: DataFrame,
                           key: str, count_by: str | None = None, count_values: Sequence[str] | None = None
                           ) -> AggregateSpec:
    """`aggregate_spec.build_aggregate_spec` over a Spark frame, as `foundation.data.aggregates` does over a
    table (the other arguments are its own).

    Args:
        frame: the canonical events (the whole input, so every period built from it gets the same columns).
        key: the entity's key column; unpinned count values are the 8 most frequent (ties by value) among
            rows that have one.
    """
    return build_aggregate_spec(entity_type, bucket, fields, CUSTOMER_COLUMN in frame.columns,
                                lambda column: top_values(frame, column, key), count_by, count_values)


def top_values(frame: DataFrame, column: str, key: str, limit: int = MAX_COUNT_VALUES) -> list[str]:
    """The `limit` most frequent non-null values of `column` among rows with a `key`, ties by value
    (Spark orders strings by their UTF-8 bytes, as Arrow does); returned sorted. Collects `limit` rows."""
    counts = (frame.filter(F.col(key).isNotNull() & F.col(column).isNotNull()).groupBy(column)
              .agg(F.count(F.lit(1)).alias("n")).orderBy(F.desc("n"), F.asc(column)).limit(limit).collect())
    return sorted(r[column] for r in counts)


def bucket_events(events: DataFrame, key: str, time_ms: str, spec: AggregateSpec, entity_type: str) -> DataFrame:
    """One row per (entity, non-empty bucket) with the bucket's fields.

    Args:
        events: the entity type's events in the window: `key`, `time_ms` (epoch ms) and the fields `spec` reads.
        key: the entity key column.
        time_ms: the event time column, epoch milliseconds.
        spec: what to compute.
        entity_type: written into the bucket event ids.
    Returns:
        columns `key`, `_t` (bucket end, epoch ms), `_eid` ("<entity_type>:<entity_id>:<bucket_end_ms>"),
        then `spec.columns()` as doubles.
    """
    t = F.col(time_ms)
    # Exact integer arithmetic: pmod is the non-negative remainder, so this is floor(t / b) * b + b.
    ends = events.withColumn("_t", t - F.pmod(t, F.lit(spec.bucket_ms)) + F.lit(spec.bucket_ms))
    aggs: list[Column] = [F.count(F.lit(1)).cast("double").alias("agg_n_events")]
    for f in spec.numeric_fields:
        v = F.col(f)
        valid = v.isNotNull() & ~F.isnan(v)
        total, n_valid = F.sum(F.when(valid, v)), F.count(F.when(valid, F.lit(1)))
        aggs += [total.alias(f"agg_{f}_sum"),
                 F.when(n_valid > 0, total / n_valid).alias(f"agg_{f}_mean"),
                 F.max(F.when(valid, v)).alias(f"agg_{f}_max")]  # NaN excluded: Spark's max would pick it
    for value in spec.count_values:
        hit = F.when(F.col(spec.count_by) == F.lit(value), F.lit(1)).otherwise(F.lit(0))
        aggs.append(F.sum(hit).cast("double").alias(count_column_name(value)))
    if spec.distinct_customers:
        aggs.append(F.countDistinct(CUSTOMER_COLUMN).cast("double").alias("agg_n_distinct_customers"))
    buckets = ends.groupBy(key, "_t").agg(*aggs)
    event_id = F.concat_ws(":", F.lit(entity_type), F.col(key), F.col("_t").cast("string"))
    return buckets.select(key, "_t", event_id.alias("_eid"), *[F.col(c).cast("double").alias(c) for c in spec.columns()])
