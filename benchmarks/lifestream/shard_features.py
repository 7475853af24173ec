"""Sequence shards (docs/architecture.md section 3) -> flat per-event feature arrays for pytorch-lifestream.

This module runs inside the isolated ptls environment as well as in ours, so it imports only numpy and
pyarrow. Everything is vectorised over the flattened events of all entities: an entity is a slice
`offsets[e]:offsets[e + 1]` of every flat array, in its shard order (time-ordered by (event_time, event_id)).

ptls wants integer ids for categorical fields (0 = padding, like ours) and floats for numeric fields. The
encoding mirrors our tokenizer where it is cheap to: id 1 is null/out-of-vocabulary, vocabularies are
fitted on the training shards only, and the calendar/time-gap features our model gets (hour, day of week,
log1p of the gap to the previous event of the entity) are derived here too, so both models see the same
information.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PAD_ID = 0
OOV_ID = 1  # null or a value unseen (or too rare) in the training shards
FIRST_ID = 2
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
TIME_FEATURES = ("hour", "dow", "time_gap")  # derived; 1..24, 1..7 (0 = padding), log1p(seconds)
STRUCTURAL = ("entity_type", "entity_id", "length", "event_id", "event_time")


def shard_paths(seq_dir: str | os.PathLike, entity_type: str = "customer") -> list[str]:
    """Sorted `<seq_dir>/<entity_type>/part-*.parquet` files.

    Raises:
        FileNotFoundError: naming the pattern when there is no shard.
    """
    pattern = os.path.join(os.fspath(seq_dir), entity_type, "part-*.parquet")
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no sequence shards match {pattern} (docs/architecture.md section 3)")
    return paths


def infer_columns(schema: pa.Schema, labels: Sequence[str], exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Feature columns of a shard by their list type: list<string> -> categorical, list<float/double> -> numeric.

    Labels are list<double> exactly like numeric fields, so the caller must name them (an empty list is an
    explicit "there are none"); `exclude` drops e.g. text fields, which ptls cannot embed as categories.

    Returns:
        (categorical, numeric) column names in shard order.
    """
    skip = set(STRUCTURAL) | set(labels) | set(exclude)
    categorical, numeric = [], []
    for f in schema:
        if f.name in skip or not pa.types.is_list(f.type):
            continue
        value = f.type.value_type
        if pa.types.is_string(value) or pa.types.is_large_string(value):
            categorical.append(f.name)
        elif pa.types.is_floating(value) or pa.types.is_integer(value):
            numeric.append(f.name)
    return categorical, numeric


@dataclass
class FlatSequences:
    """All events of one entity type, flattened; entity e owns rows `offsets[e]:offsets[e + 1]`.

    Attributes:
        entity_type: e.g. "customer".
        entity_ids: (E,) object array of strings.
        offsets: (E + 1,) int64 row offsets into the flat arrays.
        event_ids: (N,) object array of strings.
        event_time_ms: (N,) int64 epoch milliseconds.
        columns: raw feature columns by name: categorical as a pyarrow string array (N,), numeric as
            float64 (N,) with NaN for null.
    """

    entity_type: str
    entity_ids: np.ndarray
    offsets: np.ndarray
    event_ids: np.ndarray
    event_time_ms: np.ndarray
    columns: dict[str, pa.Array | np.ndarray] = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        """(E,) int64 events per entity."""
        return np.diff(self.offsets)

    @property
    def num_events(self) -> int:
        return int(self.offsets[-1])

    @property
    def entity_of_row(self) -> np.ndarray:
        """(N,) int64 entity index of every flat row."""
        return np.repeat(np.arange(len(self.entity_ids), dtype=np.int64), self.lengths)

    @property
    def is_entity_start(self) -> np.ndarray:
        """(N,) bool, True on the first event of each entity (it has no history)."""
        starts = np.zeros(self.num_events, dtype=bool)
        starts[self.offsets[:-1][self.lengths > 0]] = True
        return starts


def _flat(column: pa.ChunkedArray, name: str) -> tuple[pa.Array, np.ndarray]:
    """(values, offsets) of a list column; the offsets are rebased to start at 0."""
    arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not pa.types.is_list(arr.type):
        raise TypeError(f"column {name!r}: expected a list column (architecture.md section 3), got {arr.type}")
    if arr.null_count:
        raise ValueError(f"column {name!r}: {arr.null_count} entities have a null list (expected an empty list)")
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
    return values, offsets - offsets[0]


