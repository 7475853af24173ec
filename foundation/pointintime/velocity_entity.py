"""The entity's own history before an attempt: windowed counts and amounts, counterparties, recency.

For the event at sorted position i of an entity timeline (`velocity_timeline.EntityTimeline`) and each window
w, over the entity's attempts in [t - w, t) strictly before the event:
- `<entity>_count_<w>`, `<entity>_amount_<w>` (sum), `<entity>_amount_mean_<w>`, `<entity>_amount_max_<w>`;
- `<entity>_distinct_<counterparty>_<w>`: distinct counterparties (merchants of a customer, customers of a
  merchant), counted as attempts in the window minus repeats: attempt j repeats a pair seen at prev(j) and
  is a repeat for every query whose window still holds prev(j), an interval of positions since window
  starts never decrease;
- `<entity>_count_total`, `<entity>_hours_since_last` (the previous attempt), and against the longest
  window: `<entity>_amount_vs_mean_<w>` and `<entity>_amount_z_<w>` of the event's amount.
Pair features (`<a>_<b>_pair_count`, `<a>_<b>_first_pair`): attempts of the same pair before the event.
"""

from __future__ import annotations

import numpy as np

from foundation.pointintime.velocity_config import VelocityConfig
from foundation.pointintime.velocity_timeline import (
    EntityTimeline,
    covered,
    prefix,
    previous_same,
    range_max,
    to_ms,
)


def window_features(
    entity: str,
    line: EntityTimeline,
    attempts: np.ndarray,
    amount: np.ndarray | None,
    counterparties: dict[str, np.ndarray],
    config: VelocityConfig,
) -> dict[str, np.ndarray]:
    """The entity's windowed history before each event, in the timeline's sorted order.

    Args:
        entity: entity type (the feature name prefix).
        line: the entity's timeline.
        attempts: (N,) bool per row: events the windows count.
        amount: (N,) float64 per row (NaN -> 0), or None.
        counterparties: counterparty entity type -> (N,) int64 codes per row (-1 = missing).
        config: windows to compute.
    Returns:
        feature name -> (N,) values per sorted position.
    """
    n = line.n
    position = np.arange(n)
    counted = line.sorted(attempts)
    count_prefix = prefix(counted)
    amounts = line.sorted(amount) if amount is not None else None
    amount_prefix = prefix(amounts * counted) if amounts is not None else None
    starts = [line.window_start(to_ms(w)) for w in config.windows]
    maxima = range_max(np.where(counted, amounts, -np.inf), starts, position) if amounts is not None else None
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, (window, start) in enumerate(zip(config.windows, starts)):
            count = count_prefix[position] - count_prefix[start]
            out[f"{entity}_count_{window}"] = count
            if amount_prefix is not None:
                total = amount_prefix[position] - amount_prefix[start]
                out[f"{entity}_amount_{window}"] = total
                out[f"{entity}_amount_mean_{window}"] = np.where(count > 0, total / count, np.nan)
                out[f"{entity}_amount_max_{window}"] = np.where(np.isfinite(maxima[j]), maxima[j], np.nan)
        for other, codes in counterparties.items():
            out.update(_distinct(entity, other, line, counted, line.sorted(codes), starts, config.windows))
    out[f"{entity}_count_total"] = count_prefix[position] - count_prefix[line.group_start]
    # the entity's previous attempt: the latest attempt position before i (running max of attempt positions)
    last_attempt = np.maximum.accumulate(np.where(counted, position, -1))
    previous = np.r_[-1, last_attempt[:-1]]
    has_previous = previous >= line.group_start
    gap_ms = line.times - line.times[np.maximum(previous, 0)]
    out[f"{entity}_hours_since_last"] = np.where(has_previous, gap_ms / 3_600_000.0, np.nan)
    if amounts is not None and config.windows:
        out.update(_against_history(entity, line, counted, amounts, config))
    return out


def _against_history(entity: str, line: EntityTimeline, counted: np.ndarray, amounts: np.ndarray,
                     config: VelocityConfig) -> dict[str, np.ndarray]:
    """The event's amount against the mean and spread of the entity's attempts in the longest window."""
    longest = max(config.windows, key=to_ms)
    position = np.arange(line.n)
    start = line.window_start(to_ms(longest))
    count_prefix, sum_prefix = prefix(counted), prefix(amounts * counted)
    square_prefix = prefix(amounts * amounts * counted)
    count = count_prefix[position] - count_prefix[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, (sum_prefix[position] - sum_prefix[start]) / count, np.nan)
        variance = np.maximum((square_prefix[position] - square_prefix[start]) / count - mean * mean, 0.0)
        spread = np.sqrt(variance * count / np.maximum(count - 1, 1))  # sample standard deviation
        z = np.where((count >= 2) & (spread > 1e-9 * np.abs(mean)), (amounts - mean) / spread, np.nan)
        return {f"{entity}_amount_vs_mean_{longest}": amounts / mean, f"{entity}_amount_z_{longest}": z}


def _distinct(entity: str, other: str, line: EntityTimeline, counted: np.ndarray, codes: np.ndarray,
              starts: list[np.ndarray], windows: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Distinct counterparties among the entity's attempts in each window (sorted order)."""
    n = line.n
    position = np.arange(n)
    valid = counted & (codes >= 0) & line.known
    valid_prefix = prefix(valid)
    previous = previous_same(line.codes * (int(codes.max(initial=0)) + 1) + codes, valid)
    repeats = np.flatnonzero(previous >= 0)
    out = {}
    for window, start in zip(windows, starts):
        # attempt j repeats a pair for queries i > j whose window start is still <= previous[j]
        until = np.searchsorted(start, previous[repeats], side="right")
        repeated = covered(repeats + 1, until, n)
        in_window = valid_prefix[position] - valid_prefix[start]
        out[f"{entity}_distinct_{other}_{window}"] = in_window - repeated
    return out


def pair_features(first: str, second: str, codes_a: np.ndarray, codes_b: np.ndarray, rank: np.ndarray,
                  attempts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """How often entity `first` made an attempt with counterparty `second` before each event.

    Args:
        first, second: entity types (e.g. customer, merchant).
        codes_a, codes_b: (N,) int64 codes per row (-1 = missing: the row's features are NaN).
        rank: (N,) global (event_time, event_id) rank per row.
        attempts: (N,) bool per row: events that count.
    Returns:
        (names, (N, 2) float32 per row): `<a>_<b>_pair_count` and `<a>_<b>_first_pair` (count == 0).
    """
    n = len(rank)
    valid = (codes_a >= 0) & (codes_b >= 0)
    rows = np.flatnonzero(valid)
    pair = codes_a[rows] * (int(codes_b.max(initial=0)) + 1) + codes_b[rows]
    by_pair = np.lexsort((rank[rows], pair))
    order, keys = rows[by_pair], pair[by_pair]  # (M,) rows by (pair, time, id)
    counted = prefix(attempts[order])
    group_start = np.searchsorted(keys, keys, side="left")
    before = counted[np.arange(len(order))] - counted[group_start]
    block = np.full((n, 2), np.nan, dtype=np.float32)
    block[order, 0] = before
    block[order, 1] = before == 0
    return [f"{first}_{second}_pair_count", f"{first}_{second}_first_pair"], block
