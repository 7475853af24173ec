"""Per-example test scores of every model, as one parquet file a user can slice with pandas or DuckDB.

`scores.parquet` holds one row per test example of one task, in the order of the keys it was built from:

| column | type | meaning |
|---|---|---|
| `event_id` | int64 or string (as in the event table) | the scored event |
| `<entity>_id` | int64 or string, nullable | one per task entity (`customer_id`, `merchant_id`, ...) |
| `event_time` | timestamp[ms] | when the event happened |
| `label` | int8 | 1 = positive class |
| `score_<model>` | float64 | one per model, higher = more likely positive (`score_mlp`, `score_velocity_gbdt@10%`) |
| any other name | as given | optional slice columns (`fraud_pattern`, `history_length`, ...) |

Key columns come first, then `label`, then the score columns in the order the models were given, then the
extra columns. The file's schema metadata lists the models and the extra columns (`read_scores` returns
both), so a reader never has to guess which columns hold scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:  # report.py will write scores files: no import cycle at run time
    from foundation.evaluation.report import ModelResult

SCORE_PREFIX = "score_"
METADATA_KEY = b"foundation.scores"
KEY_COLUMNS = ("event_id", "event_time")
_RESERVED = ("event_id", "event_time", "label")


def score_column(model: str) -> str:
    """The column holding `model`'s scores (`score_mlp`)."""
    return f"{SCORE_PREFIX}{model}"


def _key_columns(keys: pa.Table) -> list[str]:
    """event_id, the `<entity>_id` columns in the keys' order, event_time."""
    absent = [c for c in KEY_COLUMNS if c not in keys.column_names]
    if absent:
        raise ValueError(f"scores: keys lack columns {absent} (have {keys.column_names})")
    entities = [c for c in keys.column_names if c.endswith("_id") and c != "event_id"]
    return ["event_id", *entities, "event_time"]


def _check_ids(ids: pa.ChunkedArray | pa.Array) -> None:
    if ids.null_count:
        raise ValueError(f"scores: event_id holds {ids.null_count} nulls")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise ValueError(f"scores: event_id holds {len(ids) - pc.count_distinct(ids).as_py()} duplicates")


def write_scores(
    path: str | Path,
    keys: pa.Table,
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `scores.parquet` (schema in the module docstring).

    Args:
        path: the file to write (parent folders are created).
        keys: (N rows) `event_id`, `event_time` and any `<entity>_id` columns (other columns are ignored),
            e.g. the test examples of `select_examples`.
        labels: (N,) 0/1.
        scores: model name -> (N,) float scores, in the keys' row order.
        extra: optional slice columns, name -> (N,) array-like.

    Returns:
        The path written.
    """
    table = build_scores_table(keys, labels, scores, extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def build_scores_table(
    keys: pa.Table,
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    extra: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The table `write_scores` writes (same arguments, no file)."""
    names = _key_columns(keys)
    n = keys.num_rows
    _check_ids(keys.column("event_id"))
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"scores: labels have shape {y.shape}, keys have {n} rows")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError(f"scores: labels must be 0/1, got values {np.unique(y)[:5]}")
    if not scores:
        raise ValueError("scores: no model scores given")
    columns: dict[str, pa.Array | pa.ChunkedArray] = {c: keys.column(c) for c in names}
    if not pa.types.is_timestamp(columns["event_time"].type):
        raise ValueError(f"scores: event_time must be a timestamp, got {columns['event_time'].type}")
    columns["event_time"] = pc.cast(columns["event_time"], pa.timestamp("ms"))
    columns["label"] = pa.array(y.astype(np.int8), pa.int8())
    for model, values in scores.items():
        s = np.asarray(values, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"scores: model {model!r} has {s.shape} scores for {n} examples")
        columns[score_column(model)] = pa.array(s, pa.float64())
    extra = dict(extra or {})
    for name, values in extra.items():
        if name in columns or name in _RESERVED or name.startswith(SCORE_PREFIX):
            raise ValueError(f"scores: extra column {name!r} clashes with a key, label or score column")
        array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values))
        if len(array) != n:
            raise ValueError(f"scores: extra column {name!r} has {len(array)} values for {n} examples")
        columns[name] = array
    meta = {"models": list(scores), "extra": list(extra)}
    table = pa.table(columns)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def read_scores(path: str | Path) -> tuple[pa.Table, list[str], list[str]]:
    """Read a scores file and check its contract.

    Args:
        path: a file written by `write_scores`.

    Returns:
        (table, model names, extra column names); the score of model m is `table[score_column(m)]`.
    """
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a scores file (no {METADATA_KEY.decode()} metadata)")
    meta = json.loads(raw)
    expected = {"event_id": None, "event_time": pa.timestamp("ms"), "label": pa.int8(),
                **{score_column(m): pa.float64() for m in meta["models"]}}
    for name, dtype in expected.items():
        if name not in table.column_names:
            raise ValueError(f"{path}: column {name!r} is missing")
        if dtype is not None and table.schema.field(name).type != dtype:
            raise ValueError(f"{path}: column {name!r} is {table.schema.field(name).type}, expected {dtype}")
    return table, list(meta["models"]), list(meta["extra"])


