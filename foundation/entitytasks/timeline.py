"""`EntityTimeline`: the events of one entity type sorted by (entity, time), with window sums as of any date.

Window sums are differences of cumulative sums at two `searchsorted` positions over one int64 key
(entity code, time), so a million (entity, date) queries cost a few vectorised passes, no per-row loop. A window
is half-open on the left and closed on the right, `(start, end]`: the features of an as-of date read `(as_of - w,
as_of]`, its target `(as_of, as_of + horizon]`, and no event sits in both.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.entitytasks.spec import Selection


def selection_mask(events: pa.Table, selection: Selection) -> np.ndarray:
    """(N,) bool: the events a selection counts (every event when it names no field)."""
    if selection.field is None:
        return np.ones(events.num_rows, dtype=bool)
    column = pc.cast(events.column(selection.field), pa.string())
    found = pc.is_in(column, value_set=pa.array(list(selection.values), pa.string()))
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)


def epoch_ms(times: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(N,) int64 epoch milliseconds of a timestamp column."""
    return pc.cast(pc.cast(times, pa.timestamp("ms")), pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)


class EntityTimeline:
    """The events of one entity type (those with a non-null id), sorted by (entity id, event time).

    Args:
        events: the canonical events table (`<entity>_id`, `event_time`, the schema's fields and labels).
        entity: the entity type.
    """

    def __init__(self, events: pa.Table, entity: str):
        ids = pc.cast(events.column(f"{entity}_id"), pa.string()).combine_chunks()
        valid = np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        self.rows = np.flatnonzero(valid)  # positions in `events` of the entity's events
        encoded = ids.filter(pa.array(valid)).dictionary_encode()
        self.ids = encoded.dictionary  # (E,) entity ids; code = position
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        times = epoch_ms(events.column("event_time"))[self.rows]
        self.t_min = int(times.min()) if len(times) else 0
        self.span = (int(times.max()) - self.t_min + 3) if len(times) else 3
        order = np.lexsort((times, codes))
        self.rows, self.codes, self.times = self.rows[order], codes[order], times[order]
        self.key = self.codes * self.span + (self.times - self.t_min + 1)

    @property
    def n_events(self) -> int:
        return len(self.times)

    def codes_of(self, entity_ids: pa.Array | np.ndarray | list) -> np.ndarray:
        """(Q,) int64 entity codes of ids (-1: the entity has no event)."""
        ids = pc.cast(pa.array(entity_ids) if not isinstance(entity_ids, (pa.Array, pa.ChunkedArray))
                      else entity_ids, pa.string())
        return pc.fill_null(pc.index_in(ids, value_set=self.ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def _position(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(Q,) how many sorted events have key <= (code, time): the entity's events up to `time`, inclusive."""
        rel = np.clip(np.asarray(times, np.int64) - self.t_min + 1, 0, self.span - 1)
        return np.searchsorted(self.key, np.maximum(codes, 0) * self.span + rel, side="right")

    def event_values(self, values: np.ndarray) -> np.ndarray:
        """Per-event values of the `events` table (N,) reordered to the timeline's sorted events."""
        return np.asarray(values)[self.rows]

    def sums(self, values: np.ndarray) -> WindowSums:
        """Window sums of per-event `values` in timeline order (e.g. `event_values(mask)`), summed once."""
        return WindowSums(self, np.r_[0.0, np.cumsum(np.asarray(values, dtype=np.float64))])

    def window_sum(self, codes: np.ndarray, start: np.ndarray, end: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(Q,) sum of `values` (timeline order) over each entity's events with time in (start, end]."""
        return self.sums(values).over(codes, start, end)

    def first_last(self, codes: np.ndarray, as_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q,) times of each entity's first event and its last event at or before `as_of` (-1: none yet)."""
        first_pos = np.searchsorted(self.key, np.maximum(codes, 0) * self.span, side="left")
        last_pos = self._position(codes, as_of) - 1
        has = (codes >= 0) & (last_pos >= first_pos) & (first_pos < self.n_events)
        first = np.where(has, self.times[np.minimum(first_pos, self.n_events - 1)], -1)
        last = np.where(has, self.times[np.clip(last_pos, 0, self.n_events - 1)], -1)
        return first, last


class WindowSums:
    """Cumulative sums of per-event values over an `EntityTimeline`: any window sum is two lookups."""

    def __init__(self, timeline: EntityTimeline, cumulative: np.ndarray):
        self.timeline, self.cumulative = timeline, cumulative

    def over(self, codes: np.ndarray, start: np.ndarray | int, end: np.ndarray | int) -> np.ndarray:
        """(Q,) sums over each entity's events with time in (start, end]; 0 for unknown entities (code -1)."""
        start = np.broadcast_to(np.asarray(start, np.int64), codes.shape)
        end = np.broadcast_to(np.asarray(end, np.int64), codes.shape)
        position = self.timeline._position
        total = self.cumulative[position(codes, end)] - self.cumulative[position(codes, start)]
        return np.where(codes >= 0, total, 0.0)