def read_sequences(seq_dir: str | os.PathLike, categorical: Sequence[str], numeric: Sequence[str],
                   entity_type: str = "customer") -> FlatSequences:
    """Read the shards of one entity type into flat arrays.

    Args:
        seq_dir: sequence folder holding `<entity_type>/part-*.parquet`.
        categorical: list<string> feature columns.
        numeric: list<double> feature columns.
        entity_type: sub-folder to read.
    Returns:
        FlatSequences with the requested columns.
    Raises:
        KeyError / TypeError / ValueError: naming the column and the problem (missing column, wrong list
            type, list lengths that disagree with `event_time`, events out of time order).
    """
    paths = shard_paths(seq_dir, entity_type)
    available = pq.read_schema(paths[0])
    wanted = ["entity_id", "event_id", "event_time", *categorical, *numeric]
    missing = [c for c in wanted if c not in available.names]
    if missing:
        raise KeyError(f"{paths[0]}: columns {missing} are missing; the shard has {available.names}")
    table = pq.read_table(paths, columns=wanted)

    times, offsets = _flat(table["event_time"], "event_time")
    if not pa.types.is_timestamp(times.type):
        raise TypeError(f"column 'event_time': expected list<timestamp[ms]>, got list<{times.type}>")
    time_ms = times.cast(pa.timestamp("ms")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    if times.null_count:
        raise ValueError(f"column 'event_time': {times.null_count} null timestamps")
    event_ids, id_offsets = _flat(table["event_id"], "event_id")
    if not np.array_equal(id_offsets, offsets):
        raise ValueError("column 'event_id': list lengths differ from 'event_time'")

    starts = np.zeros(len(time_ms), dtype=bool)
    starts[offsets[:-1][np.diff(offsets) > 0]] = True
    backwards = np.flatnonzero((np.diff(time_ms, prepend=0) < 0) & ~starts)
    if len(backwards):
        raise ValueError(f"column 'event_time': {len(backwards)} events are earlier than the previous event of "
                         f"their entity (shards must be time-ordered); first at flat row {backwards[0]}")

    columns: dict[str, pa.Array | np.ndarray] = {}
    for name in [*categorical, *numeric]:
        values, col_offsets = _flat(table[name], name)
        if not np.array_equal(col_offsets, offsets):
            raise ValueError(f"column {name!r}: list lengths differ from 'event_time'")
        if name in categorical:
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                raise TypeError(f"column {name!r}: categorical fields must be list<string>, got list<{values.type}>")
            columns[name] = values
        else:
            if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
                raise TypeError(f"column {name!r}: numeric fields must be list<double>, got list<{values.type}>")
            columns[name] = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return FlatSequences(
        entity_type=entity_type,
        entity_ids=table["entity_id"].to_numpy().astype(object),
        offsets=offsets,
        event_ids=event_ids.to_numpy(zero_copy_only=False).astype(object),
        event_time_ms=time_ms,
        columns=columns,
    )


def time_features(seqs: FlatSequences) -> dict[str, np.ndarray]:
    """Calendar and gap features of every event; the gap only looks back within the entity.

    Returns:
        hour (N,) int64 1..24, dow (N,) int64 1..7 (Monday = 1), time_gap (N,) float32 log1p(seconds since
        the previous event of the entity), 0 on an entity's first event.
    """
    ms = seqs.event_time_ms
    hour = (ms // MS_PER_HOUR) % 24 + 1
    dow = (ms // MS_PER_DAY + 3) % 7 + 1  # 1970-01-01 was a Thursday (dow 4)
    gap_s = np.diff(ms, prepend=ms[:1]).astype(np.float64) / 1000.0
    gap_s[seqs.is_entity_start] = 0.0
    return {"hour": hour.astype(np.int64), "dow": dow.astype(np.int64),
            "time_gap": np.log1p(np.clip(gap_s, 0.0, None)).astype(np.float32)}


@dataclass
class FeatureEncoder:
    """Vocabularies fitted on the training shards; maps raw flat columns to ptls-ready arrays.

    Attributes:
        categorical: categorical field names.
        numeric: numeric field names.
        vocabs: field -> values in id order (id = FIRST_ID + position), most frequent first.
        use_time_features: derive hour, dow (categorical) and time_gap (numeric).
    """

    categorical: list[str]
    numeric: list[str]
    vocabs: dict[str, list[str]] = field(default_factory=dict)
    use_time_features: bool = True

    @classmethod
    def fit(cls, seqs: FlatSequences, categorical: Sequence[str], numeric: Sequence[str], min_count: int = 1,
            use_time_features: bool = True) -> FeatureEncoder:
        """Count each categorical value over all training events; keep those seen >= `min_count` times."""
        vocabs = {}
        for name in categorical:
            counts = pc.value_counts(seqs.columns[name]).flatten()
            values, n = counts[0], counts[1].to_numpy()
            keep = (n >= min_count) & values.is_valid().to_numpy(zero_copy_only=False)
            order = np.argsort(-n[keep], kind="stable")
            vocabs[name] = [str(v) for v in np.asarray(values.filter(pa.array(keep)).to_pylist(), dtype=object)[order]]
        return cls(list(categorical), list(numeric), vocabs, use_time_features)

    def cardinalities(self) -> dict[str, int]:
        """Embedding table sizes (padding and OOV included) of every categorical input, derived ones too."""
        sizes = {name: FIRST_ID + len(vocab) for name, vocab in self.vocabs.items()}
        if self.use_time_features:
            sizes.update(hour=25, dow=8)
        return sizes

    def numeric_inputs(self) -> list[str]:
        """Numeric inputs in model order, derived ones too."""
        return [*self.numeric, *(["time_gap"] if self.use_time_features else [])]

    def transform(self, seqs: FlatSequences) -> dict[str, np.ndarray]:
        """Flat ptls inputs: categorical ids (N,) int64 (OOV/null = 1), numerics (N,) float32 (null -> 0).

        The ptls TrxEncoder applies its own `log` scaler and batch norm to numeric fields, so raw values pass
        through; a null becomes 0 (ptls does the same to NaN), which its log scaler also maps to 0.
        """
        out: dict[str, np.ndarray] = {}
        for name in self.categorical:
            index = pc.index_in(seqs.columns[name], value_set=pa.array(self.vocabs[name], pa.string()))
            ids = index.to_numpy(zero_copy_only=False)
            out[name] = np.where(np.isnan(ids), OOV_ID - FIRST_ID, ids).astype(np.int64) + FIRST_ID
        for name in self.numeric:
            out[name] = np.nan_to_num(seqs.columns[name], nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        if self.use_time_features:
            out.update(time_features(seqs))
        return out

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"categorical": self.categorical, "numeric": self.numeric,
                                          "use_time_features": self.use_time_features,
                                          "vocabs": self.vocabs}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureEncoder:
        raw = json.loads(Path(path).read_text())
        return cls(raw["categorical"], raw["numeric"], raw["vocabs"], raw["use_time_features"])
