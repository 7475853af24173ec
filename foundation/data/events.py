"""Reading raw events and converting them to the canonical event table.

`read_events` reads the schema's columns from a parquet/CSV file, folder or glob. `convert_events` renames
and casts them; values that cannot be converted (a word in a numeric column, an unparsable date) become
nulls, reported as one boolean mask per problem, which `foundation.data.validate` turns into a clear error
or a counted quarantine.

Conversions are vectorised pyarrow kernels; the clean path of each column is a single cast, and the
per-value fallback (regex + strptime) only runs when that cast fails.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.data.schema import DataSchema, DataValidationError, SourceSpec

logger = logging.getLogger(__name__)
_DATA_EXTENSIONS = {"parquet": (".parquet", ".parq", ".pq"), "csv": (".csv", ".tsv")}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4", ".snappy")
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


def source_files(source: SourceSpec) -> tuple[list[str] | str, list[str]]:
    """What `source.path` names: (the data files, sorted by path, or a URI as is; the skipped files).

    A glob or a folder (searched recursively, hive partitions included) keeps the files whose extension is
    a data extension of `source.format` or that have none; "_SUCCESS", ".crc" and other hidden or marker
    files are never data. Anything else (a stray notes.txt, a README.md) is skipped; the caller says so.
    """
    path = source.path
    if "://" in path:
        return path, []
    if glob.has_magic(path):
        found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"source.path: the glob '{path}' matches no file")
    elif os.path.isdir(path):
        found = sorted(os.path.join(root, name) for root, dirs, names in os.walk(path) for name in names
                       if not any(part.startswith(("_", ".")) for part in os.path.relpath(root, path).split(os.sep)
                                  if part != "."))
    elif os.path.exists(path):
        return [path], []
    else:
        raise FileNotFoundError(f"source.path: '{path}' is not a file, a folder or a glob that matches files")
    found = [p for p in found if not os.path.basename(p).startswith(("_", "."))]
    data = [p for p in found if _is_data_file(p, source.format)]
    return data, [p for p in found if p not in set(data)]


def _is_data_file(path: str, fmt: str) -> bool:
    name = os.path.basename(path).lower()
    for compression in _COMPRESSIONS:
        name = name.removesuffix(compression)
    return "." not in name or name.endswith(_DATA_EXTENSIONS[fmt])


def open_dataset(source: SourceSpec) -> ds.Dataset:
    """A pyarrow dataset over `source.path` (file, folder or glob; parquet or CSV).

    Files of a folder or glob that are not data by their extension are skipped, and a warning says how many
    and which. A file that cannot be read as `source.format` (empty, truncated, another format) is a
    `DataValidationError` naming it. CSV columns are all read as strings so that every file of a folder gets
    the same types (type inference per file disagrees) and ids keep their leading zeros; `convert_events`
    casts them.
    """
    target, skipped = source_files(source)
    if skipped:
        logger.warning("source.path '%s': skipped %d file(s) that are not %s data by their extension: %s",
                       source.path, len(skipped), source.format, ", ".join(os.path.basename(p) for p in skipped[:5]))
    if isinstance(target, list) and not target:
        raise DataValidationError(f"source.path: '{source.path}' holds no {source.format} file (skipped "
                                  f"{len(skipped)} other file(s)); nothing to read")
    hive = os.path.isdir(source.path) if isinstance(target, list) else False
    options: dict[str, Any] = {"partitioning": "hive", "partition_base_dir": source.path} if hive else {}
    with readable(source, target):
        if source.format == "parquet":
            return ds.dataset(target, format="parquet", **options)
        parse = pacsv.ParseOptions(delimiter=source.delimiter)
        inferred = ds.dataset(target, format=ds.CsvFileFormat(parse_options=parse), **options)
        strings = pa.schema([(name, pa.string()) for name in inferred.schema.names])
        convert = pacsv.ConvertOptions(column_types=strings, strings_can_be_null=True,
                                       quoted_strings_can_be_null=False, null_values=list(source.null_values))
        fmt = ds.CsvFileFormat(parse_options=parse, convert_options=convert)
        return ds.dataset(target, format=fmt, schema=strings, **options)


@contextmanager
def readable(source: SourceSpec, files: list[str] | str) -> Iterator[None]:
    """Turn pyarrow's error on an unreadable source file into one line that names the file."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        bad, reason = _unreadable_file(files if isinstance(files, list) else [files], source.format, err)
        raise DataValidationError(f"source.path: cannot read '{bad}' as {source.format} ({reason}); remove or "
                                  f"replace the file, or set source.format") from None


def _unreadable_file(files: list[str], fmt: str, err: Exception) -> tuple[str, str]:
    """(the file that fails, why in one line): the one pyarrow's message names, else the first parquet file
    whose footer cannot be read; else the whole source with pyarrow's first line."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    named = [f for f in files if f in str(err)]
    if fmt == "parquet":
        for f in named + files:
            try:
                pq.read_metadata(f)
            except (pa.ArrowInvalid, OSError) as bad:
                return f, (str(bad).strip().splitlines() or [type(bad).__name__])[0]
    return (named[0] if named else ", ".join(files[:3])), first_line


def read_events(schema: DataSchema, columns: list[str] | None = None) -> pa.Table:
    """Read the raw events of a dataset, in file order (files sorted by path).

    Args:
        schema: the dataset schema (its `source`).
        columns: raw columns to read; default `schema.raw_columns`.
    Returns:
        the raw table with those columns (raw names and types).
    Raises:
        DataValidationError: a requested column is missing (lists the available ones).
        FileNotFoundError: nothing at `source.path`.
    """
    dataset = open_dataset(schema.source)
    columns = list(columns) if columns is not None else schema.raw_columns
    schema.check_columns(dataset.schema.names, columns)
    with readable(schema.source, dataset.files):
        table = _scan(dataset, columns, schema)
    if table.num_rows == 0:
        raise DataValidationError(f"source.path: '{schema.source.path}' holds no events (0 rows in "
                                  f"{len(dataset.files)} file(s))")
    return table


def _scan(dataset: ds.Dataset, columns: list[str], schema: DataSchema) -> pa.Table:
    scanner = dataset.scanner(columns=columns)
    # Row counts come from parquet footers for free; a CSV would need a full extra pass, so its bar counts
    # rows without a total and is shown only for large files.
    if schema.source.format == "parquet":
        total = scanner.count_rows()
        small = total < 2_000_000
    else:
        total = None
        small = sum(os.path.getsize(f) for f in getattr(dataset, "files", []) if os.path.exists(f)) < 200e6
    batches = []
    with tqdm(total=total, unit="rows", unit_scale=True, desc=f"read {schema.name}", disable=small) as bar:
        for batch in scanner.to_batches():  # ordered: row numbers (default event ids) are reproducible
            batches.append(batch)
            bar.update(batch.num_rows)
    return pa.Table.from_batches(batches, schema=scanner.projected_schema)


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
    for spec in schema.fields.values():
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
