"""Legitimate activity of a block of customers: ordinary purchases, monthly subscriptions, trips abroad.

Everything is built with per-customer counts and `np.repeat`; no Python loop runs per event or customer.
"""

from __future__ import annotations

import numpy as np

from foundation.data.synthetic.attempts import PURCHASE, SUBSCRIPTION, TRAVEL, Attempts
from foundation.data.synthetic.catalog import (
    CARD_PRESENT,
    CATEGORIES,
    CATEGORY_INDEX,
    ECOMMERCE,
    RECURRING,
    RECURRING_VARIATION,
)
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import (
    MAX_TRIPS,
    STREAM_PURCHASES,
    STREAM_SUBSCRIPTIONS,
    STREAM_TRIPS,
    CustomerBlock,
    block_rng,
    sample_rows,
)
from foundation.data.synthetic.world import ANY_COUNTRY, DAY_MS, HOUR_MS, HOUR_TABLE_SIZE, World

MAX_SUBSCRIPTIONS = 6
MIN_AMOUNT_USD = 0.5
MAX_AMOUNT_USD = 50_000.0


def purchases(config: SyntheticConfig, world: World, cb: CustomerBlock) -> Attempts:
    """Ordinary purchases: Poisson counts per customer, category by taste, merchant by loyalty/popularity.

    Card-present purchases during a trip happen at merchants of the destination (local time there);
    amounts are log-normal around the merchant's price level times the customer's spending level.
    """
    p = config.customers
    rng = block_rng(config.seed, cb.block, STREAM_PURCHASES)
    span = cb.end - cb.start
    counts = rng.poisson(cb.rate * span / DAY_MS)
    cust = np.repeat(np.arange(cb.size), counts)
    n = len(cust)
    cat = sample_rows(cb.cat_cum, cust, rng.random(n))
    # Day uniform over the active span, hour of day from the category's local-time profile.
    day = (cb.start[cust] + rng.random(n) * span[cust]).astype(np.int64) // DAY_MS
    hour = world.cat_hour_table[cat, (rng.random(n) * HOUR_TABLE_SIZE).astype(np.int64)]
    local = day * DAY_MS + hour * HOUR_MS + (rng.random(n) * HOUR_MS).astype(np.int64)
    where = cb.country[cust].copy()
    abroad = np.zeros(n, dtype=bool)
    traveller = np.nonzero(cb.trip_start[cust, 0] >= 0)[0]  # trip slots fill from the first
    who, when = cust[traveller], local[traveller]
    for j in range(MAX_TRIPS):  # a handful of trip slots, not a loop over events
        inside = traveller[(when >= cb.trip_start[who, j]) & (when < cb.trip_end[who, j])]
        where[inside] = cb.trip_country[cust[inside], j]
        abroad[inside] = True
    time = np.clip(local - world.country_offset_ms[where], cb.start[cust], cb.end[cust] - 1)

    online = (rng.random(n) < world.cat_online[cat] * cb.online[cust]).astype(np.int64)
    domestic_web = rng.random(n) < p.home_online_share
    country = np.where(online == 1, np.where(domestic_web, cb.country[cust], ANY_COUNTRY), where)
    merchant = world.pick_merchant(rng.random(n), cat, online, country)
    # Loyal purchases go to the customer's usual merchant (not while abroad in person).
    loyal = (rng.random(n) < p.loyalty) & ~(abroad & (online == 0))
    merchant[loyal] = cb.favourite[cust[loyal], cat[loyal], online[loyal]]
    log_amount = world.merchant_mu[merchant] + cb.log_spend[cust] + world.cat_sigma[cat] * rng.standard_normal(n)
    amount = np.clip(np.exp(log_amount), MIN_AMOUNT_USD, MAX_AMOUNT_USD)
    return Attempts.build(cust, time, merchant, amount, np.where(online == 1, ECOMMERCE, CARD_PRESENT), PURCHASE)


