"""Customers (one card each), drawn a block at a time from the block's own random streams.

A block is `config.block_customers` consecutive customers; every random number a block uses comes from
`block_rng(seed, block, stream)`, so a block's events do not depend on how blocks are grouped into files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundation.data.synthetic.catalog import CATEGORIES, COUNTRIES, PAY_SCHEDULE_WEIGHTS
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.world import DAY_MS, World

MAX_TRIPS = 3
# Random streams of a block, one per stage, so switching a pattern off leaves the other stages unchanged.
(STREAM_CUSTOMERS, STREAM_PURCHASES, STREAM_SUBSCRIPTIONS, STREAM_TRIPS, STREAM_CARD_TESTING, STREAM_TAKEOVER,
 STREAM_COMPROMISE, STREAM_AUTHORIZATION, STREAM_FOLLOWUPS, STREAM_TABLE, STREAM_REPLAY, STREAM_DORMANT) = range(1, 13)
# Refunds, fraud and disputes on top of purchases, subscriptions and trips (used to aim at n_events).
OVERHEAD_SHARE = 0.05


def block_rng(seed: int, block: int, stream: int) -> np.random.Generator:
    """Random stream `stream` of block `block` (independent of every other block and stream)."""
    return np.random.default_rng([seed, 1, block, stream])


def sample_rows(cum: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws with per-row probabilities, without materialising a (N, K) matrix.

    Args:
        cum: (R, K) cumulative probabilities per row (last column 1).
        row: (N,) row of `cum` each draw uses.
        u: (N,) uniforms in [0, 1).

    Returns:
        (N,) int64 category indices in [0, K).
    """
    n_rows, k = cum.shape
    # Row r occupies [r, r + 1) on one increasing axis, so a single searchsorted serves every row.
    flat = (cum + np.arange(n_rows)[:, None]).ravel()
    index = np.searchsorted(flat, row + u, side="right") - row * k
    return np.clip(index, 0, k - 1)


@dataclass
class CustomerBlock:
    """Attributes of the `size` customers of one block; row i is global customer `first + i`.

    Times are ms since the period start; `K` categories.
    """

    block: int
    first: int
    size: int
    issuer: np.ndarray  # (n,) issuer index
    country: np.ndarray  # (n,) home country = card country
    start: np.ndarray  # (n,) card active from (ms)
    end: np.ndarray  # (n,) card active until (ms, exclusive)
    rate: np.ndarray  # (n,) ordinary purchases per active day
    log_spend: np.ndarray  # (n,) log multiplier of amounts
    online: np.ndarray  # (n,) multiplier of the category's online share
    cat_cum: np.ndarray  # (n, K) cumulative category preferences
    favourite: np.ndarray  # (n, K, 2) favourite merchant per (category, online)
    trip_start: np.ndarray  # (n, MAX_TRIPS) ms; -1 when no trip
    trip_end: np.ndarray  # (n, MAX_TRIPS)
    trip_country: np.ndarray  # (n, MAX_TRIPS)
    schedule: np.ndarray  # (n,) pay schedule index
    tightness: np.ndarray  # (n,) income per period / mean spending per period
    period_noise: np.ndarray  # (n, P) income multiplier per pay period
    initial_savings: np.ndarray  # (n,) savings at the start, as a share of the cap


def expected_active_days(config: SyntheticConfig, period_ms: int) -> float:
    """Mean active span of a card in days (late starts are uniform in the first 90%, early ends uniform)."""
    p = config.customers
    mean_remaining = 1.0 - 0.45 * p.late_start_share
    return period_ms / DAY_MS * mean_remaining * (1.0 - p.early_end_share / 2)


def purchase_rate(config: SyntheticConfig, period_ms: int) -> float:
    """Mean ordinary purchases per active day so that the total is about `config.n_events`."""
    days = expected_active_days(config, period_ms)
    p = config.customers
    per_customer = config.n_events / config.n_customers / (1.0 + OVERHEAD_SHARE)
    fixed = p.subscriptions_mean * days / 30.44 + 2 * p.trips_per_year * days / 365.0
    if per_customer - fixed < 0.2 * per_customer:
        raise ValueError(
            f"synthetic config: `n_events` ({config.n_events}) is too small for `n_customers` "
            f"({config.n_customers}): subscriptions and trips alone make ~{fixed:.1f} events per customer")
    return (per_customer - fixed) / days


