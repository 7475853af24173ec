"""Validation of events against their schema: a clear error, or a counted quarantine.

`validate` converts a raw table to the canonical one (or takes a canonical table as is) and checks it:
unconvertible values, null timestamps / event ids / entity keys, NaN and inf in numerics, nulls where the
field forbids them, values outside [min, max], duplicate event ids. Every offending row is assigned to the
first problem it has (in that order), so the counts add up: clean rows + quarantined rows == input rows.

With `on_error: raise` the result is a `DataValidationError` that lists, per problem, the column, the config
key, what is wrong, how many rows and one example row. With `on_error: quarantine` the rows go to
`<quarantine_dir>/<reason>.parquet` (raw columns plus `_source_row`, the input row number) and the counts
are returned and logged. Missing columns are always raised: there is no row to quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foundation.data.derived_labels import derive_labels
from foundation.data.events import as_mask, convert_events
from foundation.data.label_events import append_label_events
from foundation.data.problems import (
    BLANK_RE,
    Problem,
    error_policy,
    finish_quarantine,
    format_problems,
    input_column,
    previous_files,
    quarantine_folder,
    row_checks,
)
from foundation.data.schema import DataSchema, DataValidationError, FieldSpec

__all__ = ["DataValidationError", "Problem", "ValidationResult", "format_problems", "validate"]


@dataclass
class ValidationResult:
    """Output of `validate`.

    Attributes:
        table: the canonical table of the clean rows, in input order, then the label events of the schema's
            `label_events` (none without it).
        quarantine_counts: reason -> number of rows quarantined (empty when all rows are clean).
        quarantine_paths: reason -> the parquet file those rows were written to.
        n_input_rows: rows in the input; == table.num_rows - n_label_events + sum(quarantine_counts.values()).
        n_label_events: label events appended (`foundation.data.label_events`).
    """

    table: pa.Table
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    quarantine_paths: dict[str, Path] = field(default_factory=dict)
    n_input_rows: int = 0
    n_label_events: int = 0

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantine_counts.values())


def validate(data: pa.Table, schema: DataSchema, quarantine_dir: str | Path | None = None,
             on_error: str | None = None) -> ValidationResult:
    """Convert and check events; raise on bad rows or quarantine them, per the schema's policy.

    Args:
        data: raw events (schema's raw column names; extra columns ignored) or a canonical table.
        schema: the dataset schema.
        quarantine_dir: overrides `schema.validation.quarantine_dir`.
        on_error: "raise" | "quarantine"; overrides `schema.validation.on_error`.
    Returns:
        ValidationResult with the clean canonical rows and the quarantine counts and files.
    Raises:
        DataValidationError: missing columns or inconvertible column types (always), bad rows (on_error=raise).
    """
    on_error = error_policy(on_error, schema)
    n = data.num_rows
    target = schema.canonical_schema()
    if data.schema.remove_metadata().equals(target):
        table, issues, raw = data, [], None
    else:
        conversion = convert_events(data, schema)
        table, issues, raw = conversion.table, conversion.issues, data
    source = raw if raw is not None else table

    bad = np.zeros(n, dtype=bool)
    found: list[tuple[Problem, np.ndarray]] = []

    def record(reason: str, column: str, key: str, problem: str, mask: np.ndarray | None) -> None:
        if mask is None:
            return
        mask = mask & ~bad
        if mask.any():
            found.append((Problem.from_mask(reason, column, key, problem, mask, source), mask))
            bad[mask] = True

    conversion_issues = {issue.reason: issue for issue in issues}
    for reason, name, key, problem in row_checks(schema):
        if reason in conversion_issues:
            issue = conversion_issues.pop(reason)
            record(issue.reason, issue.column, issue.key, issue.problem, issue.mask)
        elif problem is not None:
            column = input_column(schema, name, raw is not None)
            record(reason, column, key, problem, _check(reason, table[name], source[column], schema.fields.get(name)))
    for issue in conversion_issues.values():  # none expected: every conversion reason has its place above
        record(issue.reason, issue.column, issue.key, issue.problem, issue.mask)
    if schema.event_id is not None:
        raw_ids = raw[schema.event_id] if raw is not None else None
        record("duplicate_event_id", schema.event_id if raw is not None else "event_id", "event_id",
               "event id already seen in an earlier row (the first occurrence is kept)",
               _duplicate_mask(table["event_id"], raw_ids, ~bad))

    problems = [problem for problem, _ in found]
    if problems and on_error == "raise":
        raise DataValidationError(format_problems(problems, schema, n), problems)
    paths: dict[str, Path] = {}
    if problems:
        paths = _write_quarantine(source, found, quarantine_folder(quarantine_dir, schema), schema, n)
        table = table.filter(pa.array(~bad))
    table = derive_labels(table, schema)  # after quarantine: a bad row never marks or is marked
    clean = table.num_rows
    table = append_label_events(table, schema)  # after derivation: a derived label can land as an event too
    return ValidationResult(table=table, quarantine_counts={p.reason: p.count for p in problems},
                            quarantine_paths=paths, n_input_rows=n, n_label_events=table.num_rows - clean)


def _check(reason: str, values: pa.ChunkedArray, source_values: pa.ChunkedArray,
           spec: FieldSpec | None) -> np.ndarray | None:
    """(N,) bool mask of rows failing one check, or None when none fail (decided by a cheap aggregate first)."""
    kind = reason.split(".")[0]
    if kind in ("null_timestamp", "null_value"):
        return as_mask(pc.is_null(values)) if values.null_count else None
    if kind in ("null_event_id", "null_entity_key"):
        mask = as_mask(pc.is_null(values)) if values.null_count else None
        # Only string input can hold an empty or blank key; ints cast to string never do: skip the scan.
        if pa.types.is_string(source_values.type) or pa.types.is_large_string(source_values.type):
            empty = as_mask(pc.match_substring_regex(values, BLANK_RE))
            if empty.any():
                mask = empty if mask is None else mask | empty
        return mask
    if kind == "nan_value":
        mask = as_mask(pc.invert(pc.is_finite(values)))
        return mask if mask.any() else None
    if kind in ("negative_value", "below_min", "above_max"):
        extremes = pc.min_max(values)
        if kind == "above_max":
            top = extremes["max"].as_py()
            return as_mask(pc.greater(values, spec.max)) if top is not None and top > spec.max else None
        bottom = extremes["min"].as_py()
        return as_mask(pc.less(values, spec.min)) if bottom is not None and bottom < spec.min else None
    raise ValueError(f"unknown check {reason}")


def _duplicate_mask(ids: pa.ChunkedArray, raw_ids: pa.ChunkedArray | None, eligible: np.ndarray) -> np.ndarray | None:
    """(N,) bool: rows whose event id appeared in an earlier eligible row; None when there are none.

    Ids become dense integer codes (integer raw ids shifted by their minimum when their range is small,
    otherwise a dictionary encoding); a bincount then finds repeated codes in one pass, and only the rows of
    repeated ids are sorted (stable) to keep the first occurrence. Strictly increasing integer ids, the
    usual case, are accepted without any of this.
    """
    n = len(ids)
    keys = raw_ids if raw_ids is not None and pa.types.is_integer(raw_ids.type) else ids
    rows = np.flatnonzero(eligible)
    if len(rows) < 2:
        return None
    codes = None
    if pa.types.is_integer(keys.type) and keys.null_count == 0:
        values = keys.to_numpy()
        if len(rows) == n and np.all(values[1:] > values[:-1]):
            return None
        low, high = int(values.min()), int(values.max())
        if high - low < 4 * n + 1024:
            codes = values - low
    if codes is None:
        encoded = pc.dictionary_encode(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys)
        codes = pc.fill_null(encoded.indices, 0).to_numpy()  # null ids are never eligible
    codes = codes[rows]
    counts = np.bincount(codes)
    if counts.max() <= 1:
        return None
    candidates = np.flatnonzero(counts[codes] > 1)  # positions (in rows) of ids seen more than once
    order = np.argsort(codes[candidates], kind="stable")  # stable: equal ids stay in row order
    ordered = codes[candidates][order]
    repeated = candidates[order[1:][ordered[1:] == ordered[:-1]]]
    mask = np.zeros(n, dtype=bool)
    mask[rows[repeated]] = True
    return mask


def _write_quarantine(source: pa.Table, found: list[tuple[Problem, np.ndarray]], qdir: Path, schema: DataSchema,
                      n: int) -> dict[str, Path]:
    """Write each reason's rows (raw columns plus `_source_row`) to `<qdir>/<reason>.parquet`, then the
    summary of this run (`problems.finish_quarantine`)."""
    previous = previous_files(qdir)
    for problem, mask in found:
        rows = np.flatnonzero(mask)
        part = source.take(pa.array(rows)).append_column("_source_row", pa.array(rows, pa.int64()))
        pq.write_table(part, qdir / f"{problem.reason}.parquet")
    return finish_quarantine(qdir, previous, [p for p, _ in found], schema, n)
