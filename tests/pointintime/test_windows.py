"""The section-8 window plans: every queried state comes from its own window_start, windows never exceed
max_len, and every-event plans cost about two passes."""

import numpy as np
import pytest

from foundation.pointintime import block_windows, plan_windows, window_start


@pytest.mark.parametrize("max_len", [8, 9, 64])
def test_each_query_reads_its_section8_window(max_len):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 5, 300)
    positions = rng.integers(0, 400, 300)
    plan = plan_windows(rows, positions, max_len)
    start = plan.starts[plan.window]
    np.testing.assert_array_equal(start, window_start(positions, max_len))
    np.testing.assert_array_equal(plan.rows[plan.window], rows)
    np.testing.assert_array_equal(start + plan.offset, positions)
    assert np.all(plan.offset < plan.counts[plan.window])  # the query lies inside its window
    assert plan.counts.max() <= max_len
    # one window per (row, block) that holds a query
    stride = max_len // 2
    assert len(plan.rows) == len({(r, p // stride) for r, p in zip(rows, positions)})


def test_every_event_plan_costs_about_two_passes():
    lengths = np.array([1, 7, 8, 9, 100, 257, 0])
    plan = block_windows(lengths, 64)
    assert len(plan.window) == lengths.sum()
    assert plan.counts.max() <= 64
    assert plan.n_tokens <= 2 * lengths.sum()
    positions = np.concatenate([np.arange(n) for n in lengths])
    np.testing.assert_array_equal(plan.starts[plan.window] + plan.offset, positions)


def test_bad_queries_are_refused():
    with pytest.raises(ValueError, match="positions must be >= 0"):
        plan_windows(np.array([0]), np.array([-1]), 8)
    with pytest.raises(ValueError, match="same shape"):
        plan_windows(np.array([0, 1]), np.array([3]), 8)