def subscriptions(config: SyntheticConfig, world: World, cb: CustomerBlock) -> Attempts:
    """Monthly bills (streaming, telecom, utilities, ...) on a fixed day, early morning, channel `recurring`."""
    rng = block_rng(config.seed, cb.block, STREAM_SUBSCRIPTIONS)
    n_subs = np.minimum(rng.poisson(config.customers.subscriptions_mean, cb.size), MAX_SUBSCRIPTIONS)
    owner = np.repeat(np.arange(cb.size), n_subs)
    s = len(owner)
    cat = np.searchsorted(np.cumsum(world.cat_recurring_p), rng.random(s), side="right").clip(0, len(CATEGORIES) - 1)
    merchant = world.pick_merchant(rng.random(s), cat, np.ones(s, np.int64), cb.country[owner])
    plan = np.exp(world.merchant_mu[merchant] + 0.35 * rng.standard_normal(s) + 0.5 * cb.log_spend[owner])
    bill_day = rng.integers(0, 28, s)
    bill_time = (rng.random(s) * 6 * HOUR_MS).astype(np.int64)

    months = np.arange(world.start.astype("datetime64[M]"),
                       (world.start + np.timedelta64(world.period_ms, "ms")).astype("datetime64[M]") + 1)
    month_ms = (months.astype("datetime64[ms]") - world.start).astype(np.int64)
    n_months = len(month_ms)
    sub = np.repeat(np.arange(s), n_months)
    month = np.tile(np.arange(n_months), s)
    customer = owner[sub]
    time = month_ms[month] + bill_day[sub] * DAY_MS + bill_time[sub] - world.country_offset_ms[cb.country[customer]]
    variation = np.array([RECURRING_VARIATION.get(c.key, 0.0) for c in CATEGORIES])[cat[sub]]
    amount = plan[sub] * np.exp(variation * rng.standard_normal(len(sub)))
    keep = (time >= cb.start[customer]) & (time < cb.end[customer])
    return Attempts.build(customer[keep], time[keep], merchant[sub][keep], amount[keep], RECURRING, SUBSCRIPTION)


def travel(config: SyntheticConfig, world: World, cb: CustomerBlock) -> Attempts:
    """Per trip: a flight booked online 1-8 weeks before and a hotel bill at the destination at check-out."""
    rng = block_rng(config.seed, cb.block, STREAM_TRIPS)
    who, slot = np.nonzero(cb.trip_start >= 0)
    t0, t1, dest = cb.trip_start[who, slot], cb.trip_end[who, slot], cb.trip_country[who, slot]
    n = len(who)
    hotel = world.pick_merchant(rng.random(n), np.full(n, CATEGORY_INDEX["hotel"]), np.zeros(n, np.int64), dest)
    # Not every night is spent in a hotel; long stays are often split across several bills.
    nights = np.clip((t1 - t0) / DAY_MS * rng.uniform(0.3, 1.0, n), 1, 5).round()
    hotel_amount = np.exp(world.merchant_mu[hotel] + cb.log_spend[who] + 0.3 * rng.standard_normal(n)) * nights
    hotel_time = t1 - (rng.random(n) * 3 * HOUR_MS).astype(np.int64)
    airline = world.pick_merchant(rng.random(n), np.full(n, CATEGORY_INDEX["airline"]), np.ones(n, np.int64),
                                  cb.country[who])
    flight_amount = 2 * np.exp(world.merchant_mu[airline] + cb.log_spend[who] + 0.4 * rng.standard_normal(n))
    flight_time = t0 - (rng.uniform(7, 56, n) * DAY_MS).astype(np.int64)
    booked = flight_time >= cb.start[who]
    return Attempts.concat([
        Attempts.build(who, hotel_time, hotel, np.minimum(hotel_amount, MAX_AMOUNT_USD), CARD_PRESENT, TRAVEL),
        Attempts.build(who[booked], flight_time[booked], airline[booked], flight_amount[booked], ECOMMERCE, TRAVEL),
    ])
