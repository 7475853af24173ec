"""What validation reports, shared by both backends (`foundation.data.validate`, `foundation.data.spark.validate`):
the problem list in priority order, the error message, the quarantine folder and its `_summary.json`.

Every row is assigned to the first problem it has, in the order of `row_checks`, so the counts add up:
clean rows + quarantined rows == input rows, in either backend.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from foundation.data.schema import DataSchema, SchemaError

logger = logging.getLogger("foundation.data.validate")
SUMMARY_FILE = "_summary.json"  # leading underscore: dataset readers of the folder skip it
# An id or key made of these characters only is as good as none: "   " is no customer. The same regex runs in
# Arrow (RE2) and Spark (Java); both read \x0B as the vertical tab.
BLANK_RE = r"^[ \t\n\r\f\x0B]*$"


@dataclass
class Problem:
    """One kind of bad row found in the data.

    Attributes:
        reason: quarantine reason (file name stem), e.g. "negative_value.amount".
        column: the column as named in the input table.
        key: the config key that names the column, e.g. "fields.amount.column".
        problem: what is wrong, in words.
        count: how many rows have it (rows already counted under an earlier problem excluded).
        example_row: input row number of the first such row.
        example: that row as a dict of its input columns.
    """

    reason: str
    column: str
    key: str
    problem: str
    count: int
    example_row: int
    example: dict[str, Any]

    @classmethod
    def from_mask(cls, reason: str, column: str, key: str, problem: str, mask: np.ndarray,
                  source: pa.Table) -> Problem:
        """Build from a (N,) bool mask over `source` (which must have at least one True)."""
        rows = np.flatnonzero(mask)
        first = int(rows[0])
        return cls(reason, column, key, problem, len(rows), first, source.slice(first, 1).to_pylist()[0])

    def describe(self) -> str:
        return (f"column '{self.column}' ({self.key}): {self.problem} [{self.reason}]: {self.count} row(s), "
                f"e.g. row {self.example_row}: {self.example}")


def format_problems(problems: list[Problem], schema: DataSchema, n_rows: int) -> str:
    """The message of a DataValidationError: one line per problem, then how to proceed."""
    lines = [f"dataset '{schema.name}' (source '{schema.source.path}'): {len(problems)} problem(s) in "
             f"{n_rows} rows:"]
    lines += [f"  - {p.describe()}" for p in problems]
    lines.append("Fix the data or the schema (conf/data/<name>.yaml), or set validation.on_error=quarantine "
                 "to set these rows aside in <quarantine_dir>/<reason>.parquet.")
    return "\n".join(lines)


def row_checks(schema: DataSchema) -> list[tuple[str, str, str, str | None]]:
    """(reason, canonical column, config key, problem) in priority order: time, ids, keys, then field by field.
    Entries with problem None are the places of conversion issues (found when converting raw columns)."""
    checks: list[tuple[str, str, str, str | None]] = [
        ("unparsable_timestamp", "event_time", "timestamp.column", None),
        ("null_timestamp", "event_time", "timestamp.column", "event time is null")]
    if schema.event_id is not None:
        checks.append(("null_event_id", "event_id", "event_id", "event id is null or empty (or blank)"))
    for ent in schema.entities.values():
        checks.append((f"null_entity_key.{ent.type}", ent.id_column, f"entities.{ent.type}.column",
                       f"{ent.type} key is null or empty (or blank)"))
    for spec in schema.fields.values():
        key = f"fields.{spec.name}.column"
        converted = {"numeric": "wrong_type", "timestamp": "unparsable_timestamp"}.get(spec.type)
        if converted:
            checks.append((f"{converted}.{spec.name}", spec.name, key, None))
        if spec.type == "numeric" and not spec.allow_nan:
            checks.append((f"nan_value.{spec.name}", spec.name, key, "value is NaN or infinite (allow_nan: false)"))
        if not spec.allow_null:
            checks.append((f"null_value.{spec.name}", spec.name, key, "value is null (allow_null: false)"))
        if spec.min is not None:
            reason = "negative_value" if spec.min == 0 else "below_min"
            what = "value is negative (min: 0)" if spec.min == 0 else f"value is below min {spec.min:g}"
            checks.append((f"{reason}.{spec.name}", spec.name, key, what))
        if spec.max is not None:
            checks.append((f"above_max.{spec.name}", spec.name, key, f"value is above max {spec.max:g}"))
    checks += [(f"wrong_type.{name}", name, f"labels.{name}.column", None) for name in schema.labels]
    return checks


def input_column(schema: DataSchema, name: str, raw: bool) -> str:
    """The column as the user's table names it (raw name for raw input, canonical name otherwise)."""
    if not raw:
        return name
    if name == "event_time":
        return schema.timestamp.column
    if name == "event_id":
        return schema.event_id or name
    for ent in schema.entities.values():
        if ent.id_column == name:
            return ent.column
    return schema.fields[name].column


def error_policy(on_error: str | None, schema: DataSchema) -> str:
    """`on_error` or the schema's policy, checked: "raise" or "quarantine"."""
    on_error = on_error or schema.validation.on_error
    if on_error not in ("raise", "quarantine"):
        raise SchemaError(f"validation.on_error: {on_error!r} is not one of raise, quarantine")
    return on_error


def quarantine_folder(quarantine_dir: str | Path | None, schema: DataSchema) -> Path:
    """`quarantine_dir` or the schema's, created; a SchemaError when neither names one."""
    qdir = quarantine_dir or schema.validation.quarantine_dir
    if not qdir:
        raise SchemaError("validation.quarantine_dir: required when on_error is 'quarantine'")
    Path(qdir).mkdir(parents=True, exist_ok=True)
    return Path(qdir)


def previous_files(qdir: Path) -> dict[str, str]:
    """reason -> file name listed by the `_summary.json` of a previous run (empty when there is none)."""
    summary_path = qdir / SUMMARY_FILE
    return json.loads(summary_path.read_text()).get("files", {}) if summary_path.exists() else {}


def finish_quarantine(qdir: Path, previous: dict[str, str], problems: list[Problem], schema: DataSchema,
                      n: int) -> dict[str, Path]:
    """After the reason files are written: remove the files of a previous run that this run did not rewrite
    (nothing else in the folder is touched, so it never mixes runs), write `_summary.json`, log the counts.

    Returns:
        reason -> its parquet file.
    """
    paths = {p.reason: qdir / f"{p.reason}.parquet" for p in problems}
    for reason, name in previous.items():
        stale = qdir / Path(name).name
        if reason not in paths and stale.exists():
            stale.unlink()
    n_bad = int(sum(p.count for p in problems))
    summary = {"dataset": schema.name, "source": schema.source.path, "input_rows": n, "quarantined_rows": n_bad,
               "counts": {p.reason: p.count for p in problems},
               "files": {reason: path.name for reason, path in paths.items()}}
    (qdir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    logger.warning("dataset '%s': quarantined %d of %d rows (%s) -> %s", schema.name, n_bad, n,
                   ", ".join(f"{p.reason}={p.count}" for p in problems), qdir)
    return paths
