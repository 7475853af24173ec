"""The window rule of point-in-time states, for one event and for whole sequences at once.

`window_start` is the one rule, called by the online scorer for one event and by the batch path here: the
state of event i is the causal encoder's output over [window_start(i), i]. `plan_windows` / `block_windows`
turn it into batch plans: which causal passes give the exact state of a set of events. All events of a block
[kS, (k+1)S) (S = max_len // 2) share one window start, so one pass over [window_start(kS), last needed
event of the block] serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def window_start(i: int | np.ndarray, max_len: int) -> int | np.ndarray:
    """First event of the window of event i: max(0, (i // S) * S - (max_len - S)), S = max_len // 2.

    Every event of the block [kS, (k+1)S) shares one start, so one causal pass over
    [kS - (max_len - S), (k+1)S) gives the exact state of every event in the block, and the window never
    exceeds max_len events.

    Args:
        i: event index (or (N,) array of indices) in the entity's full time-ordered sequence.
        max_len: the model's max_position.
    """
    stride = max(max_len // 2, 1)
    start = (np.asarray(i) // stride) * stride - (max_len - stride)
    out = np.maximum(start, 0)
    return int(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class WindowPlan:
    """Causal passes that give the states of a set of (row, position) queries.

    Attributes:
        rows: (W,) sequence row of each window.
        starts: (W,) first event of each window (`window_start` of its block).
        counts: (W,) events in each window (ends at the last queried event of its block).
        window: (Q,) window index of each query.
        offset: (Q,) position of each query inside its window (its state is the hidden state there).
    """

    rows: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    window: np.ndarray
    offset: np.ndarray

    @property
    def n_tokens(self) -> int:
        """Events the passes read in total (the cost of the plan)."""
        return int(self.counts.sum())


def plan_windows(rows: np.ndarray, positions: np.ndarray, max_len: int) -> WindowPlan:
    """The fewest block windows that hold the exact state of every queried event.

    Args:
        rows: (Q,) int sequence row of each query.
        positions: (Q,) int index of the event in its row's full sequence (>= 0).
        max_len: the model's max_position.
    Returns:
        WindowPlan: one window per (row, block) holding a query, ending at the block's last queried event.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if rows.shape != positions.shape:
        raise ValueError(f"rows {rows.shape} and positions {positions.shape} must have the same shape")
    if positions.size and positions.min() < 0:
        raise ValueError("positions must be >= 0 (a query without history has no window)")
    stride = max(max_len // 2, 1)
    block = positions // stride
    n_blocks = int(block.max(initial=0)) + 1
    key = rows * n_blocks + block  # (Q,) one id per (row, block)
    keys, window = np.unique(key, return_inverse=True)
    last = np.full(len(keys), -1, dtype=np.int64)
    np.maximum.at(last, window, positions)
    w_rows = keys // n_blocks
    starts = np.asarray(window_start(last, max_len), dtype=np.int64).reshape(-1)
    return WindowPlan(w_rows, starts, last - starts + 1, window.astype(np.int64), positions - starts[window])


def block_windows(lengths: np.ndarray, max_len: int) -> WindowPlan:
    """Windows for every event of every row: one per block, each ~max_len events (about 2x one pass).

    Args:
        lengths: (R,) sequence lengths.
        max_len: the model's max_position.
    Returns:
        WindowPlan whose queries are all events, row by row in order (Q = lengths.sum()).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    positions = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return plan_windows(rows, positions, max_len)
