"""Reading raw events into Spark with their input row numbers.

The pyarrow backend numbers rows in file order (files sorted by path, rows in file order); the row number
is `_source_row` in quarantine files and the event id of datasets without an id column. Spark reads files
in parallel and in no particular order, so the same number is rebuilt from file metadata: per file, its row
count gives the offset of its first row (a small aggregate, joined back by broadcast), and the row's
position inside the file comes from parquet's `_metadata.row_index` or, for CSV, from its split's start and
its position within the split. Only one count per file (or split) goes through the driver.
"""

from __future__ import annotations

import os

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from foundation.data.schema import DataSchema, SourceSpec
from foundation.data.source import open_dataset, source_files
from foundation.data.spark.session import require_utc

ROW = "_source_row"
_FILE, _BLOCK, _POS = "__file", "__block", "__pos"
# A CSV value the files never hold, so that Spark keeps quoted empty strings ("") as "" (not null), as
# pyarrow does; unquoted empty fields still read as null.
_NO_NULL_TOKEN = "\u0000"


def col(name: str) -> Column:
    """A column by its exact name (dots, spaces and backticks in raw column names are not syntax)."""
    return F.col("`" + name.replace("`", "``") + "`")


def source_paths(source: SourceSpec) -> list[str]:
    """What Spark should read: the same files, folder or URI the pyarrow backend reads.

    Files are chosen with the pyarrow backend's rule (`foundation.data.events.source_files`: sorted, no
    `_`/`.` files, no file that is not data by its extension), so both read the same files; a folder with
    nothing to skip is passed as the folder (Spark discovers its hive partitions); URIs (`s3a://`,
    `hdfs://`, `file://`) go to Spark untouched.

    Raises:
        FileNotFoundError: nothing at a local `source.path`.
    """
    target, skipped = source_files(source)
    if isinstance(target, str):
        return [target]
    if os.path.isdir(source.path) and not skipped:
        return [os.path.abspath(source.path)]
    return [os.path.abspath(p) for p in target]


def raw_arrow_schema(schema: DataSchema) -> pa.Schema | None:
    """The Arrow types of the raw columns as the pyarrow backend reads them (parquet footers only).

    Used to write quarantine files with the input's own types and to recognise nanosecond timestamps that
    Spark hands over as int64. None when pyarrow cannot open the source (e.g. an `hdfs://` URI).
    """
    try:
        full = open_dataset(schema.source).schema
    except (OSError, ValueError, pa.ArrowException):
        return None
    names = [c for c in schema.raw_columns if c in full.names]
    return pa.schema([full.field(c) for c in names])


def read_events(spark: SparkSession, schema: DataSchema, columns: list[str] | None = None) -> DataFrame:
    """Read the raw events of a dataset with their input row number.

    Args:
        spark: the session (time zone UTC).
        schema: the dataset schema (its `source`).
        columns: raw columns to read; default `schema.raw_columns`.
    Returns:
        a DataFrame with the raw columns (raw names, Spark types) and `_source_row` (long): the row number
        the pyarrow backend gives the same row (files sorted by path, rows in file order).
    Raises:
        DataValidationError: a requested column is missing (lists the available ones).
        FileNotFoundError: nothing at `source.path`.
    """
    require_utc(spark)
    source = schema.source
    paths = source_paths(source)
    reader = spark.read
    if os.path.isdir(source.path) and paths != [os.path.abspath(source.path)]:
        reader = reader.option("basePath", os.path.abspath(source.path))  # files of a folder: keep partitions
    if source.format == "parquet":
        frame = reader.parquet(*paths)
    else:
        frame = (reader.option("header", True).option("sep", source.delimiter).option("quote", '"')
                 .option("escape", '"').option("inferSchema", False).option("nullValue", _NO_NULL_TOKEN)
                 .option("mode", "PERMISSIVE").csv(paths))
    columns = list(columns) if columns is not None else schema.raw_columns
    schema.check_columns(frame.columns, columns)
    if source.format == "parquet":
        located = frame.select(*[col(c) for c in columns], F.col("_metadata.file_path").alias(_FILE),
                               F.col("_metadata.row_index").alias(_POS))
        numbered = _number_parquet(located)
    else:
        nulls = [v for v in source.null_values if v != ""]  # "" unquoted is already null
        values = [F.when(col(c).isin(nulls), F.lit(None)).otherwise(col(c)).alias(c) if nulls else col(c)
                  for c in columns]
        located = frame.select(*values, F.col("_metadata.file_path").alias(_FILE),
                               F.col("_metadata.file_block_start").alias(_BLOCK),
                               (F.monotonically_increasing_id() - F.spark_partition_id().cast("long") * (1 << 33))
                               .alias(_POS))
        numbered = _number_splits(located)
    return numbered.select(*[col(c) for c in columns], ROW)


def _number_parquet(located: DataFrame) -> DataFrame:
    """Row number = rows in the files before it (path order) + `_metadata.row_index` (its place in its file).

    The per-file counts are one small aggregate (parquet answers it from the footers' row counts and the row
    index; no data column is read); the offsets go back to the rows by a broadcast join.
    """
    counts = sorted((r[_FILE], r["n"]) for r in located.groupBy(_FILE).agg(F.count(F.lit(1)).alias("n")).collect())
    offsets, seen = [], 0
    for path, n in counts:
        offsets.append((path, seen))
        seen += n
    table = _small_table(located, offsets, f"{_FILE} string, __base long")
    return located.join(F.broadcast(table), _FILE).withColumn(ROW, F.col("__base") + F.col(_POS))


def _number_splits(located: DataFrame) -> DataFrame:
    """Row number for formats without a row index (CSV). A file may be cut into splits, each read in order
    by one task, so a row's position in its file is the rows of the file's earlier splits plus its position
    in its split (its position in the task minus the first position of the split there). One small
    aggregate per split gives those numbers."""
    splits = located.groupBy(_FILE, _BLOCK).agg(F.count(F.lit(1)).alias("n"), F.min(_POS).alias("first"))
    stats = sorted((r[_FILE], r[_BLOCK], r["n"], r["first"]) for r in splits.collect())
    bases, seen = [], 0
    for path, block, n, first in stats:  # path order, then split order inside a file
        bases.append((path, block, seen - first))
        seen += n
    table = _small_table(located, bases, f"{_FILE} string, {_BLOCK} long, __base long")
    return located.join(F.broadcast(table), [_FILE, _BLOCK]).withColumn(ROW, F.col("__base") + F.col(_POS))


def _small_table(frame: DataFrame, rows: list[tuple], ddl: str) -> DataFrame:
    """A driver-side list of a few rows (one per file or split) as a DataFrame."""
    return frame.sparkSession.createDataFrame(rows, ddl)
