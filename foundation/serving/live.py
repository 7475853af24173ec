"""Per-entity live states advanced event by event: the cache behind a score that costs no window pass.

For each raw-event entity the engine keeps, after its newest event, the state, the recurrent carry
(foundation.serving.incremental) and where it stands: the store version it was computed at, the index of that
event in the entity's full sequence, the window start and the event's (event_time, event_id) key. When the
entity's version moves on, the new retained events after that key are the events to apply, provided the count
matches: n_events - (events after the key) == index + 1. Then
- same window start: one step per new event (the predecessor's time gives the first one's time gap);
- otherwise (a block boundary, a late event inserted before the key, no live state yet after a restart or an
  LRU eviction): one window pass over the window of the newest event, from the durable log (the store's
  retained events), exactly as the batch path computes it.
Both work on many entities at once: one tokenizer call and one batched (padded) pass per call.
A duplicate event changes nothing in the store (idempotent on event_id), so the version and the state stay.
The live state is only a cache of what the batch path computes: it is never written back to the store, so a
restart, another replica (Redis), or an eviction from this LRU rebuilds it from the durable log.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from foundation.data.collate import ArrowRows, assemble, batch_columns
from foundation.pointintime import event_rows, window_start
from foundation.serving.incremental import Carry, IncrementalEncoder, carry_nbytes
from foundation.serving.schemas import RequestError
from foundation.serving.state import EntityHistory

Key = tuple[int, str]
Ref = tuple[str, str]


@dataclass(frozen=True)
class LiveState:
    """An entity's state right after its newest applied event.

    Args:
        version: store version it was computed at.
        index: index of the newest event in the entity's full sequence.
        start: window_start(index).
        key: (event_time, event_id) of the newest event.
        hidden: (H,) state.
        carry: what the next step needs (see foundation.serving.incremental).
    """

    version: int
    index: int
    start: int
    key: Key
    hidden: np.ndarray
    carry: Carry


class LiveStates:
    """The live states of one encoder's raw-event entities: an LRU bounded in entities and in bytes (a
    transformer's key/value cache is ~0.8 MB an entity for `small`; the least recently used go first).

    Args:
        model: FoundationModel in eval mode.
        tokenizer: its EventTokenizer.
        canonical: DataSchema.canonical_schema().
        fields: the tokenizer's field names in schema order.
        capacity: entities kept.
        max_bytes: bytes of carries kept (None: no bound but `capacity`).
    """

    def __init__(self, model: Any, tokenizer: Any, canonical: Any, fields: Sequence[str], capacity: int,
                 max_bytes: int | None = None):
        self.encoder = IncrementalEncoder(model)
        self.tokenizer, self.canonical, self.fields = tokenizer, canonical, list(fields)
        self.field_specs = tokenizer.field_specs()
        self.max_len = int(model.config.max_position)
        self.capacity, self.max_bytes = capacity, max_bytes
        self.nbytes = 0  # carries held
        self._states: OrderedDict[Ref, LiveState] = OrderedDict()
        self._lock = threading.Lock()
        self.steps = self.prefills = 0  # events applied by one step / window passes (tests, /metrics)

    def get(self, ref: Ref) -> LiveState | None:
        with self._lock:
            return self._states.get(ref)

    def __len__(self) -> int:
        return len(self._states)

    def state(self, history: EntityHistory) -> LiveState:
        """The state after the newest retained event of a non-empty history (see `states`)."""
        return self.states([history])[0]

    def states(self, histories: Sequence[EntityHistory]) -> list[LiveState]:
        """The states after the newest retained event of non-empty histories: advanced from the cached ones
        where they can be, the others by one batched window pass; remembered for the next call.

        Raises:
            RequestError 409: the window of an entity's newest event was evicted (state.max_events too small).
        """
        out = self.advance_many(histories)
        rest = [k for k, state in enumerate(out) if state is None]
        if rest:
            for k, new in zip(rest, self._prefill_many([histories[k] for k in rest])):
                out[k] = self._remember(new, (histories[k].entity_type, histories[k].entity_id))
        return out  # type: ignore[return-value]

    def _remember(self, new: LiveState, ref: Ref) -> LiveState:
        with self._lock:
            current = self._states.get(ref)
            if current is None or current.version <= new.version:
                self.nbytes += carry_nbytes(new.carry) - (0 if current is None else carry_nbytes(current.carry))
                self._states[ref] = new
                self._states.move_to_end(ref)
            while len(self._states) > self.capacity or (
                    self.max_bytes is not None and self.nbytes > self.max_bytes and len(self._states) > 1):
                _, evicted = self._states.popitem(last=False)
                self.nbytes -= carry_nbytes(evicted.carry)
        return new

    def advance_many(self, histories: Sequence[EntityHistory]) -> list[LiveState | None]:
        """Advance the cached states of several entities by their new events: one tokenizer call and one
        batched recurrent pass for all of them.

        Args:
            histories: per entity its retained events, or only those after its cached state's key (a tail,
                `StateStore.tails`), with the store's n_events and version.
        Returns:
            per entity its new state (remembered), or None when it needs a window pass (no cached state, a
            block boundary, a late event before the cached key).
        """
        out: list[LiveState | None] = [None] * len(histories)
        todo: list[tuple[int, LiveState, list[dict[str, Any]]]] = []
        for k, history in enumerate(histories):
            previous = self.get((history.entity_type, history.entity_id))
            if previous is None:
                continue
            if previous.version == history.version:
                out[k] = previous
                continue
            new = [e for e in history.events if (e["event_time"], e["event_id"]) > previous.key]
            last = history.n_events - 1
            # every change must be the new events after the key (else a late event landed before it), and
            # the window start must stay (else a block boundary)
            if new and history.n_events - len(new) == previous.index + 1 and \
                    window_start(last, self.max_len) == previous.start:
                todo.append((k, previous, new))
        if todo:
            for (k, previous, new), (hidden, carry) in zip(todo, self._steps(histories, todo)):
                history = histories[k]
                state = LiveState(history.version, history.n_events - 1, previous.start,
                                  (new[-1]["event_time"], new[-1]["event_id"]), hidden.float().numpy().copy(), carry)
                out[k] = self._remember(state, (history.entity_type, history.entity_id))
        return out

    def _steps(self, histories: Sequence[EntityHistory], todo: Sequence[tuple[int, LiveState, list[dict[str, Any]]]]
               ) -> list[tuple[Any, Carry]]:
        """(state, carry) after the new events of each entity of `todo`."""
        # Row r: the previous newest event (only its time matters: the first new event's gap), then the new ones.
        tables = [event_rows(histories[k].entity_type, histories[k].entity_id,
                             [{"event_id": "", "event_time": previous.key[0]}, *new], self.canonical, self.fields)
                  for k, previous, new in todo]
        encoded = self.tokenizer.encode(pa.concat_tables(tables).combine_chunks())
        n = len(todo)
        counts = np.array([len(new) for _, _, new in todo], np.int64)
        batch = assemble(ArrowRows(encoded), batch_columns(self.field_specs), np.arange(n), np.ones(n, np.int64),
                         counts, np.zeros(n, np.int64))
        offsets = torch.tensor([previous.index + 1 - previous.start for _, previous, _ in todo])
        hidden, carries = self.encoder.advance(batch, offsets, [previous.carry for _, previous, _ in todo])
        self.steps += int(counts.sum())
        return list(zip(hidden, carries))

    def _prefill_many(self, histories: Sequence[EntityHistory]) -> list[LiveState]:
        """One padded window pass over the windows of the newest events of several entities."""
        tables, starts, counts = [], [], []
        for history in histories:
            last, first = history.n_events - 1, history.first_index
            start = window_start(last, self.max_len)
            if max(start - 1, 0) < first:
                raise RequestError(409, f"{history.entity_type} {history.entity_id!r}: the window of the newest "
                                        f"event is no longer retained ({len(history.events)} events); raise "
                                        "state.max_events")
            tables.append(event_rows(history.entity_type, history.entity_id, history.events, self.canonical,
                                     self.fields))
            starts.append(start - first)
            counts.append(last - start + 1)
        encoded = self.tokenizer.encode(pa.concat_tables(tables).combine_chunks())
        n = len(histories)
        batch = assemble(ArrowRows(encoded), batch_columns(self.field_specs), np.arange(n), np.asarray(starts),
                         np.asarray(counts, np.int64), np.zeros(n, np.int64))
        hidden, carries = self.encoder.prefill_many(batch)
        self.prefills += n
        out = []
        for history, state, carry in zip(histories, hidden, carries):
            newest = history.events[-1]
            last = history.n_events - 1
            out.append(LiveState(history.version, last, window_start(last, self.max_len),
                                 (newest["event_time"], newest["event_id"]), state.float().numpy().copy(), carry))
        return out
