"""Point-in-time entity states of one encoder over the live state, with a cache, and attempt event vectors.

h(t) depends only on the entity's events strictly before t, so the state after an entity's last event
serves every later attempt until the entity's next event. States are cached per entity with the store
`version` they were computed at and the range of cut-offs they are valid for; any applied event changes the
version, so a hit is exact. A miss costs one causal pass over at most max_position events.

A service holds one engine for the pretrained model, plus one per `full` head (its fine-tuned encoder).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import time_ns
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from foundation.data.aggregates import AggregateSpec
from foundation.data.collate import batch_columns
from foundation.data.schema import DataSchema
from foundation.pointintime import (
    bucket_rows,
    event_batch,
    event_rows,
    event_vectors,
    window_batch,
    window_start,
)
from foundation.serving.incremental import supports
from foundation.serving.live import LiveStates
from foundation.serving.profile import ScoreProfile
from foundation.serving.schemas import RequestError
from foundation.serving.state import EntityHistory, EventRecord, StateStore

logger = logging.getLogger(__name__)
Key = tuple[int, str]  # (event_time ms, event_id): the order of an entity's sequence
Ref = tuple[str, str]  # (entity_type, entity_id)
SURPRISE_CACHE = 4096  # states whose next-event log-probabilities are kept (~10 KB each for `small`)


@dataclass(frozen=True)
class EntityState:
    """An entity's point-in-time state.

    Args:
        hidden: (H,) hidden state after the last included event (zeros without history).
        has_history: whether any event is included.
        index: index of that event (bucket) in the entity's full sequence; -1 without history.
        last_time: its event_time (bucket end) in epoch ms; None without history.
    """

    entity_type: str
    entity_id: str
    hidden: np.ndarray
    has_history: bool
    index: int
    last_time: int | None


@dataclass(frozen=True)
class _Cached:
    """A state valid for cut-offs c with lo < c <= hi (None: unbounded) at one store version."""

    version: int
    lo: Key | None
    hi: Key | None
    state: EntityState

    def covers(self, version: int, cut: Key | None) -> bool:
        if version != self.version:
            return False
        if cut is None:
            return self.hi is None
        return (self.lo is None or self.lo < cut) and (self.hi is None or cut <= self.hi)


class StateEngine:
    """Exact point-in-time states of one encoder from a StateStore.

    Args:
        model: FoundationModel (put in eval mode).
        tokenizer: the EventTokenizer it was trained with.
        schema: the data schema.
        aggregate_specs: entity type -> AggregateSpec for `representation: aggregate` entities.
        cache_size: entities whose state is cached (LRU).
        surprise: EventSurprise of the model's next-event heads, or None.
        incremental: advance the newest state of raw-event entities by one recurrent step per event
            (foundation.serving.live) instead of a window pass; False: every miss is a window pass.
        live_bytes: bytes of live-state carries kept (LRU beyond; None: only `cache_size` bounds them).
    """

    def __init__(self, model: Any, tokenizer: Any, schema: DataSchema,
                 aggregate_specs: Mapping[str, AggregateSpec] | None = None, cache_size: int = 100_000,
                 surprise: Any = None, incremental: bool = True, live_bytes: int | None = None):
        self.model = model.eval()
        self.surprise = surprise  # EventSurprise of the model's next-event heads, or None
        self.tokenizer = tokenizer
        self.schema = schema
        self.aggregate_specs = dict(aggregate_specs or {})
        self.field_specs = tokenizer.field_specs()
        self._batch_columns = batch_columns(self.field_specs)
        self.max_len = int(model.config.max_position)
        self.hidden_size = int(model.config.hidden_size)
        self.canonical = schema.canonical_schema()
        self.fields = [name for name in schema.fields if name in set(tokenizer.field_names)]
        # The attempt's event vector is taken in the sequence of the first entity (the customer).
        self.event_entity = next(iter(schema.entities))
        self._cache: OrderedDict[Ref, _Cached] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.cache_hits = self.cache_misses = 0
        self._surprise_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.live = (LiveStates(self.model, tokenizer, self.canonical, self.fields, cache_size, live_bytes)
                     if incremental and supports(self.model) else None)

    def cut(self, entity_type: str, time: int | None, event_id: str | None) -> Key | None:
        """Cut-off key: items with key < cut are in the state. A bucket is in it once closed (end <= time);
        without a time, "now" is the wall clock for buckets (the current one is still open) and "after
        every retained event" for raw-event entities."""
        if entity_type in self.aggregate_specs:
            return ((time if time is not None else time_ns() // 1_000_000) + 1, "")
        if time is None:
            return None
        return (time, event_id or "")

    def entity_states(self, refs: Sequence[Ref], store: StateStore, time: int | None = None,
                      event_id: str | None = None, on_cache: Any = None,
                      versions: Sequence[int] | None = None) -> list[EntityState]:
        """States of several entities as of (time, event_id): after their last event strictly before it
        (buckets: closed at or before time); time None = after every retained event.

        Args:
            on_cache: optional callback(hits, misses) for metrics.
            versions: the refs' store versions when the caller has just read them (a micro-batch reads them
                once for all its attempts); None reads them here.
        Raises:
            RequestError 409: the cut-off is older than the retained history can reproduce exactly.
        """
        versions = store.versions(refs) if versions is None else versions
        states: list[EntityState | None] = [None] * len(refs)
        todo = []
        with self._lock:
            for k, (ref, version) in enumerate(zip(refs, versions)):
                entry = self._cache.get(ref)
                if entry is not None and entry.covers(version, self.cut(ref[0], time, event_id)):
                    self._cache.move_to_end(ref)
                    states[k] = entry.state
                else:
                    todo.append(k)
            self.cache_hits += len(refs) - len(todo)
            self.cache_misses += len(todo)
        if on_cache is not None:
            on_cache(len(refs) - len(todo), len(todo))
        if todo and self.live is not None:
            todo = self._advance_live(refs, todo, store, time, event_id, states)
        if todo:
            histories = store.histories([refs[k] for k in todo])
            served = self._live_states(histories, time, event_id)
            for j, (k, history) in enumerate(zip(todo, histories)):
                entry = served.get(j) or self._compute(history, self.cut(history.entity_type, time, event_id))
                states[k] = entry.state
                self._remember((history.entity_type, history.entity_id), entry)
        return states  # type: ignore[return-value]

    def _live_states(self, histories: Sequence[EntityHistory], time: int | None, event_id: str | None
                     ) -> dict[int, _Cached]:
        """Entries of the histories whose state after their newest event serves the cut-off (raw-event
        entities), from the live states: advanced, or rebuilt by one batched window pass; by position."""
        if self.live is None:
            return {}
        wanted = []
        for j, history in enumerate(histories):
            if history.events and history.entity_type not in self.aggregate_specs:
                newest = (history.events[-1]["event_time"], history.events[-1]["event_id"])
                cut = self.cut(history.entity_type, time, event_id)
                if cut is None or newest < cut:
                    wanted.append(j)
        out = {}
        for j, live in zip(wanted, self.live.states([histories[j] for j in wanted])):
            history = histories[j]
            state = EntityState(history.entity_type, history.entity_id, live.hidden, True, live.index, live.key[0])
            out[j] = _Cached(history.version, live.key, None, state)
        return out

    def _advance_live(self, refs: Sequence[Ref], todo: list[int], store: StateStore, time: int | None,
                      event_id: str | None, states: list[EntityState | None]) -> list[int]:
        """Fill `states[k]` of the missed raw-event entities whose live state advances by their new events (read
        as tails of the store: only the events after the cached key) and serves the cut-off; returns the rest
        (no live state yet, a window pass needed, or a cut-off before the newest event)."""
        candidates = [(k, live) for k in todo if refs[k][0] not in self.aggregate_specs
                      for live in [self.live.get(refs[k])] if live is not None]
        if not candidates:
            return todo
        tails = store.tails([refs[k] for k, _ in candidates], [live.key for _, live in candidates])
        usable = []
        for (k, live), tail in zip(candidates, tails):
            newest = (tail.events[-1]["event_time"], tail.events[-1]["event_id"]) if tail.events else live.key
            cut = self.cut(refs[k][0], time, event_id)
            if cut is None or newest < cut:
                usable.append((k, tail))
        done = set()
        for (k, tail), new in zip(usable, self.live.advance_many([tail for _, tail in usable])):
            if new is None:
                continue
            states[k] = EntityState(tail.entity_type, tail.entity_id, new.hidden, True, new.index, new.key[0])
            self._remember(refs[k], _Cached(tail.version, new.key, None, states[k]))
            done.add(k)
        return [k for k in todo if k not in done]

    def _remember(self, ref: Ref, entry: _Cached) -> None:
        with self._lock:
            current = self._cache.get(ref)
            if current is None or current.version <= entry.version:
                self._cache[ref] = entry
                self._cache.move_to_end(ref)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def invalidate(self, refs: Sequence[Ref]) -> None:
        """Drop cached states of entities that just changed (their version moved on anyway)."""
        with self._lock:
            for ref in refs:
                self._cache.pop(ref, None)

    def _sequence(self, history: EntityHistory) -> pa.Table:
        spec = self.aggregate_specs.get(history.entity_type)
        if spec is not None:
            return bucket_rows(history.entity_type, history.entity_id, history.events, spec)
        return event_rows(history.entity_type, history.entity_id, history.events, self.canonical, self.fields)

    @torch.inference_mode()
    def _compute(self, history: EntityHistory, cut: Key | None) -> _Cached:
        etype, eid = history.entity_type, history.entity_id
        empty = EntityState(etype, eid, np.zeros(self.hidden_size, np.float32), False, -1, None)
        if not history.events:
            return _Cached(history.version, None, None, empty)
        table = self._sequence(history)
        times = pc.list_flatten(table["event_time"]).cast(pa.int64()).to_pylist()
        keys = list(zip(times, pc.list_flatten(table["event_id"]).to_pylist()))
        n_in = len(keys) if cut is None else sum(1 for key in keys if key < cut)
        first = history.n_events - len(keys)  # full-sequence index of keys[0]
        hi = keys[n_in] if n_in < len(keys) else None
        if n_in == 0:
            if first > 0:
                raise RequestError(409, f"{etype} {eid!r}: the requested time precedes the {len(keys)} retained "
                                        "events; its point-in-time state is no longer available online")
            return _Cached(history.version, None, hi, empty)
        last = first + n_in - 1
        start = window_start(last, self.max_len)
        if max(start - 1, 0) < first:
            # The window, or the predecessor of its first event (its time gap), was evicted.
            raise RequestError(409, f"{etype} {eid!r}: the requested time is too far in the past for the "
                                    f"retained history ({len(keys)} events); raise state.max_events or use the "
                                    "batch embeddings")
        encoded = self.tokenizer.encode(table)
        batch = window_batch(encoded, self.field_specs, start - first, last - start + 1)
        hidden = self.model(batch).entity_embedding[0].float().numpy().copy()  # (H,)
        state = EntityState(etype, eid, hidden, True, last, keys[n_in - 1][0])
        return _Cached(history.version, keys[n_in - 1], hi, state)

    def _event_batch(self, record: EventRecord, previous_time: int | None) -> dict[str, torch.Tensor]:
        if previous_time is not None and previous_time > record.event_time:
            raise ValueError(f"previous event at {previous_time} is after the attempt at {record.event_time}")
        etype = self.event_entity
        eid = record.payload.get(f"{etype}_id") or ""
        events = [record.payload]
        if previous_time is not None:  # only its time matters: the gap of the attempt
            events = [{"event_id": "", "event_time": previous_time}, record.payload]
        encoded = self.tokenizer.encode(event_rows(etype, eid, events, self.canonical, self.fields))
        return event_batch(encoded, self.field_specs, len(events) - 1)

    @torch.inference_mode()
    def event_vector(self, record: EventRecord, previous_time: int | None) -> np.ndarray:
        """(H,) event vector of an attempt: its event embedding in the event entity's sequence (time gap to
        that entity's previous event, at `previous_time`) with the outcome fields removed."""
        batch = self._event_batch(record, previous_time)
        return event_vectors(self.model, batch, self.field_specs)[0, 0].float().numpy()

    @torch.inference_mode()
    def event_features(self, record: EventRecord, state: EntityState, with_surprise: bool
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """The attempt's event vector (see `event_vector`, the gap taken from `state`, its event entity's state
        before it) and, when asked, its surprise under that state (foundation.embeddings.surprise), from
        one encoding of the attempt."""
        vectors, surprise = self.event_features_many([record], [state], with_surprise)
        return vectors[0], None if surprise is None else surprise[0]

    def _events_batch(self, records: Sequence[EventRecord], previous: Sequence[int | None]) -> dict[str, torch.Tensor]:
        """The (N, 1) model batch of N attempts, each in its event entity's sequence after its previous event
        (row r equals `_event_batch(records[r], previous[r])`, tests/serving/test_scorer.py).

        Built from flat columns (`EventTokenizer.encode_flat`: the tokenizer's own encoders on the values
        `event_rows` would hold), not through one-row sequence tables and `assemble`: the same tensors
        without the table building that dominated a single attempt's features.
        """
        events: list[Mapping[str, Any]] = []
        ends = np.empty(len(records), np.int64)  # flat index of each attempt: the last event of its row
        for r, (record, time) in enumerate(zip(records, previous)):
            if time is not None:
                if time > record.event_time:
                    raise ValueError(f"previous event at {time} is after the attempt at {record.event_time}")
                events.append({"event_id": "", "event_time": time})  # only its time matters: the attempt's gap
            events.append(record.payload)
            ends[r] = len(events) - 1
        offsets = np.concatenate([[0], ends + 1])
        times = np.array([e["event_time"] for e in events], np.int64)
        columns = {}
        for name in self.fields:
            dtype = self.canonical.field(name).type
            values = [e.get(name) for e in events]
            columns[name] = (pa.array(values, pa.int64()).cast(dtype) if pa.types.is_timestamp(dtype)
                             else pa.array(values, dtype, from_pandas=True))  # as event_rows builds them
        encoded = {"event_time": times, **self.tokenizer.encode_flat(columns, times, offsets)}
        n = len(records)
        batch = {
            "entity_type": torch.full((n,), self.tokenizer.entity_types.index(self.event_entity), dtype=torch.int64),
            "lengths": torch.ones(n, dtype=torch.int64),
            "attention_mask": torch.ones((n, 1), dtype=torch.bool),
            "entity_index": torch.zeros(n, dtype=torch.int64),
        }
        for column in self._batch_columns:
            dtype = np.float32 if column.kind in ("float", "label") else np.int64
            if column.name in encoded:
                values = np.asarray(encoded[column.name])[ends][:, None]  # (N, 1) or (N, 1, K)
            else:  # pad_missing, as assemble
                values = np.full((n, 1) + ((column.max_tokens,) if column.kind == "tokens" else ()), column.pad, dtype)
            batch[column.name] = torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))
        return batch

    @torch.inference_mode()
    def event_features_many(self, records: Sequence[EventRecord], states: Sequence[EntityState],
                            with_surprise: bool, profile: ScoreProfile | None = None
                            ) -> tuple[np.ndarray, np.ndarray | None]:
        """`event_features` of N attempts in one tokenizer call and one model pass (micro-batching).

        Args:
            profile: optional ScoreProfile timed into (tokenization: features; passes: model).
        Returns:
            (N, H) event vectors, (N, S) surprise or None.
        """
        profile = profile or ScoreProfile()
        with profile.stage("features"):
            batch = self._events_batch(records, [state.last_time for state in states])
        with profile.stage("model"):
            vectors = event_vectors(self.model, batch, self.field_specs)[:, 0].float().numpy()  # (N, H)
            if not with_surprise:
                return vectors, None
            if self.surprise is None:
                raise ValueError("this model has no next-event heads (next_event_heads.safetensors): no surprise")
            has_history = torch.tensor([s.has_history for s in states])
            return vectors, self.surprise.from_log_probs(self._log_probs(states), batch, has_history).numpy()

    def _log_probs(self, states: Sequence[EntityState]) -> torch.Tensor:
        """(N, C) next-event log-probabilities of the states (EventSurprise.log_probs): they depend on the
        state's hidden vector alone, so the heads run once per state, not once per attempt; kept for the
        `SURPRISE_CACHE` most recent hidden vectors (keyed by their bytes: an exact match)."""
        hidden = [np.ascontiguousarray(s.hidden, np.float32) for s in states]
        keys = [h.tobytes() for h in hidden]
        with self._lock:
            found = [self._surprise_cache.get(key) for key in keys]
        todo = [k for k, row in enumerate(found) if row is None]
        if todo:
            for k, row in zip(todo, self.surprise.log_probs(torch.as_tensor(np.stack([hidden[k] for k in todo])))):
                found[k] = row.clone()  # its own storage, not a view of the batch
        with self._lock:
            for key, row in zip(keys, found):
                self._surprise_cache[key] = row
                self._surprise_cache.move_to_end(key)
            while len(self._surprise_cache) > SURPRISE_CACHE:
                self._surprise_cache.popitem(last=False)
        return torch.stack(found)  # (N, C)


class StateWarmer:
    """Recomputes the states of just-ingested entities in a background thread, so the next score of the
    entity hits the cache instead of paying a causal pass on the request path.

    Refs queued while a pass runs are coalesced (each entity once, at its newest version). Failures are
    logged and dropped: the request path computes the state itself on a miss.

    Args:
        engines: the StateEngines whose caches are filled.
        store: the StateStore read.
        max_pending: queued entities beyond this are dropped (the request path covers them).
    """

    def __init__(self, engines: Sequence[StateEngine], store: StateStore, max_pending: int = 10_000):
        self.engines, self.store, self.max_pending = list(engines), store, max_pending
        self._pending: dict[Ref, None] = {}  # insertion-ordered set
        self._cond = threading.Condition()
        self._stopped = self._busy = False
        self._thread = threading.Thread(target=self._run, name="state-warmer", daemon=True)
        self._thread.start()

    def submit(self, refs: Sequence[Ref]) -> None:
        with self._cond:
            for ref in refs:
                if len(self._pending) < self.max_pending:
                    self._pending[ref] = None
            self._cond.notify()

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (tests, graceful shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
                refs = list(self._pending)[:64]
                for ref in refs:
                    del self._pending[ref]
                self._busy = True
            try:
                for engine in self.engines:
                    engine.entity_states(refs, self.store)
            except Exception as err:  # noqa: BLE001 - a warm-up failure must never stop the service
                logger.warning("state warm-up of %d entities failed: %s", len(refs), err)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
