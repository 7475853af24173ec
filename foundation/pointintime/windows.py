"""The section-8 window rule, applied to whole sequences at once (docs/architecture.md section 8).

The rule itself lives in one place, `foundation.serving.features.window_start`, which the online scorer
calls for one event; this module re-exports it and turns it into the batch plan: which causal passes give
the exact point-in-time state of a set of events. All events of a block [kS, (k+1)S) (S = max_len // 2)
share one window start, so one pass over [window_start(kS), last needed event of the block] serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundation.serving.features import window_start

__all__ = ["WindowPlan", "block_windows", "plan_windows", "window_start"]


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
    """The fewest section-8 windows that hold the exact state of every queried event.

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