def scores_table(results: Sequence[ModelResult], keys: pa.Table,
                 extra: Mapping[str, Any] | None = None) -> pa.Table:
    """Align several models' test results of one task on the keys' event ids.

    Args:
        results: one ModelResult per model (each with `event_ids`), all of the same task; each must score
            exactly the keys' event ids (any order). Column names are `score_<result.label>`.
        keys: as for `write_scores`; the rows keep the keys' order. A `label` column, when present, must
            agree with the results' labels.
        extra: optional slice columns in the keys' row order.

    Returns:
        The scores table (write it with `pq.write_table`, or use `write_scores_table`).
    """
    if not results:
        raise ValueError("scores: no model results given")
    tasks = sorted({r.task for r in results})
    if len(tasks) > 1:
        raise ValueError(f"scores: one scores table per task, got results of {tasks}")
    _key_columns(keys)
    _check_ids(keys.column("event_id"))
    key_ids = keys.column("event_id").to_numpy(zero_copy_only=False)
    labels: np.ndarray | None = None
    scores: dict[str, np.ndarray] = {}
    for result in results:
        where = f"scores: {result.task}/{result.label}"
        if result.label in scores:
            raise ValueError(f"{where}: two results share this model name")
        position = _positions(result, key_ids, where)
        y = np.asarray(result.labels)[position]
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(f"{where}: labels differ from {results[0].label}'s on the same event ids")
        scores[result.label] = np.asarray(result.scores, dtype=np.float64)[position]
    if "label" in keys.column_names and not np.array_equal(keys.column("label").to_numpy(), labels):
        raise ValueError(f"scores: the keys' label column disagrees with {results[0].label}'s labels")
    return build_scores_table(keys, labels, scores, extra)


def _positions(result: ModelResult, key_ids: np.ndarray, where: str) -> np.ndarray:
    """(N,) index into the result's arrays of each key event id, or a ValueError naming the model."""
    if result.event_ids is None:
        raise ValueError(f"{where}: the result has no event_ids to align on")
    ids = np.asarray(result.event_ids)
    if len(ids) != len(np.asarray(result.scores)) or len(ids) != len(np.asarray(result.labels)):
        raise ValueError(f"{where}: {len(ids)} event ids for {len(np.asarray(result.scores))} scores")
    order = np.argsort(ids, kind="stable")
    found = np.searchsorted(ids[order], key_ids).clip(0, max(len(ids) - 1, 0))
    hit = (ids[order][found] == key_ids) if len(ids) else np.zeros(len(key_ids), bool)
    missing = int((~hit).sum())
    extra = len(ids) - int(hit.sum())
    if missing or extra or len(np.unique(ids)) != len(ids):
        raise ValueError(f"{where}: event ids differ from the test keys ({missing} keys not scored, "
                         f"{extra} scored ids not in the keys or duplicated)")
    return order[found]


def join_by_event_id(table: pa.Table, other: pa.Table, columns: Sequence[str],
                     event_id: str = "event_id") -> pa.Table:
    """Append `columns` of `other` to a scores table, matched by event id (null where `other` lacks the id).

    E.g. the synthetic world's `fraud_pattern` label, read from the raw files:
    `join_by_event_id(scores, pq.read_table(events_dir, columns=["event_id", "fraud_pattern"]), ["fraud_pattern"])`.

    Args:
        table: a scores table (its `event_id` keeps its type and the rows their order).
        other: any table with an id column `event_id` (cast to the scores' id type) and `columns`.
        columns: columns to bring over (names must be new to `table`).

    Returns:
        `table` with the columns appended (the metadata lists them as extra columns).
    """
    absent = [c for c in (event_id, *columns) if c not in other.column_names]
    if absent:
        raise ValueError(f"scores: the joined table lacks columns {absent} (has {other.column_names})")
    clash = [c for c in columns if c in table.column_names]
    if clash:
        raise ValueError(f"scores: columns {clash} are already in the scores table")
    ids = pc.cast(other.column(event_id), table.schema.field("event_id").type)
    found = pc.index_in(table.column("event_id"), value_set=ids)
    for name in columns:
        table = table.append_column(name, pc.take(other.column(name), found))
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b'{"models": [], "extra": []}'))
    meta["extra"] = [*meta.get("extra", []), *columns]
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta).encode()})


def stack_scores_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Several scores tables (one per task, each with a `task` extra column) as one: columns a table lacks are
    null, and the metadata lists every model and extra column of all of them."""
    metas = [json.loads(t.schema.metadata[METADATA_KEY]) for t in tables]
    meta = {key: list(dict.fromkeys(name for m in metas for name in m[key])) for key in ("models", "extra")}
    stacked = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="default")
    return stacked.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def write_scores_table(path: str | Path, table: pa.Table) -> Path:
    """Write a table from `scores_table` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
