"""Reading raw events from the dataset's source: a parquet/CSV file, folder (hive partitions allowed) or glob.

`read_events` reads the schema's raw columns in file order (files sorted by path), so row numbers (the
default event ids and `_source_row` in quarantine files) are reproducible; the Spark backend reads the same
files (`source_files`). A source that cannot be read is one line naming the file; files of a folder that
are not data by their extension are skipped, counted and logged; a source with no rows stops here.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.data.schema import DataSchema, DataValidationError, SourceSpec

logger = logging.getLogger(__name__)
_DATA_EXTENSIONS = {"parquet": (".parquet", ".parq", ".pq"), "csv": (".csv", ".tsv")}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4", ".snappy")


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
