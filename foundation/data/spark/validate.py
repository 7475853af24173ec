"""Validation on Spark: the same checks, reasons, counts and quarantine files as `foundation.data.validate`.

Every row gets at most one reason, the first problem it has in the pyarrow backend's priority order (the
order comes from `foundation.data.problems.row_checks`, so both backends share one list): conversion
failures, null times, null or empty ids and keys, NaN/inf, nulls where forbidden, values outside
[min, max], then repeated event ids (the first occurrence, by input row, among rows without another problem
is kept). The checks are one CASE expression; repeated ids are found by shuffling (id, row) pairs only.
The counts and one example row per reason are all that reaches the driver.

Quarantined rows go to `<quarantine_dir>/<reason>.parquet` (raw columns with their input Arrow types plus
`_source_row`, in input order) and `_summary.json`, exactly as the pyarrow backend writes them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from foundation.data import problems as shared
from foundation.data.label_events import SEPARATOR as LABEL_EVENT_SEPARATOR
from foundation.data.problems import Problem
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.spark.conversion import Converted, convert_columns, to_timestamp_ms
from foundation.data.spark.source import ROW, col
from foundation.data.spark.writer import publish, staging_dir, write_keyed_files

REASON = "__reason"
_ROW = "__source_row"  # the input row number inside the cached frame (never clashes with a field name)
_BROADCAST_ROWS = 2_000_000  # repeated ids or quarantined rows joined back by broadcast up to this many
QUARANTINE_ROW_GROUP = 128 * 1024
QUARANTINE_ROWS_PER_TASK = 1_000_000  # quarantines are usually small: one task writes several reason files


@dataclass
class SparkValidationResult:
    """Output of `validate` on Spark.

    Attributes:
        frame: the clean rows as a canonical DataFrame (the canonical event table's column names and order;
            event_time and timestamp fields as Spark timestamps, UTC), read from a cache; call `unpersist()`
            when done.
        quarantine_counts: reason -> rows quarantined, in priority order (empty when all rows are clean).
        quarantine_paths: reason -> the parquet file of those rows.
        n_input_rows: rows read; == clean rows + sum(quarantine_counts.values()).
        n_clean_rows: rows in `frame`.
        problems: one `Problem` per reason (count, first input row and that row's raw values).
        cached: the persisted frame behind `frame` (released by `unpersist`).
    """

    frame: DataFrame
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    quarantine_paths: dict[str, Path] = field(default_factory=dict)
    n_input_rows: int = 0
    n_clean_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    cached: DataFrame | None = None

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantine_counts.values())

    def unpersist(self) -> None:
        """Release the cached rows `frame` reads from."""
        (self.cached if self.cached is not None else self.frame).unpersist()


def validate(raw: DataFrame, schema: DataSchema, quarantine_dir: str | Path | None = None,
             on_error: str | None = None, raw_arrow: pa.Schema | None = None) -> SparkValidationResult:
    """Convert and check raw events on Spark; raise on bad rows or quarantine them, per the schema's policy.

    Args:
        raw: raw events from `foundation.data.spark.source.read_events` (raw columns plus `_source_row`).
        schema: the dataset schema.
        quarantine_dir: overrides `schema.validation.quarantine_dir`.
        on_error: "raise" | "quarantine"; overrides `schema.validation.on_error`.
        raw_arrow: Arrow types of the raw columns (`source.raw_arrow_schema`): quarantine files keep them,
            nanosecond timestamps are recognised. None = the types Spark reads.
    Returns:
        SparkValidationResult with the clean canonical rows (read from a cache) and the quarantine counts and files.
    Raises:
        DataValidationError: missing columns or inconvertible column types (always), bad rows (on_error=raise).
        ValueError: `raw` has no `_source_row` column.
    """
    on_error = shared.error_policy(on_error, schema)
    if ROW not in raw.columns:
        raise ValueError(f"raw events: no '{ROW}' column (the input row number); read them with "
                         f"foundation.data.spark.source.read_events")
    raw_columns = [c for c in schema.raw_columns if c in raw.columns]
    converted = convert_columns(raw, schema, col(ROW), raw_arrow)
    values = {c.name: f"__v{i}" for i, c in enumerate(converted)}
    flags = {c.reason: f"__f{i}" for i, c in enumerate(converted) if c.failed is not None}
    staged = raw.select(F.col(ROW).alias(_ROW), *[c.value.alias(values[c.name]) for c in converted],
                        *[c.failed.alias(flags[c.reason]) for c in converted if c.failed is not None])
    reasons = _reasons(schema, converted, values, flags)
    reason = F.coalesce(*[F.when(cond, F.lit(r)) for r, cond, _ in reasons]) if reasons else F.lit(None)
    tagged = staged.withColumn(REASON, reason.cast("string"))
    order = [r for r, _, _ in reasons]
    described = {r: d for r, _, d in reasons}
    if schema.event_id is not None:
        tagged = _mark_duplicates(tagged, values["event_id"])
        order.append("duplicate_event_id")
        described["duplicate_event_id"] = (schema.event_id, "event_id",
                                           "event id already seen in an earlier row (the first occurrence is kept)")
    # Only the canonical values, the row number and the reason are cached (the clean rows are read from this
    # cache by every later step); raw values are read again for the few quarantined rows.
    tagged = tagged.select(_ROW, REASON, *[
        (to_timestamp_ms(F.col(values[c.name])) if _is_time(schema, c.name) else F.col(values[c.name])).alias(c.name)
        for c in converted]).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = {r[REASON]: (r["n"], r["first"]) for r in
                 tagged.groupBy(REASON).agg(F.count(F.lit(1)).alias("n"), F.min(_ROW).alias("first")).collect()}
        n = sum(count for count, _ in stats.values())
        found = [r for r in order if r in stats]
        examples = _examples(raw, raw_columns, [stats[r][1] for r in found])
        problems = [Problem(r, *described[r][:2], described[r][2], stats[r][0], stats[r][1], examples[stats[r][1]])
                    for r in found]
        if problems and on_error == "raise":
            raise DataValidationError(shared.format_problems(problems, schema, n), problems)
        paths: dict[str, Path] = {}
        if problems:
            qdir = shared.quarantine_folder(quarantine_dir, schema)
            paths = _write_quarantine(raw, tagged, raw_columns, problems, qdir, schema, n, raw_arrow)
    except BaseException:
        tagged.unpersist()
        raise
    clean = _with_label_events(tagged.filter(F.col(REASON).isNull()).select(*[c.name for c in converted]), schema)
    return SparkValidationResult(frame=clean, quarantine_counts={p.reason: p.count for p in problems},
                                 quarantine_paths=paths, n_input_rows=n, n_clean_rows=stats.get(None, (0, 0))[0],
                                 problems=problems, cached=tagged)


def _mark_duplicates(tagged: DataFrame, event_id: str) -> DataFrame:
    """Among rows with no other problem, a row whose id appeared at an earlier input row is a duplicate.

    Only (id, row) pairs are shuffled to find the repeated ids and their first row; that set (empty in clean
    data) is joined back, by broadcast while it is small.
    """
    eligible = tagged.filter(F.col(REASON).isNull()).select(event_id, _ROW)
    firsts = (eligible.groupBy(event_id).agg(F.min(_ROW).alias("__first"), F.count(F.lit(1)).alias("__n"))
              .filter(F.col("__n") > 1).select(event_id, "__first"))
    n_repeated = firsts.count()
    if n_repeated == 0:
        return tagged
    joined = tagged.join(F.broadcast(firsts) if n_repeated <= _BROADCAST_ROWS else firsts, event_id, "left")
    duplicate = F.col(REASON).isNull() & F.col("__first").isNotNull() & (F.col(_ROW) > F.col("__first"))
    return joined.withColumn(REASON, F.when(duplicate, F.lit("duplicate_event_id")).otherwise(F.col(REASON))) \
        .drop("__first")


def _is_time(schema: DataSchema, name: str) -> bool:
    return name == "event_time" or (name in schema.fields and schema.fields[name].type == "timestamp")


def _reasons(schema: DataSchema, converted: list[Converted], values: dict[str, str], flags: dict[str, str]
             ) -> list[tuple[str, Column, tuple[str, str, str]]]:
    """(reason, condition, (column, key, problem)) in the pyarrow backend's priority order."""
    by_reason = {c.reason: c for c in converted if c.failed is not None}
    by_name = {c.name: c for c in converted}
    out = []
    for reason, name, key, problem in shared.row_checks(schema):
        if reason in by_reason:
            issue = by_reason.pop(reason)
            out.append((reason, F.col(flags[reason]), (issue.column, issue.key, issue.problem)))
        elif problem is not None:
            out.append((reason, _check(reason, F.col(values[name]), by_name[name], schema),
                        (shared.input_column(schema, name, True), key, problem)))
    for reason, issue in by_reason.items():  # none expected: every conversion reason has its place above
        out.append((reason, F.col(flags[reason]), (issue.column, issue.key, issue.problem)))
    return out


def _check(reason: str, v: Column, converted: Converted, schema: DataSchema) -> Column:
    """The failing-row condition of one check (null = passes), as `foundation.data.validate._check`."""
    kind, _, name = reason.partition(".")
    if kind in ("null_timestamp", "null_value"):
        return v.isNull()
    if kind in ("null_event_id", "null_entity_key"):
        # Only string input can hold an empty or blank key (ids of other types never print as "").
        return v.isNull() | v.rlike(shared.BLANK_RE) if converted.string_source else v.isNull()
    spec = schema.fields[name]
    if kind == "nan_value":
        return F.isnan(v) | (F.abs(v) == float("inf"))
    if kind in ("negative_value", "below_min"):
        return v < F.lit(spec.min)
    if kind == "above_max":
        return (v > F.lit(spec.max)) & ~F.isnan(v)  # Spark orders NaN above every number; Arrow does not
    raise ValueError(f"unknown check {reason}")


def _examples(raw: DataFrame, raw_columns: list[str], rows: list[int]) -> dict[int, dict]:
    """Raw values of a few input rows, by row number (one per reason: a handful of rows)."""
    if not rows:
        return {}
    picked = raw.filter(F.col(ROW).isin(rows)).select(*[col(c) for c in raw_columns], ROW).collect()
    return {r[ROW]: {c: r[c] for c in raw_columns} for r in picked}


def _write_quarantine(raw: DataFrame, tagged: DataFrame, raw_columns: list[str], problems: list[Problem],
                      qdir: Path, schema: DataSchema, n: int, raw_arrow: pa.Schema | None) -> dict[str, Path]:
    """Each reason's rows -> `<qdir>/<reason>.parquet`, then the summary of this run
    (`problems.finish_quarantine`)."""
    previous = shared.previous_files(qdir)
    n_bad = sum(p.count for p in problems)
    reasons = tagged.filter(F.col(REASON).isNotNull()).select(F.col(_ROW).alias(ROW), REASON)
    reasons = F.broadcast(reasons) if n_bad <= _BROADCAST_ROWS else reasons
    bad = raw.select(*[col(c) for c in raw_columns], ROW).join(reasons, ROW)
    if raw_arrow is None:
        from pyspark.sql.pandas.types import to_arrow_schema

        raw_arrow = to_arrow_schema(bad.select(*[col(c) for c in raw_columns]).schema)
    target = pa.schema([raw_arrow.field(c) for c in raw_columns] + [pa.field(ROW, pa.int64())])
    staging = staging_dir(qdir)
    try:
        written = write_keyed_files(bad, REASON, len(problems), [ROW], staging, "{key}.parquet", target,
                                    row_group_size=QUARANTINE_ROW_GROUP,
                                    partitions=min(len(problems), 1 + n_bad // QUARANTINE_ROWS_PER_TASK))
        publish(staging, qdir, [w.file for w in written])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return shared.finish_quarantine(qdir, previous, problems, schema, n)


def _with_label_events(frame: DataFrame, schema: DataSchema) -> DataFrame:
    """`frame` plus the label events of `schema.label_events`, as `foundation.data.label_events` appends them.

    A derived label (`from_events`) is null on the Spark path, so it lands no event here."""
    spec = schema.label_events
    if spec is None:
        return frame
    nulled = {f.name for f in schema.fields.values() if f.outcome and f.name != spec.field} | set(schema.labels)
    parts = [frame]
    for label in spec.labels:
        columns = []
        for name, dtype in frame.dtypes:
            if name == "event_id":
                column = F.concat(F.col(name), F.lit(f"{LABEL_EVENT_SEPARATOR}{label}"))
            elif name == "event_time":
                column = F.expr(f"timestamp_millis(unix_millis(event_time) + {schema.splits.label_delay_ms})")
            elif name == spec.field:
                column = F.lit(label)
            elif name in nulled:
                column = F.lit(None)
            else:
                column = F.col(name)
            columns.append(column.cast(dtype).alias(name))
        parts.append(frame.where(F.col(label) == 1.0).select(*columns))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out

