"""The planted fraud patterns. Each is visible only through the card's sequence of events.

1. Card testing (`card_testing`): a burst of tiny ecommerce attempts seconds apart at one of a few small
   merchants, most declined (wrong CVV/expiry, velocity), then a few large cash-outs hours later.
2. Account takeover (`takeover`): for a few days a fraudster uses the card from another country, at
   fraud-prone categories, at several times the owner's usual amounts; the owner keeps transacting.
3. Compromised merchants (`compromise`): cards used at a merchant during its compromise window are, with
   some probability, used by fraudsters days to weeks later (cloned card abroad or ecommerce).
Parameters: `CardTestingParams`, `AccountTakeoverParams`, `CompromiseParams` in config.py. Patterns that
per-event fields and counts barely see (replay, dormant reactivation) live in sequence_fraud.py.
"""

from __future__ import annotations

import numpy as np

from foundation.data.synthetic.attempts import (
    CARD_TESTING,
    CASHOUT,
    COMPROMISE,
    TAKEOVER,
    Attempts,
    group_cumsum,
)
from foundation.data.synthetic.catalog import CARD_PRESENT, ECOMMERCE
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import (
    STREAM_CARD_TESTING,
    STREAM_COMPROMISE,
    STREAM_TAKEOVER,
    CustomerBlock,
    block_rng,
    sample_rows,
)
from foundation.data.synthetic.world import ANY_COUNTRY, DAY_MS, HOUR_MS, HOUR_TABLE_SIZE, World

MINUTE_MS = 60_000


