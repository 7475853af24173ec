"""Field encoders of the EventTokenizer: fitted state plus vectorised encoding of flat values.

Every encoder works on the *flat* values of one list column (all events of all rows of a table,
concatenated); the tokenizer flattens the list columns and rebuilds the lists with the same offsets.
Each encoder has a matching fitter that accumulates statistics over many tables in one pass and
``finish()``es into the encoder.

Id conventions of encoded sequences: 0 is always padding; 1 is OOV/null for categorical and
numeric fields and "no previous event" for the time gap; real values start at 2.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD_ID = 0
NULL_ID = 1
FIRST_ID = 2
FEW_VALUES = 64  # CategoricalEncoder.encode looks up at most this many values in a dict instead of pyarrow
MS_PER_SECOND = 1000.0


def as_string(values: pa.Array, name: str) -> pa.Array:
    """Cast a flat array to utf8 strings (categorical values may arrive as ints or dictionaries)."""
    if pa.types.is_string(values.type):
        return values
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"column {name!r}: cannot read values of type {values.type} as strings: {err}") from err


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|): compresses heavy-tailed amounts while keeping the sign of refunds/credits."""
    return np.sign(x) * np.log1p(np.abs(x))


def timestamp_ms(values: pa.Array, name: str) -> np.ndarray:
    """Flat timestamps (any unit, naive UTC) -> int64 epoch milliseconds; nulls are an error here."""
    if not pa.types.is_timestamp(values.type):
        raise ValueError(f"column {name!r}: expected timestamps, got {values.type}")
    if values.null_count:
        raise ValueError(f"column {name!r}: {values.null_count} null timestamps")
    # safe=False: sub-millisecond precision is dropped on purpose (the contract is milliseconds).
    ms = pc.cast(values, pa.timestamp("ms", tz=values.type.tz), safe=False)
    return ms.cast(pa.int64()).to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------- categorical


class ValueCounter:
    """Counts non-null string values across many arrays.

    Partial counts are merged with an arrow group-by whenever they grow past ``compact_every`` rows, so
    memory follows the number of distinct values, not the number of events.
    """

    def __init__(self, name: str, compact_every: int = 2_000_000) -> None:
        self.name = name
        self.compact_every = compact_every
        self._values: list[pa.Array] = []
        self._counts: list[pa.Array] = []
        self._pending = 0

    def update(self, values: pa.Array) -> None:
        counts = pc.value_counts(as_string(values, self.name))
        keep = pc.is_valid(counts.field("values"))
        self._values.append(pc.filter(counts.field("values"), keep))
        self._counts.append(pc.filter(counts.field("counts"), keep))
        self._pending += len(self._values[-1])
        if self._pending > self.compact_every:
            self._compact()

    def _compact(self) -> pa.Table:
        table = pa.table({
            "value": pa.concat_arrays(self._values) if self._values else pa.array([], pa.string()),
            "count": pa.concat_arrays(self._counts) if self._counts else pa.array([], pa.int64()),
        })
        grouped = table.group_by("value").aggregate([("count", "sum")])
        self._values = [grouped["value"].combine_chunks()]
        self._counts = [grouped["count_sum"].combine_chunks()]
        self._pending = len(grouped)
        return pa.table({"value": self._values[0], "count": self._counts[0]})

    def most_common(self, min_count: int = 1, limit: int | None = None) -> tuple[list[str], list[int]]:
        """Values with count >= min_count, by decreasing count then increasing value (deterministic)."""
        table = self._compact()
        table = table.filter(pc.greater_equal(table["count"], min_count))
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("value", "ascending")])
        table = table.take(order)
        if limit is not None:
            table = table.slice(0, limit)
        return table["value"].to_pylist(), table["count"].to_pylist()