def draw_customers(config: SyntheticConfig, world: World, block: int) -> CustomerBlock:
    """Draw the customers of block `block`.

    Args:
        config: generator config.
        world: the shared world.
        block: block index; customers `[block * block_customers, ...)`.

    Returns:
        The block's customers.
    """
    p = config.customers
    first = block * config.block_customers
    n = min(config.block_customers, config.n_customers - first)
    rng = block_rng(config.seed, block, STREAM_CUSTOMERS)
    T = world.period_ms
    issuer = np.searchsorted(world.issuer_cum, rng.random(n), side="right").clip(0, len(world.issuer_cum) - 1)
    country = world.issuer_country[issuer]

    late = rng.random(n) < p.late_start_share
    start = np.where(late, rng.random(n) * 0.9 * T, 0).astype(np.int64)
    early = rng.random(n) < p.early_end_share
    end = np.where(early, start + rng.random(n) * (T - start), T).astype(np.int64)
    end = np.maximum(end, np.minimum(start + 7 * DAY_MS, T))

    activity = rng.lognormal(-p.activity_sigma**2 / 2, p.activity_sigma, n)
    rate = purchase_rate(config, T) * activity
    log_spend = rng.normal(-p.spend_sigma**2 / 2, p.spend_sigma, n)
    online = rng.lognormal(-p.online_sigma**2 / 2, p.online_sigma, n)

    # Dirichlet tastes: small categories get a heavy tail (a few customers buy crypto weekly).
    alpha = p.category_concentration * world.cat_weight
    taste = np.zeros((n, len(CATEGORIES)))
    buyable = alpha > 0
    taste[:, buyable] = rng.gamma(alpha[buyable], size=(n, int(buyable.sum())))
    taste[taste.sum(axis=1) == 0] = world.cat_weight  # every draw underflowed (tiny concentration)
    taste /= taste.sum(axis=1, keepdims=True)
    cat_cum = np.cumsum(taste, axis=1)

    n_cat = len(CATEGORIES)
    fav_cat = np.broadcast_to(np.arange(n_cat)[None, :, None], (n, n_cat, 2)).ravel()
    fav_online = np.broadcast_to(np.arange(2)[None, None, :], (n, n_cat, 2)).ravel()
    fav_country = np.broadcast_to(country[:, None, None], (n, n_cat, 2)).ravel()
    favourite = world.pick_merchant(rng.random(fav_cat.size), fav_cat, fav_online, fav_country).reshape(n, n_cat, 2)

    trips = _trips(config, world, rng, country, start, end)
    schedule = np.searchsorted(np.cumsum(PAY_SCHEDULE_WEIGHTS), rng.random(n) * sum(PAY_SCHEDULE_WEIGHTS),
                               side="right").clip(0, len(PAY_SCHEDULE_WEIGHTS) - 1)
    f = config.funds
    tight = rng.random(n) < f.tight_share
    tightness = np.where(tight, rng.uniform(f.tight_income_min, f.tight_income_max, n),
                         rng.uniform(f.loose_income_min, f.loose_income_max, n))
    n_periods = max(len(d) for d in world.paydays) + 1
    period_noise = rng.lognormal(-f.period_sigma**2 / 2, f.period_sigma, (n, n_periods))
    return CustomerBlock(block=block, first=first, size=n, issuer=issuer, country=country, start=start, end=end,
                         rate=rate, log_spend=log_spend, online=online, cat_cum=cat_cum, favourite=favourite,
                         schedule=schedule, tightness=tightness, period_noise=period_noise,
                         initial_savings=rng.random(n), **trips)


def _trips(config: SyntheticConfig, world: World, rng: np.random.Generator, country: np.ndarray,
           start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """Up to MAX_TRIPS trips abroad per customer (legitimate country shifts that confound takeovers)."""
    p = config.customers
    n = len(country)
    years = (end - start) / (365.0 * DAY_MS)
    propensity = rng.lognormal(-0.5, 1.0, n)
    n_trips = np.minimum(rng.poisson(p.trips_per_year * years * propensity), MAX_TRIPS)
    duration = rng.uniform(p.trip_days_min, p.trip_days_max, (n, MAX_TRIPS)) * DAY_MS
    span = np.maximum(end - start, 1)[:, None] - duration
    t0 = start[:, None] + rng.random((n, MAX_TRIPS)) * np.maximum(span, 0)
    weights = np.broadcast_to(world.travel_p, (n, len(COUNTRIES))).copy()
    weights[np.arange(n), country] = 0.0
    cum = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n), MAX_TRIPS)
    dest = sample_rows(cum, rows, rng.random(n * MAX_TRIPS)).reshape(n, MAX_TRIPS)
    has = np.arange(MAX_TRIPS)[None, :] < n_trips[:, None]
    return dict(trip_start=np.where(has, t0, -1).astype(np.int64),
                trip_end=np.where(has, np.minimum(t0 + duration, end[:, None]), -1).astype(np.int64),
                trip_country=np.where(has, dest, -1))