def _fraud_categories(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    cum = np.cumsum(world.cat_fraud_p)
    return np.searchsorted(cum, rng.random(n) * cum[-1], side="right").clip(0, len(cum) - 1)


def _foreign_countries(world: World, rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """One fraud-weighted country per row, never the row's home country."""
    weights = np.broadcast_to(world.fraud_country_p, (len(home), len(world.fraud_country_p))).copy()
    weights[np.arange(len(home)), home] = 0.0
    cum = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    return sample_rows(cum, np.arange(len(home)), rng.random(len(home)))


def local_daytime(world: World, rng: np.random.Generator, time: np.ndarray, merchant: np.ndarray) -> np.ndarray:
    """Keep each attempt's day but draw its hour from the category's profile in the merchant's local time.

    Fraudsters shop when shops are open where they are: a card used abroad at 4 am is not given away by
    its hour alone, only by where and how it differs from the card's history.
    """
    offset = world.country_offset_ms[world.merchant_country[merchant]]
    day = (time + offset) // DAY_MS
    slot = (rng.random(len(time)) * HOUR_TABLE_SIZE).astype(np.int64)
    hour = world.cat_hour_table[world.merchant_cat[merchant], slot]
    return day * DAY_MS + hour * HOUR_MS + (rng.random(len(time)) * HOUR_MS).astype(np.int64) - offset


def card_testing(config: SyntheticConfig, world: World, cb: CustomerBlock) -> Attempts:
    """Pattern 1: bursts of $0.5-2 ecommerce attempts on a card, then large cash-out charges."""
    p = config.card_testing
    rng = block_rng(config.seed, cb.block, STREAM_CARD_TESTING)
    span = cb.end - cb.start - 3 * DAY_MS
    victim = np.nonzero((rng.random(cb.size) < p.card_rate) & (span > 0))[0]
    v = len(victim)
    t0 = cb.start[victim] + (rng.random(v) * span[victim]).astype(np.int64)
    k = rng.integers(p.attempts_min, p.attempts_max + 1, v)
    # At least a second between attempts: scripts wait for the previous response.
    offset = group_cumsum(rng.exponential(p.seconds_between_mean * 1000.0, int(k.sum())) + 1000.0, k)
    burst_time = np.repeat(t0, k) + offset.astype(np.int64)
    tester = world.testing_merchants[rng.integers(0, len(world.testing_merchants), v)]
    burst_amount = np.round(rng.uniform(p.amount_min, p.amount_max, int(k.sum())), 2)
    burst = Attempts.build(np.repeat(victim, k), burst_time, np.repeat(tester, k), burst_amount, ECOMMERCE,
                           CARD_TESTING)

    # Cash-out once the card is known to work: hours later, a few large charges close together.
    burst_end = burst_time[np.cumsum(k) - 1] if v else t0
    delay = np.exp(np.log(p.cashout_delay_hours_median * HOUR_MS) + 0.8 * rng.standard_normal(v))
    first = burst_end + np.clip(delay, 10 * MINUTE_MS, 3 * DAY_MS).astype(np.int64)
    c = rng.integers(p.cashout_min, p.cashout_max + 1, v)
    gaps = rng.exponential(p.cashout_gap_minutes_mean * MINUTE_MS, int(c.sum()))
    customer = np.repeat(victim, c)
    time = np.repeat(first, c) + group_cumsum(gaps, c).astype(np.int64)
    n = len(customer)
    cat = _fraud_categories(world, rng, n)
    country = np.where(rng.random(n) < p.cashout_foreign_share, ANY_COUNTRY, cb.country[customer])
    merchant = world.pick_merchant(rng.random(n), cat, np.ones(n, np.int64), country)
    amount = np.exp(np.log(p.cashout_amount_median) + 0.6 * rng.standard_normal(n))
    keep = time < cb.end[customer]
    cashout = Attempts.build(customer[keep], time[keep], merchant[keep], amount[keep], ECOMMERCE, CASHOUT)
    return Attempts.concat([burst, cashout])


def takeover(config: SyntheticConfig, world: World, cb: CustomerBlock) -> Attempts:
    """Pattern 2: an episode of fraudster activity from one foreign country at inflated amounts."""
    p = config.account_takeover
    rng = block_rng(config.seed, cb.block, STREAM_TAKEOVER)
    span = cb.end - cb.start - DAY_MS
    victim = np.nonzero((rng.random(cb.size) < p.customer_rate) & (span > 0))[0]
    v = len(victim)
    t0 = cb.start[victim] + (rng.random(v) * span[victim]).astype(np.int64)
    t1 = np.minimum(t0 + (rng.uniform(p.duration_days_min, p.duration_days_max, v) * DAY_MS).astype(np.int64),
                    cb.end[victim])
    target = _foreign_countries(world, rng, cb.country[victim])
    k = 1 + rng.poisson(p.events_per_day * (t1 - t0) / DAY_MS)
    episode = np.repeat(np.arange(v), k)
    n = len(episode)
    customer = victim[episode]
    # One attempt on the first day of the episode, the rest spread over it.
    offset = np.where(np.arange(n) == np.repeat(np.cumsum(k) - k, k), 0.0, rng.random(n))
    time = t0[episode] + (offset * (t1 - t0)[episode]).astype(np.int64)
    cat = _fraud_categories(world, rng, n)
    online = (rng.random(n) < p.online_share).astype(np.int64)
    country = np.where((online == 1) & (rng.random(n) < 0.3), ANY_COUNTRY, target[episode])
    merchant = world.pick_merchant(rng.random(n), cat, online, country)
    amount = np.exp(world.merchant_mu[merchant] + cb.log_spend[customer] + np.log(p.amount_multiplier)
                    + 0.5 * rng.standard_normal(n))
    time = np.clip(local_daytime(world, rng, time, merchant), t0[episode], t1[episode] - 1)
    return Attempts.build(customer, time, merchant, amount, np.where(online == 1, ECOMMERCE, CARD_PRESENT),
                          TAKEOVER)


def compromise(config: SyntheticConfig, world: World, cb: CustomerBlock, legit: Attempts) -> Attempts:
    """Pattern 3: fraud on cards that visited a merchant during its compromise window.

    Args:
        legit: the block's legitimate attempts (visits that expose a card).
    """
    p = config.compromised_merchants
    rng = block_rng(config.seed, cb.block, STREAM_COMPROMISE)
    m = legit.merchant
    exposed = np.nonzero((legit.time >= world.compromise_start[m]) & (legit.time < world.compromise_end[m]))[0]
    order = exposed[np.lexsort((legit.time[exposed], legit.customer[exposed]))]
    victim, first = np.unique(legit.customer[order], return_index=True)
    exposure_time = legit.time[order][first]
    exploited = rng.random(cb.size)[victim] < p.exploit_prob
    victim, exposure_time = victim[exploited], exposure_time[exploited]
    v = len(victim)
    start = exposure_time + (rng.uniform(p.delay_days_min, p.delay_days_max, v) * DAY_MS).astype(np.int64)
    k = rng.integers(p.events_min, p.events_max + 1, v)
    gaps = rng.exponential(3 * HOUR_MS, int(k.sum()))
    customer = np.repeat(victim, k)
    time = np.repeat(start, k) + group_cumsum(gaps, k).astype(np.int64)
    n = len(customer)
    cat = _fraud_categories(world, rng, n)
    cloned = rng.random(n) < p.cloned_card_share
    abroad = _foreign_countries(world, rng, cb.country[customer])
    country = np.where(cloned, abroad, ANY_COUNTRY)
    merchant = world.pick_merchant(rng.random(n), cat, (~cloned).astype(np.int64), country)
    amount = np.exp(np.log(p.amount_median) + 0.7 * rng.standard_normal(n))
    time = np.maximum(local_daytime(world, rng, time, merchant), np.repeat(start, k))
    keep = time < cb.end[customer]
    channel = np.where(cloned, CARD_PRESENT, ECOMMERCE)
    return Attempts.build(customer[keep], time[keep], merchant[keep], amount[keep], channel[keep], COMPROMISE)
