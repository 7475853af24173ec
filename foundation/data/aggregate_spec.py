"""What an aggregate entity type computes: its bucket, its fields and their names (shared by both backends).

The computation itself lives with each backend: `foundation.data.aggregates` (pyarrow, shard by shard) and
`foundation.data.spark.aggregates` (a Spark `groupBy`). The aggregate fields (all float64) are, in order:
`agg_n_events`; `agg_<f>_sum`, `agg_<f>_mean`, `agg_<f>_max` per numeric field `f`; `agg_n_<value>` per
counted value of the categorical field `count_by`; `agg_n_distinct_customers`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from foundation.data.schema import parse_duration

MAX_COUNT_VALUES = 8
CUSTOMER_COLUMN = "customer_id"


def bucket_ms(value: int | str) -> int:
    """Bucket width in milliseconds from an int (ms) or a duration string such as "1h", "15min", "1d"."""
    if isinstance(value, str):
        value = parse_duration(value, "entities.<type>.bucket")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"entity bucket: expected a positive duration in ms, got {value!r}")
    return int(value)


def count_column_name(value: str) -> str:
    """`agg_n_<value>` with the value lower-cased and every run of non [a-z0-9] characters replaced by '_'."""
    slug = re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_")
    if not slug:
        raise ValueError(f"aggregate count_by value {value!r} gives an empty column name")
    return f"agg_n_{slug}"


@dataclass(frozen=True)
class AggregateSpec:
    """What one aggregate entity type computes.

    Args:
        bucket_ms: bucket width in milliseconds.
        numeric_fields: numeric field names (canonical columns), schema order.
        count_by: categorical field whose values are counted, or None.
        count_values: the counted values, sorted.
        distinct_customers: whether `agg_n_distinct_customers` is computed.
    """

    bucket_ms: int
    numeric_fields: tuple[str, ...]
    count_by: str | None
    count_values: tuple[str, ...]
    distinct_customers: bool

    def columns(self) -> list[str]:
        """Names of the aggregate fields, in output order."""
        cols = ["agg_n_events"]
        for f in self.numeric_fields:
            cols += [f"agg_{f}_sum", f"agg_{f}_mean", f"agg_{f}_max"]
        cols += [count_column_name(v) for v in self.count_values]
        if self.distinct_customers:
            cols.append("agg_n_distinct_customers")
        if len(set(cols)) != len(cols):
            dupes = sorted({c for c in cols if cols.count(c) > 1})
            raise ValueError(f"aggregate columns collide: {dupes} (rename the count_by values or fields)")
        return cols


def build_aggregate_spec(
    entity_type: str,
    bucket: int | str,
    fields: Sequence[tuple[str, str]],
    has_customers: bool,
    frequent_values: Callable[[str], Sequence[str]],
    count_by: str | None = None,
    count_values: Sequence[str] | None = None,
) -> AggregateSpec:
    """Fix the aggregate fields of one entity type; each backend supplies how it finds frequent values.

    Args:
        entity_type: e.g. "issuer".
        bucket: bucket width (ms or duration string).
        fields: (name, type) of every schema field, schema order.
        has_customers: the canonical events have a `customer_id` column.
        frequent_values: count_by field -> its most frequent values among rows with this type's key
            (called only when `count_values` is None).
        count_by: categorical field to count; None = `event_type` when that field is categorical.
        count_values: values to count (pinned, e.g. from the schema); None = `frequent_values(count_by)`.
    Returns:
        The AggregateSpec.
    """
    types = dict(fields)
    if count_by is None and types.get("event_type") == "categorical":
        count_by = "event_type"
    if count_by is not None and types.get(count_by) != "categorical":
        raise ValueError(f"entity {entity_type}: count_by field {count_by!r} is not a categorical field of the schema")
    if count_by is None:
        values: tuple[str, ...] = ()
    elif count_values is not None:
        values = tuple(sorted(str(v) for v in count_values))
    else:
        values = tuple(frequent_values(count_by))
    spec = AggregateSpec(
        bucket_ms=bucket_ms(bucket),
        numeric_fields=tuple(name for name, kind in fields if kind == "numeric"),
        count_by=count_by,
        count_values=values,
        distinct_customers=has_customers and entity_type != "customer",
    )
    spec.columns()  # fail early on colliding names
    return spec


def aligned_bounds(bucket: int, start_ms: int | None, end_ms: int | None) -> tuple[int | None, int | None]:
    """Narrow [start_ms, end_ms) to whole buckets: a bucket cut by the period start would hold only part of
    its events, and one that ends after `end_ms` is not closed (not yet known) at the cut-off."""
    start = None if start_ms is None else -(-start_ms // bucket) * bucket
    end = None if end_ms is None else (end_ms // bucket) * bucket
    return start, end
