"""Point-in-time hidden states of whole sequence stores (docs/architecture.md section 8), batched.

- `PointInTimeEncoder`: the model's hidden state after any set of events of an encoded table, computed with
  the section-8 block windows (one causal pass per block holding a queried event, padded batches sorted by
  window length), plus the outcome-free event vectors of `foundation.serving.features.event_vectors`.
- `as_of_index`: for queries (entity, time[, event id]), the index of the entity's last event strictly before
  them in (event_time, event_id) order, or for an aggregate entity its last bucket whose end <= time; one
  lexicographic sort of events and queries together, no per-row loop.
- `SequenceStore`: the sequence shards of a folder (architecture.md section 3) with their encodings, read one
  shard at a time, so memory holds one shard, never the whole dataset.
- `PointInTimeStates`: entity states "as of" arbitrary (entity, time, event) queries over a store, shard by
  shard; what the task features (foundation.heads.features) and the embedding export are built from.

Online == batch: the windows are `window_start`'s, the batch tensors come from the same `assemble` as
`foundation.serving.features.window_batch`, and the event vectors are `event_vectors` itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from foundation.data.collate import ArrowRows, assemble, batch_columns
from foundation.data.sequences import SequenceManifest
from foundation.embeddings.windows import WindowPlan, block_windows, plan_windows
from foundation.serving.features import event_vectors

KEY_COLUMNS = ("entity_type", "entity_id", "length", "event_id", "event_time")


class PointInTimeEncoder:
    """Exact section-8 hidden states and event vectors of a FoundationModel, in padded batches.

    Args:
        model: FoundationModel (put in eval mode here; its `max_position` is the window length).
        field_specs: EventTokenizer.field_specs().
        batch_tokens: padded events per forward pass (B * T), the memory/speed knob.
        device: where the model runs ("cpu", "cuda", ...); the model is moved there.
        progress: show tqdm bars for long passes.
        surprise: EventSurprise of the model's next-event heads: `as_of(..., with_event_vectors=True)` then also
            returns each queried event's surprise under its entity's state.

    Example:
        >>> encoder = PointInTimeEncoder(model, tokenizer.field_specs())  # doctest: +SKIP
        >>> h = encoder.states(encoded, rows=[0, 0], positions=[3, 70])  # (2, H)  # doctest: +SKIP
    """

    def __init__(self, model: Any, field_specs: Sequence[Mapping[str, Any]], batch_tokens: int = 32768,
                 device: str | torch.device = "cpu", progress: bool = True, surprise: Any = None):
        self.model = model.eval().to(device)
        self.surprise = surprise  # EventSurprise (foundation.embeddings.surprise) or None
        self.field_specs = list(field_specs)
        self.columns = batch_columns(self.field_specs)
        self.max_len = int(model.config.max_position)
        self.hidden_size = int(model.config.hidden_size)
        self.batch_tokens = max(int(batch_tokens), self.max_len)
        self.device = torch.device(device)
        self.progress = progress
        self.events_read = 0  # events passed through the encoder so far (cost counter)

    def _batch(self, source: ArrowRows, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray
               ) -> dict[str, torch.Tensor]:
        batch = assemble(source, self.columns, rows, starts, counts, rows)
        return {key: value.to(self.device) for key, value in batch.items()}

    @torch.inference_mode()
    def run_plan(self, encoded: pa.Table | ArrowRows, plan: WindowPlan, desc: str = "states") -> torch.Tensor:
        """Hidden states of a plan's queries.

        Args:
            encoded: encoded sequences (EventTokenizer.encode output) or their ArrowRows.
            plan: windows and queries (windows.plan_windows / block_windows).
            desc: progress-bar label.
        Returns:
            (Q, H) float32 tensor, query order, on the encoder's device.
        """
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        out = torch.zeros(len(plan.window), self.hidden_size, device=self.device)
        if not len(plan.window):
            return out
        # Longest windows first; batches of equal-ish length waste little padding.
        order = np.argsort(-plan.counts, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        query_rank = rank[plan.window]  # (Q,) sorted-window index of each query
        by_window = np.argsort(query_rank, kind="stable")
        bounds = np.searchsorted(query_rank[by_window], np.arange(len(order) + 1))
        total = int(plan.counts.sum())
        pieces = []
        with tqdm(total=total, desc=desc, unit="event", unit_scale=True, leave=False,
                  disable=not self.progress or total < 200_000) as bar:
            a = 0
            while a < len(order):
                width = int(plan.counts[order[a]])
                b = min(len(order), a + max(1, self.batch_tokens // max(width, 1)))
                chosen = order[a:b]
                batch = self._batch(source, plan.rows[chosen], plan.starts[chosen], plan.counts[chosen])
                hidden = self.model(batch).last_hidden_state  # (B, T, H)
                queries = by_window[bounds[a]:bounds[b]]
                local = torch.as_tensor(query_rank[queries] - a, device=self.device)
                offset = torch.as_tensor(plan.offset[queries], device=self.device)
                pieces.append((torch.as_tensor(queries, device=self.device), hidden[local, offset]))
                self.events_read += int(plan.counts[chosen].sum())
                bar.update(int(plan.counts[chosen].sum()))
                a = b
        for queries, values in pieces:
            out[queries] = values.float()
        return out

    def states(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
               positions: Sequence[int] | np.ndarray, desc: str = "states") -> np.ndarray:
        """The hidden state right after event `positions[q]` of row `rows[q]` (section-8 window).

        Args:
            encoded: encoded sequences.
            rows, positions: (Q,) queries; positions index the row's full sequence.
        Returns:
            (Q, H) float32.
        """
        plan = plan_windows(np.asarray(rows), np.asarray(positions), self.max_len)
        return self.run_plan(encoded, plan, desc).cpu().numpy()

    def all_states(self, encoded: pa.Table | ArrowRows, desc: str = "states") -> np.ndarray:
        """Hidden states of every event of every row, rows in order: (sum(length), H) float32."""
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        return self.run_plan(source, block_windows(source.lengths, self.max_len), desc).cpu().numpy()

    def event_vectors(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
                      positions: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Outcome-free event vectors (foundation.serving.features.event_vectors) of single events.

        Each event is embedded alone (T = 1), exactly as the scorer's `event_batch` does, so its vector
        depends on nothing but its own encoding (time gap to its entity's previous event included).

        Returns:
            (Q, H) float32 tensor on the encoder's device.
        """
        return self.event_features(encoded, rows, positions)[0]

    def event_features(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
                       positions: Sequence[int] | np.ndarray, hidden: np.ndarray | None = None,
                       has_history: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
        """Event vectors of single events and, given the states just before them (`hidden`, `has_history`)
        and next-event heads, their surprise (foundation.embeddings.surprise), from the same batches.

        Returns:
            ((Q, H) float32 tensor on the encoder's device, (Q, F) float32 surprise or None).
        """
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        rows = np.asarray(rows, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        with_surprise = self.surprise is not None and hidden is not None
        vectors, surprise = [], []
        step = max(self.batch_tokens, 1)
        for a in range(0, len(rows), step):
            part = slice(a, a + step)
            batch = self._batch(source, rows[part], positions[part], np.ones(len(rows[part]), np.int64))
            vectors.append(event_vectors(self.model, batch, self.field_specs)[:, 0].float())  # (B, H)
            if with_surprise:
                h = torch.as_tensor(hidden[part], device=self.device)
                flags = torch.as_tensor(has_history[part], device=self.device)
                surprise.append(self.surprise(h, batch, flags).float().cpu().numpy())
        out = torch.cat(vectors) if vectors else torch.zeros(0, self.hidden_size, device=self.device)
        if not with_surprise:
            return out, None
        return out, np.concatenate(surprise) if surprise else np.zeros((0, len(self.surprise.names)), np.float32)


def gather_windows(encoded: pa.Table, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> pa.Table:
    """A compact encoded table whose row j is events [starts[j], starts[j] + counts[j]) of row rows[j].

    Every list column (nested ones too: text tokens) is gathered through its offsets, so a window keeps its
    events' encodings exactly (including the first event's time gap to its true predecessor). A count of
    0 gives an empty row.

    Args:
        encoded: EventTokenizer.encode output.
        rows, starts, counts: (J,) window of each output row.
    Returns:
        pa.Table with the same columns and J rows (`length` = counts).
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(rows) and (counts.min() < 0 or starts.min() < 0):
        raise ValueError("window starts and counts must be >= 0")
    lengths = encoded["length"].to_numpy().astype(np.int64)
    if len(rows) and np.any(starts + counts > lengths[rows]):
        raise ValueError("a window reaches past the end of its sequence")
    new_offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    columns = {}
    for name in encoded.column_names:
        column = encoded[name].combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            columns[name] = column.take(pa.array(rows))
            continue
        offsets = column.offsets.to_numpy().astype(np.int64)
        flat = np.repeat(offsets[rows] + starts, counts) + within
        columns[name] = pa.ListArray.from_arrays(new_offsets, column.values.take(pa.array(flat)))
    columns["length"] = pa.array(counts.astype(np.int32))
    return pa.table(columns)


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
    """The sequence shards of a folder (architecture.md section 3), read one shard at a time.

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
        """States of entities just before each query (section 8: "entity state at time t").

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
        for shard in self.store.shards(entity_type):
            keys = self.store.keys(shard)
            row = pc.fill_null(pc.index_in(ids, value_set=keys["entity_id"].combine_chunks()), -1)
            row = row.to_numpy().astype(np.int64)
            mine = np.flatnonzero(row >= 0)
            if not len(mine):
                continue
            found[mine] = True
            offsets, times = _flat(keys["event_time"])
            times = times.cast(pa.int64()).to_numpy()
            seq_ids = keys["event_id"].combine_chunks().values
            q_ids = event_ids.take(pa.array(mine)) if event_ids is not None and not aggregate else None
            index = as_of_index(offsets, times, row[mine], times_ms[mine], seq_ids if q_ids is not None else None,
                                q_ids, inclusive=aggregate)
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
        """Each entity's state after its last event (its section-8 window), streamed per chunk of entities.

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
