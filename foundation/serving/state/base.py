"""The per-entity live state the service scores from, and the interface every backend implements.

For each entity (entity_type, entity_id) the store keeps
- the entity's most recent canonical events, ordered by (event_time, event_id), at most `max_events`
  (default: the model's max_position + 1; the extra event is the predecessor of the oldest window
  event, whose time gap the tokenizer needs: see docs/architecture.md section 8);
- `n_events`: how many events were ever applied to the entity, evicted ones included. With it the
  service knows the index i of the entity's last event in its full time-ordered sequence, which is
  what `window_start(i)` needs for online == batch.

Events are applied idempotently on `event_id` (globally unique): an id already applied is acknowledged
as a duplicate and changes nothing. `apply` returns only after the change is durable in the backend, so
an acknowledged event is never lost.

Out-of-order (late) events: an event older than the entity's newest event is inserted at its place in
(event_time, event_id) order, `n_events` increments, and the oldest event is evicted if the window is
full (a late event older than every retained event of a full window is counted but not retained: it
would be evicted at once). The resulting state is exactly the state an in-order arrival would have
produced, so scores after the late event equal the batch path. The consequence: scores and embeddings
returned *before* the late event arrived were computed without it and differ from what the batch path
computes for those past events.

Aggregate entities (`representation: aggregate`, e.g. issuers bucketed by hour): the store keeps the raw
events of the entity's newest `max_events + 1` non-empty buckets (one more than raw-event entities because
the newest bucket is usually still open, not yet part of the state; the scorer aggregates them with the same
`foundation.data.aggregates.aggregate_shard` the batch path uses, so online == batch), and `n_events`
counts non-empty buckets, the positions of the entity's sequence. A bucket whose events are evicted moves
the entity's horizon; a late event in a bucket at or before the horizon is acknowledged but ignored for
that entity (whether its bucket was already counted is no longer known).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Default bound on retained events per entity: the `small` preset's max_position (256) + 1.
DEFAULT_MAX_EVENTS = 257


@dataclass(frozen=True)
class EventRecord:
    """One canonical event ready to be applied.

    Args:
        event_id: globally unique id (the idempotency key).
        event_time: epoch milliseconds (UTC).
        entities: (entity_type, entity_id) of every entity whose history the event joins.
        payload: the canonical row (section 2 of docs/architecture.md): event_id, event_time (epoch ms),
            entity id columns, one value per field, labels; JSON-serialisable.
    """

    event_id: str
    event_time: int
    entities: tuple[tuple[str, str], ...]
    payload: dict[str, Any]

    def sort_key(self) -> tuple[int, str]:
        return (self.event_time, self.event_id)

    def payload_json(self) -> str:
        # NaN stays NaN (a numeric field may allow it); JSON's NaN literal round-trips through json.loads.
        return json.dumps(self.payload, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class EntityHistory:
    """The retained state of one entity.

    Args:
        entity_type, entity_id: the entity.
        events: canonical rows (dicts), ascending (event_time, event_id), at most max_events.
            For an aggregate entity: the raw events of its retained buckets.
        n_events: events ever applied to the entity (>= len(events)); for an aggregate entity the number
            of non-empty buckets.
        version: events that changed the entity's state; any change increments it, so (entity, version)
            identifies the state (what the scorer's cache is keyed on). Equals n_events for raw-event entities.
    """

    entity_type: str
    entity_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    n_events: int = 0
    version: int = 0

    @property
    def first_index(self) -> int:
        """Index of events[0] in the entity's full time-ordered sequence."""
        return self.n_events - len(self.events)

    def count_before(self, event_time: int, event_id: str | None) -> int:
        """Number of retained events strictly before (event_time, event_id); event_id None means
        "strictly before event_time" (every event at that millisecond is excluded)."""
        keys = [(e["event_time"], e["event_id"]) for e in self.events]
        if event_id is None:
            return sum(1 for t, _ in keys if t < event_time)
        return sum(1 for k in keys if k < (event_time, event_id))


@dataclass(frozen=True)
class StoreStats:
    """Sizes for /metrics: entities with at least one event, events applied (distinct event ids),
    and rows retained across all entity windows."""

    n_entities: int
    n_events_applied: int
    n_events_retained: int


class StateStore(abc.ABC):
    """Durable, idempotent per-entity event windows. Implementations must be safe to call from
    several threads of one process (FastAPI's threadpool)."""

    max_events: int
    buckets: dict[str, int]  # aggregate entity type -> bucket width in ms

    @abc.abstractmethod
    def apply(self, events: Sequence[EventRecord]) -> list[bool]:
        """Apply a batch of events atomically and durably.

        Args:
            events: any order; duplicates (within the batch or already applied) are skipped.
        Returns:
            one bool per input event: True if applied now, False if its event_id was already applied.
        """

    @abc.abstractmethod
    def histories(self, refs: Sequence[tuple[str, str]]) -> list[EntityHistory]:
        """Retained events and counts for each (entity_type, entity_id); unknown entities come back
        empty (n_events 0)."""

    @abc.abstractmethod
    def versions(self, refs: Sequence[tuple[str, str]]) -> list[int]:
        """`EntityHistory.version` only (cheap, one round trip): what the scorer's cache is keyed on;
        0 for unknown entities."""

    @abc.abstractmethod
    def applied(self, event_ids: Sequence[str]) -> list[bool]:
        """Whether each event id has been applied."""

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """Sizes for monitoring."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise if the backend is unreachable (used by /healthz)."""

    def close(self) -> None:  # noqa: B027 - optional hook, backends without resources keep the default
        """Release connections."""

    def history(self, entity_type: str, entity_id: str) -> EntityHistory:
        return self.histories([(entity_type, entity_id)])[0]

    def tails(self, refs: Sequence[tuple[str, str]], after: Sequence[tuple[int, str]]) -> list[EntityHistory]:
        """Like `histories`, but `events` holds only the retained events after each (event_time, event_id) key
        (n_events and version as in `histories`): what advancing a cached state needs. Backends override it to
        read less; this default filters `histories`."""
        return [EntityHistory(h.entity_type, h.entity_id, [e for e in h.events if (e["event_time"], e["event_id"]) > key],
                              h.n_events, h.version) for h, key in zip(self.histories(refs), after)]


def dedupe_batch(events: Sequence[EventRecord]) -> tuple[list[int], list[bool]]:
    """Indices of the first occurrence of each event_id, and a per-event flag "first occurrence".

    Within one request the second copy of an id is a duplicate exactly as if it came later.
    """
    seen: set[str] = set()
    first: list[int] = []
    flags: list[bool] = []
    for i, ev in enumerate(events):
        new = ev.event_id not in seen
        flags.append(new)
        if new:
            seen.add(ev.event_id)
            first.append(i)
    return first, flags


def bucket_end(event_time: int, bucket_ms: int) -> int:
    """End (exclusive) of the epoch-aligned bucket holding event_time, as foundation.data.aggregates stamps it."""
    return (event_time // bucket_ms + 1) * bucket_ms


def check_buckets(buckets: dict[str, int] | None) -> dict[str, int]:
    out = dict(buckets or {})
    for etype, width in out.items():
        if not isinstance(width, int) or width <= 0:
            raise ValueError(f"bucket width of aggregate entity {etype!r} must be a positive int (ms), got {width!r}")
    return out


def check_max_events(max_events: int) -> int:
    if not isinstance(max_events, int) or max_events < 2:
        raise ValueError(f"state.max_events must be an integer >= 2, got {max_events!r}")
    return max_events


def time_key_string(event_time: int) -> str:
    """Fixed-width string of a time whose lexicographic order is numeric order (Redis lex ranges)."""
    shifted = event_time + 10**15
    if not 0 <= shifted < 10**16:
        raise ValueError(f"event_time {event_time} ms is out of the supported range")
    return f"{shifted:016d}"


def sort_key_string(event_time: int, event_id: str) -> str:
    """A string whose lexicographic order is (event_time, event_id) order (for Redis ZRANGEBYLEX).

    event_time is offset to be non-negative and zero-padded to a fixed width; event ids compare by code
    point after the separator, as Python and pyarrow compare strings.
    """
    return f"{time_key_string(event_time)}|{event_id}"


def group_by_entity(events: Iterable[EventRecord]) -> dict[tuple[str, str], list[EventRecord]]:
    """Events per entity (insertion order kept)."""
    out: dict[tuple[str, str], list[EventRecord]] = {}
    for ev in events:
        for ref in ev.entities:
            out.setdefault(ref, []).append(ev)
    return out