@dataclass
class CategoricalEncoder:
    """Vocabulary lookup: ids 0 pad, 1 OOV/null, 2.. by decreasing training frequency."""

    name: str
    vocab: list[str]
    outcome: bool = False
    min_count: int = 1
    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        self._value_set = pa.array(self.vocab, pa.string())
        self._ids = {value: k + FIRST_ID for k, value in enumerate(self.vocab)}  # the few-values path of `encode`

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + FIRST_ID

    @property
    def output_columns(self) -> list[str]:
        return [self.name]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "vocab_size": self.vocab_size, "outcome": self.outcome}

    def encode(self, values: pa.Array, event_time_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Args: values (N,) flat values. Returns {name: (N,) int32 ids}; unseen values -> OOV id 1."""
        if len(values) <= FEW_VALUES and pa.types.is_string(values.type):  # the service's attempts: a dict
            # lookup per value beats three pyarrow kernel calls (same ids; tests/tokenization compare both paths)
            ids = [self._ids.get(value, NULL_ID) for value in values.to_pylist()]
            return {self.name: np.asarray(ids, dtype=np.int32)}
        index = pc.index_in(as_string(values, self.name), value_set=self._value_set)
        ids = pc.fill_null(pc.add(index, FIRST_ID), NULL_ID)
        return {self.name: ids.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source_type": "categorical", "outcome": self.outcome,
                "min_count": self.min_count, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CategoricalEncoder:
        return cls(state["name"], list(state["vocab"]), bool(state["outcome"]), int(state["min_count"]))


class CategoricalFitter:
    """Accumulates value counts of one categorical field; ``finish`` keeps values seen >= min_count."""

    def __init__(self, name: str, min_count: int = 5, max_vocab: int | None = None, outcome: bool = False):
        if min_count < 1:
            raise ValueError(f"field {name!r}: min_count must be >= 1, got {min_count}")
        self.name, self.min_count, self.max_vocab, self.outcome = name, min_count, max_vocab, outcome
        self.counter = ValueCounter(name)

    def update(self, values: pa.Array, event_time_ms: np.ndarray) -> None:
        self.counter.update(values)

    def finish(self) -> CategoricalEncoder:
        vocab, _ = self.counter.most_common(self.min_count, self.max_vocab)
        return CategoricalEncoder(self.name, vocab, self.outcome, self.min_count)


# ---------------------------------------------------------------- numeric


def numeric_values(values: pa.Array, event_time_ms: np.ndarray, source_type: str, name: str) -> np.ndarray:
    """Flat values -> float64 with NaN for null. A timestamp field becomes its age in seconds at the event
    (event_time - value), which uses nothing later than the event itself."""
    if source_type == "timestamp":
        if not pa.types.is_timestamp(values.type):
            raise ValueError(f"column {name!r}: declared timestamp, got {values.type}")
        ms = pc.cast(values, pa.timestamp("ms", tz=values.type.tz), safe=False).cast(pa.int64())
        value_ms = ms.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
        return (event_time_ms - value_ms) / MS_PER_SECOND
    try:
        floats = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"column {name!r}: declared numeric, cannot read {values.type} as numbers: {err}") from err
    return floats.to_numpy(zero_copy_only=False)


class NumericSketch:
    """Exact mean/std (Chan's parallel update) plus a uniform sample of bounded size for quantiles.

    The sample keeps the ``sample_size`` values with the smallest random keys ("bottom-k"), which is a
    uniform sample of everything seen without knowing the total in advance; seeded, so deterministic.
    """

    def __init__(self, sample_size: int = 1_000_000, seed: int = 0) -> None:
        self.sample_size = sample_size
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self._keys = np.empty(0)
        self.sample = np.empty(0)
        self._rng = np.random.default_rng(seed)

    def update(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n
        keys = np.concatenate([self._keys, self._rng.random(n_b)])
        sample = np.concatenate([self.sample, x])
        if keys.size > self.sample_size:
            keep = np.argpartition(keys, self.sample_size)[: self.sample_size]
            keys, sample = keys[keep], sample[keep]
        self._keys, self.sample = keys, sample

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count > 1 else 0.0


@dataclass
class NumericEncoder:
    """Quantile bins of the (log-scaled) value plus the standardised value.

    ``<name>_bin``: 0 pad, 1 null/NaN/inf, 2.. bins (``edges`` are the inner bin edges, increasing);
    ``<name>_value``: (log value - mean) / std, 0.0 where null.
    """

    name: str
    edges: np.ndarray
    mean: float
    std: float
    source_type: str = "numeric"  # numeric | timestamp (age of the timestamp at the event, in seconds)
    log: bool = True
    outcome: bool = False
    kind: ClassVar[str] = "numeric"

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if np.any(np.diff(self.edges) <= 0):
            raise ValueError(f"field {self.name!r}: bin edges must be strictly increasing")

    @property
    def num_bins(self) -> int:
        return len(self.edges) + 1 + FIRST_ID

    @property
    def output_columns(self) -> list[str]:
        return [f"{self.name}_bin", f"{self.name}_value"]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "num_bins": self.num_bins, "outcome": self.outcome}

    def transform(self, values: pa.Array, event_time_ms: np.ndarray) -> np.ndarray:
        """Flat values -> float64 on the scale the bins are defined on (NaN/inf where unusable)."""
        x = numeric_values(values, event_time_ms, self.source_type, self.name)
        return signed_log1p(x) if self.log else x

    def encode(self, values: pa.Array, event_time_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Args: values (N,), event_time_ms (N,). Returns {<name>_bin: (N,) int32, <name>_value: (N,) float32}."""
        x = self.transform(values, event_time_ms)
        finite = np.isfinite(x)
        bins = np.searchsorted(self.edges, x, side="right").astype(np.int32) + FIRST_ID
        bins[~finite] = NULL_ID
        scaled = (x - self.mean) / (self.std if self.std > 0 else 1.0)
        scaled[~finite] = 0.0
        return {f"{self.name}_bin": bins, f"{self.name}_value": scaled.astype(np.float32)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source_type": self.source_type, "outcome": self.outcome,
                "log": self.log, "edges": self.edges.tolist(), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> NumericEncoder:
        return cls(state["name"], np.asarray(state["edges"], dtype=np.float64), float(state["mean"]),
                   float(state["std"]), state["source_type"], bool(state["log"]), bool(state["outcome"]))


class NumericFitter:
    """Accumulates the distribution of one numeric (or timestamp-age) field; ``finish`` sets quantile bins."""

    def __init__(self, name: str, source_type: str = "numeric", num_bins: int = 32, log: bool = True,
                 outcome: bool = False, sample_size: int = 1_000_000, seed: int = 0) -> None:
        if num_bins < 1:
            raise ValueError(f"field {name!r}: num_bins must be >= 1, got {num_bins}")
        self.num_bins = num_bins
        # An encoder with no edges only transforms values; fitting then fills in the statistics.
        self._transform = NumericEncoder(name, np.empty(0), 0.0, 1.0, source_type, log, outcome)
        # Per-field seed derived from the name, so adding a field does not change other fields' bins.
        self.sketch = NumericSketch(sample_size, seed + zlib.crc32(name.encode()))

    def update(self, values: pa.Array, event_time_ms: np.ndarray) -> None:
        self.sketch.update(self._transform.transform(values, event_time_ms))

    def finish(self) -> NumericEncoder:
        t, sample = self._transform, self.sketch.sample
        if sample.size:
            qs = np.quantile(sample, np.linspace(0.0, 1.0, self.num_bins + 1)[1:-1])
            edges = np.unique(qs)  # heavy ties (round amounts) merge bins rather than leave empty ones
        else:
            edges = np.empty(0)
        return NumericEncoder(t.name, edges, self.sketch.mean, self.sketch.std, t.source_type, t.log, t.outcome)


# ---------------------------------------------------------------- time


@dataclass
class TimeEncoder:
    """Calendar and gap features of the event time (UTC).

    ``time_gap_bin``: 0 pad, 1 first event of the entity (no previous event), 2.. log-spaced gap bins
    (``edges_s`` in seconds: gaps under edges_s[0] share bin 2); ``time_gap``: log1p(gap seconds), 0.0 on
    the first event; ``hour`` 1..24 and ``dow`` 1..7 (Monday = 1). The gap looks only at the previous
    event, so nothing encoded for an event depends on later events.
    """

    edges_s: np.ndarray = field(default_factory=lambda: TimeEncoder.log_edges())
    kind: ClassVar[str] = "time"
    output_columns: ClassVar[list[str]] = ["time_gap_bin", "time_gap", "hour", "dow"]

    def __post_init__(self) -> None:
        self.edges_s = np.asarray(self.edges_s, dtype=np.float64)

    @staticmethod
    def log_edges(num_bins: int = 32, min_gap_s: float = 1.0, max_gap_days: float = 90.0) -> np.ndarray:
        """``num_bins - 1`` log-spaced edges from min_gap_s to max_gap_days, giving ``num_bins`` gap bins."""
        if num_bins < 2:
            raise ValueError(f"num_time_bins must be >= 2, got {num_bins}")
        return np.geomspace(min_gap_s, max_gap_days * 86_400.0, num_bins - 1)

    @property
    def num_bins(self) -> int:
        return len(self.edges_s) + 1 + FIRST_ID

    def spec(self) -> dict[str, Any]:
        return {"name": "time", "kind": self.kind, "num_bins": self.num_bins}

    def encode(self, event_time_ms: np.ndarray, offsets: np.ndarray,
               entity_ids: pa.Array | None = None) -> dict[str, np.ndarray]:
        """Args: event_time_ms (N,) int64 flat times; offsets (B+1,) row boundaries (rows time-ordered).

        Returns {time_gap_bin (N,) int32, time_gap (N,) float32, hour (N,) int32, dow (N,) int32}.
        """
        t = np.asarray(event_time_ms, dtype=np.int64)
        gap_ms = np.diff(t, prepend=t[:1])
        starts = offsets[:-1][offsets[:-1] < offsets[1:]]  # first event of each non-empty row
        gap_ms[starts] = 0
        if np.any(gap_ms < 0):
            pos = int(np.flatnonzero(gap_ms < 0)[0])
            row = int(np.searchsorted(offsets, pos, side="right") - 1)
            who = entity_ids[row].as_py() if entity_ids is not None else f"row {row}"
            raise ValueError(f"column 'event_time': events of entity {who!r} are not time-ordered "
                             f"(event {pos - int(offsets[row])} is earlier than the one before it)")
        gap_s = gap_ms / MS_PER_SECOND
        bins = np.searchsorted(self.edges_s, gap_s, side="right").astype(np.int32) + FIRST_ID
        bins[starts] = NULL_ID
        hours = np.floor_divide(t, 3_600_000)
        days = np.floor_divide(hours, 24)
        return {
            "time_gap_bin": bins,
            "time_gap": np.log1p(gap_s).astype(np.float32),
            "hour": (hours % 24 + 1).astype(np.int32),
            "dow": ((days + 3) % 7 + 1).astype(np.int32),  # 1970-01-01 was a Thursday (ISO 4)
        }

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges_s": self.edges_s.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TimeEncoder:
        return cls(np.asarray(state["edges_s"], dtype=np.float64))
