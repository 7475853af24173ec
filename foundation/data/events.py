"""Converting raw events to the canonical event table (reading them: `foundation.data.source`, whose
`read_events` and `open_dataset` are importable from here too).

`convert_events` renames and casts the schema's raw columns; values that cannot be converted (a word in a numeric column, an unparsable date) become
nulls, reported as one boolean mask per problem, which `foundation.data.validate` turns into a clear error
or a counted quarantine.

Conversions are vectorised pyarrow kernels; the clean path of each column is a single cast, and the
per-value fallback (regex + strptime) only runs when that cast fails.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.source import open_dataset, read_events, source_files

__all__ = ["Conversion", "ConversionIssue", "as_mask", "convert_events", "open_dataset", "read_events",
           "source_files"]

_EPOCH_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_NUMBER_RE = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)$"
_ISO_RE = (r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?P<frac>\.\d+)?)?"
           r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?$")
_OFFSET_RE = r"^(?P<sign>[+-])(?P<hh>\d{2}):?(?P<mm>\d{2})$"
# Below this many rows, a thread pool costs more than it saves.
_PARALLEL_MIN_ROWS = 200_000


@dataclass
class ConversionIssue:
    """Values of one raw column that could not be converted to their canonical type.

    Attributes:
        reason: quarantine reason, e.g. "unparsable_timestamp", "wrong_type.amount".
        column: raw column name.
        key: config key that names the column, e.g. "fields.amount.column".
        problem: what is wrong, in words.
        mask: (N,) bool, True on rows whose value failed to convert (they are null in the converted table).
    """

    reason: str
    column: str
    key: str
    problem: str
    mask: np.ndarray


@dataclass
class Conversion:
    """Output of `convert_events`: the canonical table (failed values null) and the conversion issues."""

    table: pa.Table
    issues: list[ConversionIssue]


def convert_events(raw: pa.Table, schema: DataSchema) -> Conversion:
    """Rename and cast raw events to the canonical event table; bad values become null and are reported.

    Args:
        raw: raw events (N rows).
        schema: the dataset schema.
    Returns:
        Conversion(table (N rows, canonical schema), issues (each with a (N,) bool mask)).
    Raises:
        DataValidationError: a missing column, or a column whose type cannot be converted at all.
    """
    schema.check_columns(raw.column_names)
    keys = schema.column_keys
    n, ts = raw.num_rows, schema.timestamp
    # (canonical column, conversion) pairs; each conversion returns (values, ConversionIssue | None).
    jobs: list[tuple[str, Callable[[], tuple[Any, ConversionIssue | None]]]] = [
        ("event_id", partial(_row_numbers, n) if schema.event_id is None
         else partial(_to_string, raw[schema.event_id], schema.event_id, keys)),
        ("event_time", partial(_to_timestamp, raw[ts.column], ts.column, keys, ts.unit, ts.format,
                               "unparsable_timestamp"))]
    jobs += [(ent.id_column, partial(_to_string, raw[ent.column], ent.column, keys))
             for ent in schema.entities.values()]
    added = None if schema.label_events is None else schema.label_events.field
    for spec in schema.fields.values():
        if spec.name == added and spec.column not in raw.column_names:
            # No raw column: the source events carry no landed label; foundation/data/label_events.py appends them.
            jobs.append((spec.name, partial(_no_label_event, n)))
            continue
        values = raw[spec.column]
        if spec.type == "numeric":
            job = partial(_to_float, values, spec.column, keys, f"wrong_type.{spec.name}")
        elif spec.type == "timestamp":
            job = partial(_to_timestamp, values, spec.column, keys, spec.unit, spec.format,
                          f"unparsable_timestamp.{spec.name}")
        else:
            job = partial(_to_string, values, spec.column, keys)
        jobs.append((spec.name, job))
    jobs += [(label.name, partial(_to_label, raw[label.column], label.column, keys, label.name))
             if label.from_events is None else (label.name, partial(_unknown_label, n))
             for label in schema.labels.values()]

    if n >= _PARALLEL_MIN_ROWS and len(jobs) > 1:
        # Arrow kernels release the GIL, so columns convert in parallel.
        with ThreadPoolExecutor(max_workers=min(len(jobs), pa.cpu_count())) as pool:
            results = list(pool.map(lambda job: job[1](), jobs))
    else:
        results = [job() for _, job in jobs]
    target = schema.canonical_schema()
    arrays = [_chunked(array, target.field(name).type) for (name, _), (array, _) in zip(jobs, results)]
    issues = [issue for _, issue in results if issue is not None]
    return Conversion(pa.Table.from_arrays(arrays, schema=target), issues)


def _row_numbers(n: int) -> tuple[pa.Array, None]:
    """Event ids for data without an id column: the row number, as a string."""
    return pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), None


def _chunked(array: Any, dtype: pa.DataType) -> pa.ChunkedArray:
    chunked = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array], type=dtype)
    return chunked if chunked.type == dtype else chunked.cast(dtype)


def _type_error(column: str, keys: dict[str, str], dtype: pa.DataType, expected: str) -> DataValidationError:
    return DataValidationError(f"column '{column}' ({keys.get(column, 'column')}): has type {dtype}, which "
                               f"cannot be converted to {expected}")


def _failed(before: pa.ChunkedArray, after: pa.ChunkedArray) -> np.ndarray:
    """(N,) bool: a value was present before the conversion and is null after it."""
    return as_mask(pc.and_(pc.is_valid(before), pc.is_null(after)))


def as_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow booleans -> (N,) numpy bool, null read as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _issue(reason: str, column: str, keys: dict[str, str], problem: str, mask: np.ndarray):
    return ConversionIssue(reason, column, keys.get(column, column), problem, mask) if mask.any() else None


def _decode(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded columns (pandas categoricals) -> their plain value type; large_string -> string."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return col


def _to_string(col: pa.ChunkedArray, column: str, keys: dict[str, str]):
    """Ids, categoricals and text -> string. Integral floats (ids that pandas turned into float64 because of a
    null) are written without the trailing '.0' so that they match the same id written as an integer."""
    col = _decode(col)
    t = col.type
    if pa.types.is_string(t):
        return col, None
    if pa.types.is_integer(t) and len(col) >= _PARALLEL_MIN_ROWS:
        low, high = (pc.min_max(col)[k].as_py() for k in ("min", "max"))
        if low is not None and high - low < len(col) // 4:
            # Few distinct keys (cards, merchants): format each once and gather, ~2x faster than a cast.
            names = pc.cast(pa.array(np.arange(low, high + 1, dtype=np.int64)), pa.string())
            return pa.chunked_array([names.take(pc.subtract(pc.cast(chunk, pa.int64()), low))
                                     for chunk in col.chunks], pa.string()), None
    if pa.types.is_floating(t):
        finite = pc.fill_null(pc.is_finite(col), True)
        integral = pc.fill_null(pc.equal(pc.floor(col), col), True)
        if pc.all(pc.and_(finite, integral)).as_py() is not False:
            return pc.cast(pc.cast(col, pa.int64()), pa.string()), None
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
            or pa.types.is_temporal(t) or pa.types.is_decimal(t) or pa.types.is_large_string(t):
        return pc.cast(col, pa.string()), None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        try:
            return pc.cast(col, pa.string()), None
        except pa.ArrowInvalid:
            raise DataValidationError(f"column '{column}' ({keys.get(column, 'column')}): binary values that "
                                      f"are not valid UTF-8") from None
    raise _type_error(column, keys, t, "string")


def _to_float(col: pa.ChunkedArray, column: str, keys: dict[str, str], reason: str):
    """Numbers -> float64; strings parsed, and a value that is not a number is an issue."""
    col = _decode(col)
    t = col.type
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
            or pa.types.is_decimal(t):
        return pc.cast(col, pa.float64()), None
    if not pa.types.is_string(t):
        raise _type_error(column, keys, t, "a number (float64)")
    try:
        return pc.cast(col, pa.float64()), None
    except pa.ArrowInvalid:
        pass
    text = pc.utf8_trim_whitespace(col)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)  # blank = missing, not wrong
    ok = pc.match_substring_regex(text, _NUMBER_RE)
    parsed = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    return parsed, _issue(reason, column, keys, "value is not a number", _failed(text, parsed))


def _no_label_event(n: int) -> tuple[pa.Array, None]:
    """The label-event field of the source events: null (a source event is never a landed label)."""
    return pa.nulls(n, pa.string()), None


def _unknown_label(n: int) -> tuple[pa.Array, None]:
    """A derived label before derivation: null (unknown) on every row."""
    return pa.nulls(n, pa.float64()), None


def _to_label(col: pa.ChunkedArray, column: str, keys: dict[str, str], name: str):
    """Labels -> float64 with NaN read as 'unknown' (null), as pandas writes missing floats."""
    values, issue = _to_float(col, column, keys, f"wrong_type.{name}")
    if values.null_count < len(values) and pc.any(pc.is_nan(values)).as_py():
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)
    return values, issue


def _to_timestamp(col: pa.ChunkedArray, column: str, keys: dict[str, str], unit: str | None, fmt: str | None,
                  reason: str):
    """Native timestamps, dates, numeric epochs (with `unit`) or strings -> timestamp[ms] (naive UTC)."""
    col = _decode(col)
    t = col.type
    target = pa.timestamp("ms")
    if pa.types.is_timestamp(t):
        # tz-aware values are stored as UTC, so the cast to naive keeps UTC; sub-ms precision is dropped.
        return pc.cast(col, target, safe=False), None
    if pa.types.is_date(t) or pa.types.is_null(t):
        return pc.cast(col, target), None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        if unit is None:
            raise DataValidationError(f"column '{column}' ({keys.get(column, 'column')}): holds {t} numbers; set "
                                      f"the epoch unit (unit: s | ms | us | ns) next to the column name")
        return _epoch_to_timestamp(col, unit, column, keys, reason)
    if not pa.types.is_string(t):
        raise _type_error(column, keys, t, "a timestamp")
    if unit is not None:  # numeric epochs read from CSV arrive as strings
        numbers, issue = _to_float(col, column, keys, reason)
        if issue is not None:
            issue.problem = f"value is not a numeric epoch in {unit}"
        stamps, bad = _epoch_to_timestamp(numbers, unit, column, keys, reason)
        return stamps, issue or bad
    if fmt is not None:
        stamps = pc.strptime(col, format=fmt, unit="ms", error_is_null=True)
        return stamps, _issue(reason, column, keys, f"value does not match format '{fmt}'", _failed(col, stamps))
    try:
        return pc.cast(col, target), None
    except pa.ArrowInvalid:
        pass
    stamps = _parse_iso(pc.utf8_trim_whitespace(col))
    return stamps, _issue(reason, column, keys, "value is not an ISO-8601 date/time", _failed(col, stamps))


def _epoch_to_timestamp(col: pa.ChunkedArray, unit: str, column: str, keys: dict[str, str], reason: str):
    try:
        return _epoch_ms(col, unit, column, keys, reason)
    except pa.ArrowInvalid:  # overflow of int64 milliseconds: a wrong unit, or garbage in the column
        low, high = (pc.min_max(col)[k].as_py() for k in ("min", "max"))
        extreme = float(high if abs(high or 0) >= abs(low or 0) else low)
        raise DataValidationError(f"column '{column}' ({keys.get(column, 'column')}): epoch value {extreme:g} "
                                  f"in {unit} overflows the millisecond timestamp range; check the unit") from None


def _epoch_ms(col: pa.ChunkedArray, unit: str, column: str, keys: dict[str, str], reason: str):
    if pa.types.is_integer(col.type):
        if unit == "ms":
            ms = pc.cast(col, pa.int64())
        elif unit == "s":
            ms = pc.multiply_checked(pc.cast(col, pa.int64()), 1000)
        else:
            ms = pc.divide(pc.cast(col, pa.int64()), 1000 if unit == "us" else 1_000_000)
        return pc.cast(ms, pa.timestamp("ms")), None
    values = pc.cast(col, pa.float64())
    finite = pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))
    ms = pc.cast(pc.floor(pc.multiply(finite, _EPOCH_MS[unit])), pa.int64())
    return pc.cast(ms, pa.timestamp("ms")), _issue(reason, column, keys, f"value is not a finite epoch in {unit}",
                                                   _failed(values, finite))


def _parse_iso(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Per-value tolerant ISO-8601 parsing (the fallback when one cast of the whole column fails).

    Handles 'YYYY-MM-DD[ T]HH:MM[:SS][.fff][Z|+HH:MM]'; offsets are converted to UTC. Anything else,
    including impossible dates such as 2024-02-30 (strptime would roll them over), becomes null.
    """
    parts = pc.extract_regex(text, _ISO_RE)
    day, clock = pc.struct_field(parts, "date"), pc.struct_field(parts, "time")
    clock = pc.if_else(pc.equal(clock, ""), "00:00:00", clock)
    clock = pc.if_else(pc.equal(pc.utf8_length(clock), 5), pc.binary_join_element_wise(clock, "00", ":"), clock)
    base = pc.binary_join_element_wise(day, clock, " ")
    seconds = pc.strptime(base, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    roundtrip = pc.equal(pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S"), base)
    frac = pc.utf8_slice_codeunits(pc.struct_field(parts, "frac"), 1, 4)
    frac_ms = pc.cast(pc.utf8_rpad(frac, width=3, padding="0"), pa.int64())
    offset = pc.extract_regex(pc.struct_field(parts, "tz"), _OFFSET_RE)
    minutes = pc.add(pc.multiply(pc.cast(pc.struct_field(offset, "hh"), pa.int64()), 60),
                     pc.cast(pc.struct_field(offset, "mm"), pa.int64()))
    sign = pc.if_else(pc.equal(pc.struct_field(offset, "sign"), "-"), -1, 1)
    offset_ms = pc.fill_null(pc.multiply(pc.multiply(minutes, sign), 60_000), 0)  # no offset / "Z" -> UTC
    ms = pc.add(pc.multiply(pc.cast(seconds, pa.int64()), 1000), frac_ms)
    ms = pc.subtract(ms, offset_ms)
    ms = pc.if_else(roundtrip, ms, pa.scalar(None, pa.int64()))
    return pc.cast(ms, pa.timestamp("ms"))
