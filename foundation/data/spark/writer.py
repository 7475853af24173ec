"""One parquet file per key, written by the Spark executors with pyarrow (`DataFrame.mapInArrow`).

Spark's own parquet writer cannot produce the files the pipeline reads: it writes timestamps as UTC-adjusted
(or microsecond) values where the contract is naive `timestamp[ms]` (also inside lists), and it names and
splits files its own way. So the heavy work stays in Spark and only the last step, turning each sorted
partition's Arrow batches into files, runs in the Python workers: rows are repartitioned so that each key
(a shard number, a quarantine reason) lives in exactly one task, sorted, and streamed into a
`pyarrow.parquet.ParquetWriter` in row groups of a fixed size, with the exact Arrow schema and write options of
the pyarrow backend. No row reaches the driver; it gets back one small record per file.

Files are written to a hidden staging folder (each through a temporary name, so a retried or speculative task
never leaves half a file) and moved into place by the driver once the whole job has succeeded.

This module is shipped to the executors by value (cloudpickle), so they need pyarrow and numpy but not this
package.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
from pyspark import cloudpickle
from pyspark.sql import DataFrame

_RESULT_SCHEMA = "key string, file string, rows long, total long"
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class WrittenFile:
    """One file a task wrote: its key, its name (relative to the target folder), rows and the sum of the
    `sum_column` (e.g. list elements) over its rows."""

    key: str
    file: str
    rows: int
    total: int


def write_keyed_files(frame: DataFrame, key: str, n_keys: int, order: list[str], staging: Path, name_format: str,
                      schema: pa.Schema, *, row_group_size: int, compression: str = "zstd",
                      use_dictionary: list[str] | bool = True, sum_column: str | None = None,
                      partitions: int | None = None, prepartitioned: bool = False) -> list[WrittenFile]:
    """Write the rows of each key of `frame` into their own parquet file under `staging`.

    Args:
        frame: rows to write: the `key` column plus the columns of `schema` (Spark types that Arrow casts to
            those of `schema`, e.g. list<long> -> list<timestamp[ms]>).
        key: the column naming the file of each row (int shard number or string).
        n_keys: number of distinct keys (the partitions of the write).
        order: columns that order the rows within a file.
        staging: a folder on a file system the executors share with the driver; created here.
        name_format: file name of a key, e.g. "part-{key:05d}.parquet" or "{key}.parquet".
        schema: the exact Arrow schema of the files (the key column is not written).
        row_group_size: rows per parquet row group (the last one of a file may be shorter).
        compression, use_dictionary: passed to `pyarrow.parquet.ParquetWriter`.
        sum_column: an integer column of `schema` to sum per file (reported as `total`).
        partitions: write tasks (default `n_keys`: one file per task); fewer when files are small, since
            a task writes every key that hashes to it, one file each.
        prepartitioned: `frame` already holds each key in a single partition (e.g. it was grouped after a
            `repartition(n, key)`), so it is only sorted, not shuffled again.
    Returns:
        the files written, sorted by name.
    """
    staging.mkdir(parents=True, exist_ok=True)
    columns = [key] + list(schema.names)
    parts = frame.select(*columns)
    if not prepartitioned:
        parts = parts.repartition(max(1, partitions or n_keys), key)
    parts = parts.sortWithinPartitions(key, *order)
    task = partial(_write_partition, staging=str(staging), key=key, name_format=name_format,
                   schema_ipc=schema.serialize().to_pybytes(), row_group_size=row_group_size,
                   compression=compression, use_dictionary=use_dictionary, sum_column=sum_column)
    rows = parts.mapInArrow(task, _RESULT_SCHEMA).collect()
    return sorted((WrittenFile(r["key"], r["file"], r["rows"], r["total"]) for r in rows), key=lambda w: w.file)


def publish(staging: Path, target: Path, files: list[str]) -> None:
    """Move finished files from `staging` into `target` (renames only) and drop the staging folder."""
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        os.replace(staging / name, target / name)
    shutil.rmtree(staging, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh hidden staging folder inside `target` (same file system, so publishing is a rename)."""
    return target / f".staging-{uuid.uuid4().hex[:12]}"


def _write_partition(batches, *, staging: str, key: str, name_format: str, schema_ipc: bytes,
                     row_group_size: int, compression: str, use_dictionary, sum_column: str | None):
    """mapInArrow body: the sorted batches of one partition -> one parquet file per key run."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pa.ipc.read_schema(pa.py_buffer(schema_ipc))
    results: list[tuple[str, str, int, int]] = []
    state = {"key": None, "writer": None, "tmp": None, "name": None, "buffer": [], "buffered": 0,
             "rows": 0, "total": 0}

    def write_groups(final: bool) -> None:
        if not state["buffer"]:
            return
        table = pa.concat_tables(state["buffer"])
        start = 0
        while table.num_rows - start >= row_group_size or (final and start < table.num_rows):
            group = table.slice(start, min(row_group_size, table.num_rows - start)).combine_chunks()
            state["writer"].write_table(group, row_group_size=row_group_size)
            start += group.num_rows
        rest = table.slice(start)
        state["buffer"] = [rest] if rest.num_rows else []
        state["buffered"] = rest.num_rows

    def close() -> None:
        if state["writer"] is None:
            return
        write_groups(final=True)
        state["writer"].close()
        os.replace(state["tmp"], os.path.join(staging, state["name"]))
        results.append((str(state["key"]), state["name"], state["rows"], state["total"]))
        state["writer"] = None

    def open_file(value) -> None:
        name = name_format.format(key=value)
        tmp = os.path.join(staging, f".{name}.{uuid.uuid4().hex}.tmp")
        state.update(key=value, name=name, tmp=tmp, buffer=[], buffered=0, rows=0, total=0,
                     writer=pq.ParquetWriter(tmp, schema, compression=compression, use_dictionary=use_dictionary))

    for batch in batches:
        if batch.num_rows == 0:
            continue
        keys = batch.column(key)
        changes = np.flatnonzero(pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
                                 .to_numpy(zero_copy_only=False)) + 1
        bounds = [0, *changes.tolist(), batch.num_rows]
        values = pa.Table.from_batches([batch]).select(list(schema.names))
        for start, end in zip(bounds[:-1], bounds[1:]):
            value = keys[start].as_py()
            if state["writer"] is None or value != state["key"]:
                close()
                open_file(value)
            piece = values.slice(start, end - start).cast(schema, safe=False)
            state["buffer"].append(piece)
            state["buffered"] += piece.num_rows
            state["rows"] += piece.num_rows
            if sum_column is not None:
                state["total"] += int(pc.sum(piece.column(sum_column)).as_py() or 0)
            if state["buffered"] >= row_group_size:
                write_groups(final=False)
    close()
    if results:
        k, f, r, t = zip(*results)
        yield pa.RecordBatch.from_pydict({"key": list(k), "file": list(f), "rows": list(r), "total": list(t)},
                                         schema=pa.schema([("key", pa.string()), ("file", pa.string()),
                                                           ("rows", pa.int64()), ("total", pa.int64())]))
