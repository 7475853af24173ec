"""Entity states "as of" any (entity, time, event) query over a whole sequence store, shard by shard.

- `as_of_index`: for queries (entity, time[, event id]), the index of the entity's last event strictly before
  them in (event_time, event_id) order, or for an aggregate entity its last bucket whose end <= time; one
  lexicographic sort of events and queries together, no per-row loop.
- `SequenceStore`: the sequence shards of a folder (the per-entity sequence layout of
  `foundation.data.sequences`) with their encodings, read one shard at a time, so memory holds one shard.
- `PointInTimeStates`: entity states as of arbitrary queries over a store; what the task features
  (`foundation.pointintime.features`) and the embedding export are built from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foundation.data.collate import ArrowRows
from foundation.data.sequences import SequenceManifest
from foundation.pointintime.encoder import PointInTimeEncoder, gather_windows

# ---------------------------------------------------------------- as-of lookups


def _id_ranks(*arrays: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """Dense ranks of strings in UTF-8 byte order across several arrays (the sequences' event_id order)."""
    chunks = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    chunks = [pc.cast(c, pa.string()) for c in chunks]
    if any(c.null_count for c in chunks):
        raise ValueError("event ids must not be null in an as-of lookup")
    ranks = pc.rank(pa.concat_arrays(chunks), sort_keys="ascending", tiebreaker="dense").to_numpy()
    out, a = [], 0
    for chunk in chunks:
        out.append(ranks[a:a + len(chunk)].astype(np.int64))
        a += len(chunk)
    return out


def as_of_index(offsets: np.ndarray, times: np.ndarray, query_rows: np.ndarray, query_times: np.ndarray,
                event_ids: pa.Array | None = None, query_event_ids: pa.Array | None = None,
                inclusive: bool = False) -> np.ndarray:
    """Index (inside its row) of each query's last event before it; -1 when there is none.

    "Before" is strictly before in (event_time, event_id) order for raw-event entities (pass both id
    arrays; without ids, strictly before in time), or `event_time <= query time` with `inclusive=True`
    for aggregate entities, whose events are buckets stamped with their end (known from then on).

    Args:
        offsets: (R + 1,) list offsets of the rows (row r holds events offsets[r]:offsets[r + 1]).
        times: (E,) int64 epoch ms of the events, sorted within each row.
        query_rows: (Q,) row of each query, -1 for an entity that has no row (no history).
        query_times: (Q,) int64 epoch ms.
        event_ids: (E,) event ids (strings), in the rows' order.
        query_event_ids: (Q,) the queries' own event ids.
        inclusive: count events at exactly the query time (aggregate buckets).
    Returns:
        (Q,) int64.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    query_times = np.asarray(query_times, dtype=np.int64)
    n_events, out = len(times), np.full(len(query_rows), -1, dtype=np.int64)
    known = np.flatnonzero(query_rows >= 0)
    if not len(known) or not n_events:
        return out
    event_rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    if not inclusive and event_ids is not None and query_event_ids is not None:
        q_ids = query_event_ids.take(pa.array(known)) if len(known) < len(query_rows) else query_event_ids
        event_rank, query_rank = _id_ranks(event_ids, q_ids)
    else:
        event_rank, query_rank = np.zeros(n_events, np.int64), np.zeros(len(known), np.int64)
    # Ties on (row, time, id): a query sorts before an equal event (strict) or after it (inclusive).
    flag = np.r_[np.full(n_events, 0 if inclusive else 1), np.full(len(known), 1 if inclusive else 0)]
    order = np.lexsort((flag, np.r_[event_rank, query_rank], np.r_[times, query_times[known]],
                        np.r_[event_rows, query_rows[known]]))
    before = np.cumsum(order < n_events)  # events up to and including each sorted position
    positions = np.empty(len(order), dtype=np.int64)
    positions[order] = np.arange(len(order))
    counted = before[positions[n_events:]]  # events sorted before each query (a query is not an event)
    out[known] = counted - offsets[query_rows[known]] - 1
    return out


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class Shard:
    """One sequence shard of an entity type and (when cached) its encoding."""

    entity_type: str
    sequences: Path
    encoded: Path | None = None


class SequenceStore:
    """The sequence shards of a folder (the `foundation.data.sequences` layout), read one shard at a time.

    Args:
        seq_dir: a sequence folder with manifest.json (e.g. <prepared>/sequences/all).
        tokenizer: the EventTokenizer saved with the model; encodes shards that have no cached encoding.
        encoded_dir: optional folder of the same shards already encoded by this tokenizer
            (<prepared>/encoded/all); used when present, skipping the encoding.
    """

    def __init__(self, seq_dir: str | Path, tokenizer: Any, encoded_dir: str | Path | None = None):
        self.seq_dir = Path(seq_dir)
        self.manifest = SequenceManifest.read(self.seq_dir)
        self.tokenizer = tokenizer
        self.encoded_dir = Path(encoded_dir) if encoded_dir is not None else None
        unknown = [t for t in self.manifest.entity_types if t not in tokenizer.entity_types]
        if unknown:
            raise ValueError(f"{self.seq_dir}: entity types {unknown} are unknown to the tokenizer "
                             f"({tokenizer.entity_types})")

    @property
    def entity_types(self) -> list[str]:
        return list(self.manifest.entity_types)

    def is_aggregate(self, entity_type: str) -> bool:
        return self._stats(entity_type).representation == "aggregate"

    def _stats(self, entity_type: str) -> Any:
        if entity_type not in self.manifest.entity_types:
            raise KeyError(f"entity type {entity_type!r} has no sequences in {self.seq_dir} "
                           f"(has {self.entity_types})")
        return self.manifest.entity_types[entity_type]

    def shards(self, entity_type: str) -> list[Shard]:
        out = []
        for name in self._stats(entity_type).shards:
            cached = self.encoded_dir / name if self.encoded_dir is not None else None
            out.append(Shard(entity_type, self.seq_dir / name, cached if cached and cached.exists() else None))
        return out

    def keys(self, shard: Shard) -> pa.Table:
        """entity_id, length, event_time, event_id of a shard (no field values)."""
        return pq.read_table(shard.sequences, columns=["entity_id", "length", "event_time", "event_id"])

    def encoded(self, shard: Shard) -> pa.Table:
        """The shard encoded by the tokenizer (cached file when there is one)."""
        if shard.encoded is not None:
            return pq.read_table(shard.encoded)
        table = pq.read_table(shard.sequences)
        labels = [c for c in table.column_names if c in self.tokenizer.label_names]
        return self.tokenizer.encode(table.drop_columns(labels))


@dataclass
class AsOfStates:
    """Entity states for a set of queries.

    Attributes:
        hidden: (Q, H) float32, zeros without history.
        has_history: (Q,) bool.
        index: (Q,) index of the last included event in the entity's sequence, -1 without history.
        event_vectors: (Q, H) float32 outcome-free vectors of the queried events themselves (when asked).
        event_surprise: (Q, F) float32 surprise of the queried events (with the event vectors, when the encoder
            has next-event heads).
    """

    hidden: np.ndarray
    has_history: np.ndarray
    index: np.ndarray
    event_vectors: np.ndarray | None = None
    event_surprise: np.ndarray | None = None


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    array = column.combine_chunks()
    return array.offsets.to_numpy().astype(np.int64), array.values


def _chunks(lengths: np.ndarray, max_entities: int, max_events: int) -> list[tuple[int, int]]:
    """[a, b) row ranges of at most max_entities rows and about max_events events (>= 1 row each)."""
    ends = np.cumsum(lengths)
    bounds, a = [], 0
    while a < len(lengths):
        base = ends[a - 1] if a else 0
        b = max(int(np.searchsorted(ends, base + max_events, side="right")), a + 1)
        b = min(b, a + max(int(max_entities), 1))
        bounds.append((a, b))
        a = b
    return bounds


class PointInTimeStates:
    """Entity states as of arbitrary (entity, time, event) queries over a SequenceStore, shard by shard.

    Args:
        store: the sequences (and encodings) to read.
        encoder: the PointInTimeEncoder of the model whose states are wanted.
    """

    def __init__(self, store: SequenceStore, encoder: PointInTimeEncoder):
        self.store = store
        self.encoder = encoder

    def as_of(self, entity_type: str, entity_ids: pa.Array | Sequence[str | None], times_ms: np.ndarray,
              event_ids: pa.Array | Sequence[str] | None = None, with_event_vectors: bool = False) -> AsOfStates:
        """States of entities just before each query (the state strictly before the query).

        Args:
            entity_type: whose states.
            entity_ids: (Q,) entity ids; null = the event has no such entity (zeros, no history).
            times_ms: (Q,) query times, epoch ms.
            event_ids: (Q,) the queried events' ids: ties at the same ms are broken by id, as the sequences
                order them (raw-event entities). Ignored for aggregate entities (buckets closed at or
                before the time count).
            with_event_vectors: also return the outcome-free event vector of each queried event, which must
                then be in the entity's sequence right after its state (the attempt in its own customer
                sequence); a mismatch is an error.
        Returns:
            AsOfStates in query order.
        """
        ids = pc.cast(pa.array(entity_ids) if not isinstance(entity_ids, (pa.Array, pa.ChunkedArray))
                      else entity_ids, pa.string())
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        times_ms = np.asarray(times_ms, dtype=np.int64)
        if len(times_ms) != len(ids):
            raise ValueError(f"{len(ids)} entity ids but {len(times_ms)} times")
        if event_ids is not None:
            event_ids = pc.cast(pa.array(event_ids) if not isinstance(event_ids, (pa.Array, pa.ChunkedArray))
                                else event_ids, pa.string())
            event_ids = event_ids.combine_chunks() if isinstance(event_ids, pa.ChunkedArray) else event_ids
        aggregate = self.store.is_aggregate(entity_type)
        if with_event_vectors and (aggregate or event_ids is None):
            raise ValueError("event vectors need raw-event sequences and the queried event ids")
        n, hidden_size = len(ids), self.encoder.hidden_size
        surprise = self.encoder.surprise if with_event_vectors else None
        out = AsOfStates(np.zeros((n, hidden_size), np.float32), np.zeros(n, bool), np.full(n, -1, np.int64),
                         np.zeros((n, hidden_size), np.float32) if with_event_vectors else None,
                         np.zeros((n, len(surprise.names)), np.float32) if surprise is not None else None)
        found = np.zeros(n, dtype=bool)
        for shard, row, mine, index, (offsets, seq_ids, q_ids) in self._shard_indices(entity_type, ids, times_ms,
                                                                                      event_ids):
            found[mine] = True
            if with_event_vectors:
                self._check_events(entity_type, offsets, seq_ids, row[mine], index, q_ids)
            has = index >= 0
            out.index[mine], out.has_history[mine] = index, has
            if not has.any() and not with_event_vectors:
                continue
            encoded = ArrowRows(self.store.encoded(shard))
            if has.any():
                out.hidden[mine[has]] = self.encoder.states(encoded, row[mine][has], index[has],
                                                            desc=f"{entity_type} states")
            if with_event_vectors:
                vectors, found_surprise = self.encoder.event_features(encoded, row[mine], index + 1,
                                                                      out.hidden[mine], has)
                out.event_vectors[mine] = vectors.cpu().numpy()
                if surprise is not None:
                    out.event_surprise[mine] = found_surprise
        if with_event_vectors and not found.all():
            missing = ids.filter(pa.array(~found)).slice(0, 3).to_pylist()
            raise ValueError(f"{int((~found).sum())} queried events have no {entity_type} sequence "
                             f"(e.g. entity ids {missing}); their event vectors cannot be computed")
        return out

    def _shard_indices(self, entity_type: str, ids: pa.Array, times_ms: np.ndarray, event_ids: pa.Array | None
                       ) -> Iterator[tuple[Any, np.ndarray, np.ndarray, np.ndarray, tuple[Any, Any, Any]]]:
        """Per shard holding some of the queried entities: (shard, row of every query in it (-1: elsewhere),
        the queries it holds, their as-of indices, (offsets, sequence event ids, those queries' event ids))."""
        aggregate = self.store.is_aggregate(entity_type)
        for shard in self.store.shards(entity_type):
            keys = self.store.keys(shard)
            row = pc.fill_null(pc.index_in(ids, value_set=keys["entity_id"].combine_chunks()), -1)
            row = row.to_numpy().astype(np.int64)
            mine = np.flatnonzero(row >= 0)
            if not len(mine):
                continue
            offsets, times = _flat(keys["event_time"])
            times = times.cast(pa.int64()).to_numpy()
            seq_ids = keys["event_id"].combine_chunks().values
            q_ids = event_ids.take(pa.array(mine)) if event_ids is not None and not aggregate else None
            index = as_of_index(offsets, times, row[mine], times_ms[mine], seq_ids if q_ids is not None else None,
                                q_ids, inclusive=aggregate)
            yield shard, row, mine, index, (offsets, seq_ids, q_ids)

    def positions(self, entity_type: str, entity_ids: pa.Array, times_ms: np.ndarray) -> np.ndarray:
        """(Q,) index, in its entity's full sequence, of each query's last event before `times_ms` (the as_of
        rule without event ids; -1 without history). Model-free: what `as_of(...).index` holds, without the pass."""
        ids = pc.cast(entity_ids, pa.string())
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        times_ms = np.asarray(times_ms, dtype=np.int64)
        out = np.full(len(ids), -1, dtype=np.int64)
        for _, _, mine, index, _ in self._shard_indices(entity_type, ids, times_ms, None):
            out[mine] = index
        return out

    @staticmethod
    def _check_events(entity_type: str, offsets: np.ndarray, seq_ids: pa.Array, rows: np.ndarray,
                      index: np.ndarray, query_ids: pa.Array) -> None:
        """The queried events must sit right after their state in the entity's sequence."""
        lengths = np.diff(offsets)[rows]
        ok = index + 1 < lengths
        flat = np.where(ok, offsets[rows] + index + 1, 0)
        ok &= np.asarray(pc.equal(seq_ids.take(pa.array(flat)), query_ids).to_numpy(zero_copy_only=False), bool)
        if not ok.all():
            bad = query_ids.filter(pa.array(~ok)).slice(0, 3).to_pylist()
            raise ValueError(f"{int((~ok).sum())} queried events are not in their {entity_type} sequence "
                             f"(e.g. {bad}); was the store built from the same events?")

    def windows(self, entity_type: str, entity_ids: pa.Array, starts: np.ndarray, ends: np.ndarray) -> pa.Table:
        """Encoded events [starts[q], ends[q]] (inclusive) of each query's entity, as a compact table.

        Args:
            entity_type: whose sequences.
            entity_ids: (Q,) ids; a null id or ends[q] < 0 gives an empty row.
            starts, ends: (Q,) indices in the entity's full sequence (e.g. window_start(i) and i).
        Returns:
            pa.Table of Q rows in query order (gather_windows layout).
        """
        ids = pc.cast(entity_ids, pa.string())
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        counts = np.where(ends >= 0, ends - starts + 1, 0)
        parts, order = [], []
        for shard in self.store.shards(entity_type):
            keys = self.store.keys(shard)
            row = pc.fill_null(pc.index_in(ids, value_set=keys["entity_id"].combine_chunks()), -1)
            row = row.to_numpy().astype(np.int64)
            mine = np.flatnonzero(row >= 0)
            if len(mine):
                encoded = self.store.encoded(shard)
                parts.append(gather_windows(encoded, row[mine], np.where(counts[mine] > 0, starts[mine], 0),
                                            counts[mine]))
                order.append(mine)
        taken = np.concatenate(order) if order else np.zeros(0, np.int64)
        absent = np.setdiff1d(np.arange(len(ids)), taken)
        if np.any(counts[absent] > 0):
            raise ValueError(f"{int((counts[absent] > 0).sum())} {entity_type} windows name entities without "
                             "a sequence")
        if len(absent):  # no sequence: an empty row, typed like the others
            template = parts[0] if parts else None
            if template is None:
                raise ValueError(f"no {entity_type} sequence holds any of the {len(ids)} queried entities")
            empty = gather_windows(template, np.zeros(len(absent), np.int64), np.zeros(len(absent), np.int64),
                                   np.zeros(len(absent), np.int64))
            parts.append(empty)
            order.append(absent)
        table = pa.concat_tables(parts)
        position = np.empty(len(ids), dtype=np.int64)
        position[np.concatenate(order)] = np.arange(len(ids))
        return table.take(pa.array(position))

    def iter_event_states(self, entity_type: str, chunk_entities: int = 1024, chunk_events: int = 262_144
                          ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Every event's state, streamed: per chunk of entities, its keys and (events, H) hidden states.

        A chunk holds at most `chunk_entities` entities and about `chunk_events` events (at least one
        entity), so a few very long sequences (a busy merchant) never hold many states in memory at once.

        Yields:
            (keys: entity_id, length, event_time, event_id of the chunk's entities,
             hidden: (sum of their lengths, H) float32, events in row order).
        """
        for shard in self.store.shards(entity_type):
            keys, encoded = self.store.keys(shard), self.store.encoded(shard)
            for a, b in _chunks(keys["length"].to_numpy().astype(np.int64), chunk_entities, chunk_events):
                yield keys.slice(a, b - a), self.encoder.all_states(encoded.slice(a, b - a),
                                                                    desc=f"{entity_type} states")

    def iter_last_states(self, entity_type: str, chunk_entities: int = 4096
                         ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Each entity's state after its last event (its block window), streamed per chunk of entities.

        Yields:
            (keys of up to `chunk_entities` entities, hidden: (entities, H) float32).
        """
        for shard in self.store.shards(entity_type):
            keys, encoded = self.store.keys(shard), self.store.encoded(shard)
            for a in range(0, keys.num_rows, chunk_entities):
                part = keys.slice(a, chunk_entities)
                lengths = part["length"].to_numpy().astype(np.int64)
                rows = np.flatnonzero(lengths > 0)
                hidden = np.zeros((part.num_rows, self.encoder.hidden_size), np.float32)
                hidden[rows] = self.encoder.states(encoded.slice(a, chunk_entities), rows, lengths[rows] - 1,
                                                   desc=f"{entity_type} states")
                yield part, hidden
