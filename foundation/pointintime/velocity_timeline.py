"""The vectorised machinery under the velocity features: per-entity timelines and window lookups.

Every feature is a function of "the entity's events before e", so each entity type's events are sorted once
by (entity, event_time, event_id) and each window is a range [start, i) of that order found with one
np.searchsorted. Sums are differences of prefix sums; maxima come from a sparse table built level by level;
"how many earlier events cover position i" counts (distinct counterparties, labels that landed) come from
intervals added to a difference array. No Python loop runs over events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.evaluation.splits import to_timedelta


def as_string(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """A column as strings (ids read as float, e.g. 12.0, keep their integer spelling)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        if pa.types.is_floating(column.type):
            column = pc.cast(column, pa.int64())
        column = pc.cast(column, pa.string())
    return pa.chunked_array([column]) if isinstance(column, pa.Array) else column


def in_values(events: pa.Table, name: str | None, values: Sequence[str]) -> np.ndarray | None:
    """(N,) bool: the field is one of values; None when the table lacks the field."""
    if name is None or name not in events.column_names:
        return None
    mask = pc.is_in(as_string(events.column(name)), value_set=pa.array(list(values), pa.string()))
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def entity_codes(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(N,) int64 dense codes of the entity ids; -1 where null."""
    encoded = pc.dictionary_encode(as_string(ids).combine_chunks())
    return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)


def to_ms(window: str) -> int:
    """A duration string ("1h", "7d") in milliseconds."""
    return int(to_timedelta(window, "velocity window") / np.timedelta64(1, "ms"))


def prefix(values: np.ndarray) -> np.ndarray:
    """(N + 1,) float64 cumulative sums with a leading 0, so sums over [a, b) are prefix[b] - prefix[a]."""
    return np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])


def global_rank(events: pa.Table) -> np.ndarray:
    """(N,) rank of each event in (event_time, event_id) order."""
    table = pa.table({"t": pc.cast(events.column("event_time"), pa.timestamp("ms")),
                      "id": as_string(events.column("event_id"))})
    order = pc.sort_indices(table, sort_keys=[("t", "ascending"), ("id", "ascending")]).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


class EntityTimeline:
    """One entity type's events sorted by (entity, event_time, event_id), with window lookups.

    Positions are in the sorted order; the events before sorted position i are [group_start[i], i).
    Lookups search one int64 key, entity * span + time, where span exceeds the time range plus the longest
    window or delay, so a window never reaches into the neighbouring entity; `rank_key` (entity * N + global
    rank) is strictly increasing and places an event exactly, ties in time included.
    """

    def __init__(self, codes: np.ndarray, times: np.ndarray, order_rank: np.ndarray, span: int):
        # order_rank: (N,) rank of each event in the global (event_time, event_id) order, a permutation
        n = len(codes)
        if (int(codes.max(initial=0)) + 2) * span >= 2**62:
            raise ValueError(f"velocity: {int(codes.max(initial=0)) + 1} entities x a time span of {span} ms "
                             "overflow the int64 window key; split the table by time")
        self.n = n
        self.order = np.argsort(codes * n + order_rank, kind="stable")  # (N,) original row per position
        self.codes = codes[self.order]
        self.times = times[self.order]
        self.rank_key = self.codes * n + order_rank[self.order]
        self.key = self.codes * span + (self.times - times.min(initial=0))
        self.group_start = np.searchsorted(self.key, self.codes * span, side="left")
        self.known = self.codes >= 0

    def window_start(self, window_ms: int) -> np.ndarray:
        """(N,) first sorted position of the same entity with event_time >= t - window (nondecreasing)."""
        return np.searchsorted(self.key, self.key - window_ms, side="left")

    def sorted(self, values: np.ndarray) -> np.ndarray:
        """Per-row values in the timeline's order."""
        return values[self.order]

    def to_rows(self, sorted_block: np.ndarray) -> np.ndarray:
        """Scatter a (N, k) block of per-sorted-position values back to the original row order."""
        out = np.empty_like(sorted_block)
        out[self.order] = sorted_block
        return out


def range_max(values: np.ndarray, starts: Sequence[np.ndarray], end: np.ndarray) -> list[np.ndarray]:
    """max(values[s:e]) for every query [s, e) of each start array (-inf when empty).

    A sparse table built one level at a time (level k holds maxima of 2**k consecutive values), so memory
    stays O(N) while every query is answered at the level of its length: max of two overlapping blocks.

    Args:
        values: (N,) float64.
        starts: arrays of (N,) query starts, one per window.
        end: (N,) query ends (exclusive), shared by the windows.
    Returns:
        One (N,) float64 array per start array.
    """
    lengths = [end - s for s in starts]
    levels = [np.where(length > 0, np.floor(np.log2(np.maximum(length, 1))), -1).astype(np.int64)
              for length in lengths]
    outs = [np.full(len(end), -np.inf) for _ in starts]
    top = max((int(level.max(initial=-1)) for level in levels), default=-1)
    table = np.asarray(values, dtype=np.float64)
    for k in range(top + 1):
        width = 1 << k
        for start, level, out in zip(starts, levels, outs):
            hit = np.flatnonzero(level == k)
            if len(hit):
                out[hit] = np.maximum(table[start[hit]], table[end[hit] - width])
        if k < top:  # next level: table[p] = max(values[p : p + 2 * width])
            table = np.maximum(table[:-width], table[width:])
    return outs


def covered(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """(N,) how many intervals [starts[j], ends[j]) contain each position 0..n-1 (empty ones ignored)."""
    keep = starts < ends
    diff = (np.bincount(starts[keep], minlength=n + 1)[: n + 1]
            - np.bincount(ends[keep], minlength=n + 1)[: n + 1])
    return np.cumsum(diff)[:n]


def previous_same(group_key: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N,) the previous valid position with the same group key (e.g. the same entity/counterparty pair); -1 if none.

    Positions are taken in ascending order, so "previous" follows the timeline's (entity, time, id) order.
    """
    positions = np.flatnonzero(valid)
    order = positions[np.argsort(group_key[positions], kind="stable")]
    keys = group_key[order]
    previous = np.full(len(group_key), -1, dtype=np.int64)
    same = keys[1:] == keys[:-1]
    previous[order[1:][same]] = order[:-1][same]
    return previous
