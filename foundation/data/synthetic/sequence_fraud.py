"""Planted fraud that per-event fields and counts barely see: only the order of the card's events gives it away.

6. Replay (`replay`): a compromised processor re-submits the card's last 2-5 purchases, in their original
   order, at the same merchants, for the same amounts, over the same hours of day, a few whole days later.
   Every field is habitual (known merchant, typical amount and hour, ordinary velocity); what is off is that
   a stretch of the sequence repeats itself exactly.
7. Dormant reactivation (`dormant_reactivation`): after a spell of at least `dormant_days` without a purchase
   (subscriptions keep billing), the card buys in categories the customer never shops, at domestic
   merchants, at ordinary prices for those merchants and the customer's spending level, at local daytime.
   A long gap and a first-time category are each common among genuine customers; together, right after the
   silence, they are the signal.
Parameters: `ReplayParams`, `DormantParams` in config.py.
"""

from __future__ import annotations

import numpy as np

from foundation.data.synthetic.activity import MAX_AMOUNT_USD, MIN_AMOUNT_USD
from foundation.data.synthetic.attempts import (
    DORMANT,
    PURCHASE,
    REPLAY,
    Attempts,
    customer_time_order,
    group_cumsum,
    group_positions,
)
from foundation.data.synthetic.catalog import CARD_PRESENT, ECOMMERCE
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import (
    STREAM_DORMANT,
    STREAM_REPLAY,
    CustomerBlock,
    block_rng,
    sample_rows,
)
from foundation.data.synthetic.fraud import MINUTE_MS, local_daytime
from foundation.data.synthetic.world import DAY_MS, HOUR_MS, World


def sorted_purchases(legit: Attempts) -> Attempts:
    """The block's ordinary purchases (source PURCHASE) sorted by (customer, time); both patterns read them."""
    purchases = legit.take(np.nonzero(legit.source == PURCHASE)[0])
    return purchases.take(customer_time_order(purchases.customer, purchases.time))


def replay(config: SyntheticConfig, world: World, cb: CustomerBlock, purchases: Attempts) -> Attempts:
    """Pattern 6: the card's last k purchases before a random point, re-submitted in order days later.

    Args:
        purchases: `sorted_purchases` of the block's legitimate attempts (what gets replayed).
    """
    p = config.replay
    rng = block_rng(config.seed, cb.block, STREAM_REPLAY)
    count = np.bincount(purchases.customer, minlength=cb.size)
    first = np.cumsum(count) - count
    k = rng.integers(p.events_min, p.events_max + 1, cb.size)
    u = rng.random((2, cb.size))
    victim = np.nonzero((u[0] < p.customer_rate) & (count >= k))[0]
    k, v = k[victim], len(victim)
    # The replayed run ends at a random purchase that has at least k - 1 purchases before it.
    last = first[victim] + k - 1 + (u[1][victim] * (count[victim] - k + 1)).astype(np.int64)
    row = np.repeat(last - k + 1, k) + group_positions(k)
    # Shift by whole days (hours of day stay habitual), starting after the run's last day.
    span_days = purchases.time[last] // DAY_MS - purchases.time[last - k + 1] // DAY_MS
    shift = (span_days + rng.integers(p.delay_days_min, p.delay_days_max + 1, v)) * DAY_MS
    jitter = rng.integers(-10 * MINUTE_MS, 10 * MINUTE_MS + 1, int(k.sum()))
    time = purchases.time[row] + np.repeat(shift, k) + jitter
    keep = time < cb.end[purchases.customer[row]]
    kept = row[keep]
    return Attempts(customer=purchases.customer[kept], time=time[keep], merchant=purchases.merchant[kept],
                    amount=purchases.amount[kept], channel=purchases.channel[kept],
                    source=np.full(len(kept), REPLAY, np.int64))


def dormant(config: SyntheticConfig, world: World, cb: CustomerBlock, purchases: Attempts) -> Attempts:
    """Pattern 7: purchases in categories new to the card, right after its longest spell without purchases.

    Args:
        purchases: `sorted_purchases` of the block's legitimate attempts (they define the dormant spells).
    """
    p = config.dormant_reactivation
    rng = block_rng(config.seed, cb.block, STREAM_DORMANT)
    c, t = purchases.customer, purchases.time
    gap = np.where(np.r_[c[1:] == c[:-1], False], np.r_[t[1:], 0] - t, -1)  # to the customer's next purchase
    longest = np.lexsort((-gap, c))
    customer, at = np.unique(c[longest], return_index=True)
    row = longest[at]  # the purchase that opens each customer's longest gap
    dormant_ms = int(p.dormant_days * DAY_MS)
    u = rng.random((2, cb.size))
    hit = (gap[row] >= dormant_ms) & (u[0][customer] < p.customer_rate)
    victim, row = customer[hit], row[hit]
    v = len(victim)
    t0 = t[row] + dormant_ms + (u[1][victim] * (gap[row] - dormant_ms)).astype(np.int64)
    k = rng.integers(p.events_min, p.events_max + 1, v)
    who = np.repeat(victim, k)
    n = len(who)
    time = np.repeat(t0, k) + group_cumsum(rng.exponential(p.gap_hours_mean * HOUR_MS, n), k).astype(np.int64)
    # Categories the customer (almost) never buys, as common as they are for everyone else.
    taste = np.diff(cb.cat_cum, axis=1, prepend=0.0)[victim]  # (v, K)
    weight = world.cat_weight * (taste < p.rare_taste)
    weight[weight.sum(axis=1) == 0] = world.cat_weight * (1.0 - taste[weight.sum(axis=1) == 0])
    cum = np.cumsum(weight, axis=1) / weight.sum(axis=1, keepdims=True)
    cat = sample_rows(cum, np.repeat(np.arange(v), k), rng.random(n))
    online = (rng.random(n) < world.cat_online[cat]).astype(np.int64)
    merchant = world.pick_merchant(rng.random(n), cat, online, cb.country[who])
    log_amount = world.merchant_mu[merchant] + cb.log_spend[who] + world.cat_sigma[cat] * rng.standard_normal(n)
    amount = np.clip(np.exp(log_amount), MIN_AMOUNT_USD, MAX_AMOUNT_USD)
    time = np.maximum(local_daytime(world, rng, time, merchant), np.repeat(t0, k))
    keep = time < cb.end[who]
    channel = np.where(online == 1, ECOMMERCE, CARD_PRESENT)
    return Attempts.build(who[keep], time[keep], merchant[keep], amount[keep], channel[keep], DORMANT)
