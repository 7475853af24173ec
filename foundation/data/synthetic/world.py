"""The fixed entities of the synthetic world: countries, issuers, merchants, their descriptors and fates.

`build_world(config)` is deterministic in `config.seed` and shared by every block of customers, so a
customer simulated in any block sees the same merchants, issuers, compromised windows and paydays.
Merchants are stored sorted by (category, online, country) so every such segment is a contiguous range
and choosing a merchant is one `searchsorted` on cumulative popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from foundation.data.synthetic.catalog import (
    CATEGORIES,
    COUNTRIES,
    HOUR_PROFILES,
    PAY_SCHEDULES,
    ZERO_DECIMAL_CURRENCIES,
)
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.descriptors import merchant_descriptors

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
ANY_COUNTRY = len(COUNTRIES)  # segment index meaning "merchants of any country"
HOUR_TABLE_SIZE = 4096  # hour-of-day draws are a table lookup: probabilities rounded to 1/4096


def world_rng(seed: int, stream: int) -> np.random.Generator:
    """Random stream `stream` of the world (block streams use `[seed, 1, block, stream]`)."""
    return np.random.default_rng([seed, 0, stream])


@dataclass
class World:
    """Entity tables as numpy arrays (index = entity index; ids written are index + 1).

    Countries/categories are indexed like `catalog.COUNTRIES` / `catalog.CATEGORIES`; `K` categories,
    `C` countries, `I` issuers, `M` merchants.
    """

    period_ms: int  # length of [start, end) in ms
    start: np.datetime64  # period start, datetime64[ms]
    # countries (C,)
    country_codes: pa.Array
    currency_codes: pa.Array
    currency_fx: np.ndarray  # (n_currencies,) units per USD
    currency_decimals: np.ndarray  # (n_currencies,) 0 or 2
    country_offset_ms: np.ndarray  # (C,) UTC offset
    travel_p: np.ndarray  # (C,) destination weights (normalised per traveller excluding home)
    fraud_country_p: np.ndarray  # (C,)
    # categories (K,)
    cat_weight: np.ndarray
    cat_sigma: np.ndarray
    cat_online: np.ndarray
    cat_hour_table: np.ndarray  # (K, HOUR_TABLE_SIZE) hour of day for each slice of [0, 1)
    cat_refund: np.ndarray
    cat_risky: np.ndarray
    cat_fraud_p: np.ndarray  # cash-out category distribution
    cat_recurring_p: np.ndarray  # subscription category distribution
    # issuers (I,)
    issuer_country: np.ndarray
    issuer_cum: np.ndarray  # cumulative market share
    issuer_strictness: np.ndarray
    issuer_amount_coef: np.ndarray
    issuer_cross_border_coef: np.ndarray
    issuer_velocity_coef: np.ndarray
    issuer_velocity_limit: np.ndarray
    issuer_fraud_skill: np.ndarray
    issuer_blocks_gambling: np.ndarray
    # merchants (M,)
    merchant_cat: np.ndarray
    merchant_online: np.ndarray  # 1 for online shops
    merchant_country: np.ndarray
    merchant_currency: np.ndarray
    merchant_mcc: pa.Array
    merchant_mu: np.ndarray  # log median amount in USD
    merchant_cum_pop: np.ndarray
    segment_lo: np.ndarray  # (K*2*(C+1),) cumulative-popularity range of each (category, online, country)
    segment_hi: np.ndarray
    segment_first: np.ndarray  # merchant index range of the segment (inclusive)
    segment_last: np.ndarray
    descriptor_offset: np.ndarray  # (M,) first descriptor of the merchant in `descriptors`
    descriptor_count: np.ndarray  # (M,) 1 or DESCRIPTOR_VARIANTS
    descriptors: pa.Array
    compromise_start: np.ndarray  # (M,) ms; int64 max when never compromised
    compromise_end: np.ndarray  # (M,) ms; -1 when never compromised
    compromised: np.ndarray  # indices of compromised merchants
    testing_merchants: np.ndarray  # indices of merchants used for card testing
    paydays: tuple[np.ndarray, ...]  # per pay schedule, sorted ms of funds refills

    def pick_merchant(self, u: np.ndarray, cat: np.ndarray, online: np.ndarray, country: np.ndarray) -> np.ndarray:
        """Choose merchants by popularity within (category, online, country) segments.

        Args:
            u: (N,) uniforms in [0, 1).
            cat, online, country: (N,) category index, 0/1, country index or ANY_COUNTRY. Empty segments
                fall back to the other online flag, then to any country (resolved when the world is built).

        Returns:
            (N,) merchant indices.
        """
        seg = (cat * 2 + online) * (ANY_COUNTRY + 1) + country
        lo, hi = self.segment_lo[seg], self.segment_hi[seg]
        m = np.searchsorted(self.merchant_cum_pop, lo + u * (hi - lo), side="right")
        return np.clip(m, self.segment_first[seg], self.segment_last[seg])


def build_world(config: SyntheticConfig) -> World:
    """Build the deterministic world of `config` (issuers, merchants, descriptors, compromises, paydays)."""
    n_cat = len(CATEGORIES)
    if config.n_merchants < 2 * n_cat:
        raise ValueError(f"synthetic config: `n_merchants` must be >= {2 * n_cat} (two per category), "
                         f"got {config.n_merchants}")
    start = np.datetime64(config.start, "ms")
    period_ms = int((np.datetime64(config.end, "ms") - start).astype(np.int64))

    currencies = sorted({c.currency for c in COUNTRIES})
    cat = CATEGORIES
    hours = HOUR_PROFILES[[c.hours for c in cat]]
    fraud_w = np.array([c.fraud_weight for c in cat])
    rec_w = np.array([1.0 if c.recurring else 0.0 for c in cat])
    world = dict(
        period_ms=period_ms,
        start=start,
        country_codes=pa.array([c.code for c in COUNTRIES]),
        currency_codes=pa.array(currencies),
        currency_fx=np.array([next(c.fx for c in COUNTRIES if c.currency == cur) for cur in currencies]),
        currency_decimals=np.array([0 if cur in ZERO_DECIMAL_CURRENCIES else 2 for cur in currencies]),
        country_offset_ms=np.array([c.utc_offset * HOUR_MS for c in COUNTRIES]).astype(np.int64),
        travel_p=np.array([c.travel_weight for c in COUNTRIES]),
        fraud_country_p=np.array([c.merchant_share * c.fraud_weight for c in COUNTRIES]),
        cat_weight=np.array([c.weight for c in cat]),
        cat_sigma=np.array([c.sigma for c in cat]),
        cat_online=np.array([c.online_share for c in cat]),
        cat_hour_table=_hour_tables(hours),
        cat_refund=np.array([c.refund_rate for c in cat]),
        cat_risky=np.array([c.risky for c in cat]),
        cat_fraud_p=fraud_w / fraud_w.sum(),
        cat_recurring_p=rec_w / rec_w.sum(),
    )
    world.update(_issuers(config))
    merchants = _merchants(config)
    world.update(merchants)
    world.update(merchant_descriptors(world_rng(config.seed, 3), merchants["merchant_cat"],
                                      merchants["merchant_country"], merchants["merchant_cum_pop"]))
    world.update(_fates(config, merchants, period_ms))
    world["paydays"] = _paydays(config.start, config.end)
    return World(**world)


def _hour_tables(hours: np.ndarray) -> np.ndarray:
    """(K, HOUR_TABLE_SIZE) int64: hour h fills a share of the row equal to its probability."""
    cum = np.cumsum(hours / hours.sum(axis=1, keepdims=True), axis=1)
    grid = (np.arange(HOUR_TABLE_SIZE) + 0.5) / HOUR_TABLE_SIZE
    return np.stack([np.searchsorted(row, grid, side="right") for row in cum]).clip(0, hours.shape[1] - 1)


def _issuers(config: SyntheticConfig) -> dict[str, np.ndarray]:
    p, n = config.issuers, config.n_issuers
    rng = world_rng(config.seed, 1)
    home = [i for i, c in sorted(enumerate(COUNTRIES), key=lambda ic: -ic[1].customer_share) if c.customer_share > 0]
    share = np.array([COUNTRIES[i].customer_share for i in home])
    # One issuer per country (largest markets first), the rest by largest remainder of market share.
    per_country = np.zeros(len(home), dtype=np.int64)
    per_country[: min(n, len(home))] = 1
    extra = n - per_country.sum()
    if extra > 0:
        ideal = share / share.sum() * n - per_country
        ideal = np.maximum(ideal, 0)
        base = np.floor(ideal / ideal.sum() * extra).astype(np.int64)
        rest = extra - base.sum()
        base[np.argsort(-(ideal / ideal.sum() * extra - base), kind="stable")[:rest]] += 1
        per_country += base
    country = np.repeat(np.array(home), per_country)
    rank = np.concatenate([np.arange(k) for k in per_country])
    # Within a country a few large issuers dominate (Zipf-like market share).
    within = (1.0 / (rank + 1.0) ** 0.8) * rng.lognormal(0, 0.3, n)
    totals = np.bincount(np.repeat(np.arange(len(home)), per_country), weights=within, minlength=len(home))
    weight = within / np.repeat(totals, per_country) * np.repeat(share, per_country)  # countries without issuers drop out
    return dict(
        issuer_country=country,
        issuer_cum=np.cumsum(weight / weight.sum()),
        issuer_strictness=rng.normal(p.strictness_mean, p.strictness_sd, n),
        issuer_amount_coef=rng.uniform(p.amount_coef_min, p.amount_coef_max, n),
        issuer_cross_border_coef=rng.uniform(p.cross_border_coef_min, p.cross_border_coef_max, n),
        issuer_velocity_coef=rng.uniform(p.velocity_coef_min, p.velocity_coef_max, n),
        issuer_velocity_limit=rng.integers(p.velocity_limit_min, p.velocity_limit_max + 1, n),
        issuer_fraud_skill=rng.uniform(p.fraud_skill_min, p.fraud_skill_max, n),
        issuer_blocks_gambling=rng.random(n) < p.gambling_block_share,
    )


def _merchants(config: SyntheticConfig) -> dict[str, np.ndarray | pa.Array]:
    n, n_cat, n_cty = config.n_merchants, len(CATEGORIES), len(COUNTRIES)
    rng = world_rng(config.seed, 2)
    share = np.array([c.merchant_share for c in CATEGORIES])
    # At least one merchant per category, the rest by largest remainder.
    ideal = share / share.sum() * (n - n_cat)
    counts = 1 + np.floor(ideal).astype(np.int64)
    counts[np.argsort(-(ideal - np.floor(ideal)), kind="stable")[: n - counts.sum()]] += 1
    cat = np.repeat(np.arange(n_cat), counts)
    online = (rng.random(n) < np.array([c.online_share for c in CATEGORIES])[cat]).astype(np.int64)
    cty_p = np.array([c.merchant_share for c in COUNTRIES])
    country = np.searchsorted(np.cumsum(cty_p / cty_p.sum()), rng.random(n), side="right").clip(0, n_cty - 1)
    order = np.lexsort((country, online, cat))
    cat, online, country = cat[order], online[order], country[order]
    popularity = rng.lognormal(0.0, 1.0, n)
    mcc_choice = rng.random(n)
    mccs = [CATEGORIES[k].mccs[int(u * len(CATEGORIES[k].mccs))] for k, u in zip(cat, mcc_choice)]
    currencies = sorted({c.currency for c in COUNTRIES})
    cum = np.cumsum(popularity)
    left = cum - popularity
    # Segment table with fallbacks that keep the country first: (k, o, c) -> (k, 1-o, c) -> (k, o, any)
    # -> (k, 1-o, any); a traveller or a fraudster abroad stays abroad even in a small world.
    key = (cat * 2 + online) * (n_cty + 1) + country
    n_seg = n_cat * 2 * (n_cty + 1)
    first = np.full(n_seg, -1)
    last = np.full(n_seg, -1)
    present = np.unique(key)
    first[present] = np.searchsorted(key, present, side="left")
    last[present] = np.searchsorted(key, present, side="right") - 1
    for k in range(n_cat):
        for o in range(2):
            rows = np.nonzero((cat == k) & (online == o))[0]
            if len(rows):
                any_seg = (k * 2 + o) * (n_cty + 1) + n_cty
                first[any_seg], last[any_seg] = rows[0], rows[-1]
    seg = np.arange(n_seg)
    k, o, c = seg // (2 * (n_cty + 1)), (seg // (n_cty + 1)) % 2, seg % (n_cty + 1)
    resolved = seg.copy()
    for alt in ((k * 2 + 1 - o) * (n_cty + 1) + c, (k * 2 + o) * (n_cty + 1) + n_cty,
                (k * 2 + 1 - o) * (n_cty + 1) + n_cty):
        missing = first[resolved] < 0
        resolved[missing] = alt[missing]
    seg_first, seg_last = first[resolved], last[resolved]
    return dict(
        merchant_cat=cat,
        merchant_online=online,
        merchant_country=country,
        merchant_currency=np.array([currencies.index(COUNTRIES[c].currency) for c in range(n_cty)])[country],
        merchant_mcc=pa.array(mccs, pa.string()),
        merchant_mu=np.log(np.array([c.median_usd for c in CATEGORIES]))[cat] + rng.normal(0, 0.3, n),
        merchant_cum_pop=cum,
        segment_lo=left[seg_first],
        segment_hi=cum[seg_last],
        segment_first=seg_first,
        segment_last=seg_last,
    )


def _fates(config: SyntheticConfig, merchants: dict, period_ms: int) -> dict[str, np.ndarray]:
    """Which merchants get compromised (and when) and which ones fraudsters test cards on."""
    rng = world_rng(config.seed, 4)
    p = config.compromised_merchants
    cat, online = merchants["merchant_cat"], merchants["merchant_online"]
    n = len(cat)
    popularity = np.diff(merchants["merchant_cum_pop"], prepend=0.0)
    skimming = np.array([c.skimming for c in CATEGORIES])[cat]
    recurring = np.array([c.recurring for c in CATEGORIES])[cat]
    candidates = np.nonzero((skimming & (online == 0)) | ((online == 1) & ~recurring))[0]
    n_comp = min(int(round(p.merchant_rate * n)), len(candidates))
    # Popular merchants leak more cards; choose them proportionally to popularity.
    chosen = np.sort(rng.choice(candidates, n_comp, replace=False, p=popularity[candidates] / popularity[candidates].sum()))
    length = rng.uniform(p.window_days_min, p.window_days_max, n_comp) * DAY_MS
    latest = np.maximum(period_ms - length - p.delay_days_min * DAY_MS, 0)
    begin = rng.random(n_comp) * latest
    comp_start = np.full(n, np.iinfo(np.int64).max)
    comp_end = np.full(n, -1, dtype=np.int64)
    comp_start[chosen] = begin.astype(np.int64)
    comp_end[chosen] = (begin + length).astype(np.int64)

    # Testers work on US digital-goods and donation sites (amounts in USD), preferring busy ones where
    # their attempts blend in; any testing-category site when the world has no US one.
    testing = np.array([c.testing for c in CATEGORIES])[cat] & (online == 1)
    pool = np.nonzero(testing & (merchants["merchant_country"] == 0))[0]
    if len(pool) == 0:
        pool = np.nonzero(np.array([c.testing for c in CATEGORIES])[cat])[0]
    testers = np.sort(rng.choice(pool, min(config.card_testing.n_merchants, len(pool)), replace=False,
                                 p=popularity[pool] / popularity[pool].sum()))
    return dict(compromise_start=comp_start, compromise_end=comp_end, compromised=chosen, testing_merchants=testers)


def _paydays(start: str, end: str) -> tuple[np.ndarray, ...]:
    """Funds refill times (06:00 UTC) per pay schedule, as ms since `start`, in `PAY_SCHEDULES` order."""
    t0, t1 = np.datetime64(start, "D"), np.datetime64(end, "D")
    days = np.arange(t0 - 31, t1 + 1)
    month_day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (days.astype(np.int64) + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    fridays = days[weekday == 4]
    schedules = {
        "monthly": days[month_day == 1],
        "semi_monthly": days[(month_day == 1) | (month_day == 15)],
        "biweekly_a": fridays[0::2],
        "biweekly_b": fridays[1::2],
        "weekly": fridays,
    }
    t0_ms = t0.astype("datetime64[ms]")
    out = []
    for name in PAY_SCHEDULES:
        ms = (schedules[name].astype("datetime64[ms]") - t0_ms).astype(np.int64) + 6 * HOUR_MS
        out.append(ms[(ms > 0) & (ms < (t1 - t0).astype(np.int64) * DAY_MS)])
    return tuple(out)
