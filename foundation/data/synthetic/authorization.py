"""Pattern 4 and 5: how issuers decide on attempts, and customers running out of funds.

Each issuer has its own strictness and sensitivities (`IssuerParams`): the "do not honour" (05) logit
rises with the amount, with cross-border use (half as much in person as online), with risky MCCs and
with the card's velocity (attempts in the last hour and day); a hard per-issuer limit of attempts per hour gives 65; a fraud model (59) sees the
same risk plus a hidden skill on truly fraudulent attempts. Spending depletes a budget that refills on the
customer's paydays (`FundsParams`); once the budget of a pay period is spent, attempts larger than what is
left are declined 51 until the next payday; savings carry over a few paydays. Reasons are checked in `catalog.DECLINE_CODES` order.
"""

from __future__ import annotations

import numpy as np

from foundation.data.synthetic.attempts import CARD_TESTING, Attempts
from foundation.data.synthetic.catalog import (
    CATEGORY_INDEX,
    CODE_CVV,
    CODE_DO_NOT_HONOUR,
    CODE_EXPIRED,
    CODE_FRAUD,
    CODE_FUNDS,
    CODE_INVALID_CARD,
    CODE_NOT_PERMITTED,
    CODE_UNAVAILABLE,
    CODE_VELOCITY,
    ECOMMERCE,
)
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import STREAM_AUTHORIZATION, CustomerBlock, block_rng
from foundation.data.synthetic.world import DAY_MS, HOUR_MS, World

APPROVED = -1
GAMBLING = CATEGORY_INDEX["gambling"]
PERIOD_DAYS = np.array([30.44, 15.22, 14.0, 14.0, 7.0])  # mean length of each pay schedule's period
VELOCITY_RULE_HIT = 0.9  # the hard velocity rule fires on 90% of attempts above the limit


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def velocity(customer: np.ndarray, time: np.ndarray, window_ms: int) -> np.ndarray:
    """Attempts of the same customer in the `window_ms` before each attempt (sorted by customer, time).

    Args:
        customer, time: (N,) sorted by (customer, time).
        window_ms: look-back window.

    Returns:
        (N,) int64 counts of earlier attempts within the window (the attempt itself excluded).
    """
    key = customer.astype(np.int64) << 37 | time  # 2**37 ms > 4 years: customers never overlap
    return np.arange(len(key)) - np.searchsorted(key, key - window_ms, side="left")


def authorize(config: SyntheticConfig, world: World, cb: CustomerBlock, att: Attempts) -> np.ndarray:
    """Issuer decisions on the block's attempts.

    Args:
        att: (N,) attempts sorted by (customer, time).

    Returns:
        (N,) int64 decline code index into `catalog.DECLINE_CODES`, APPROVED (-1) when approved.
    """
    p = config.issuers
    rng = block_rng(config.seed, cb.block, STREAM_AUTHORIZATION)
    n = len(att)
    issuer = cb.issuer[att.customer]
    cat = world.merchant_cat[att.merchant]
    vel_hour = velocity(att.customer, att.time, HOUR_MS)
    vel_day = velocity(att.customer, att.time, DAY_MS)
    ecommerce = att.channel == ECOMMERCE
    # Abroad in person (chip and PIN, a travelling cardholder) is half as suspicious as abroad online.
    cross = (world.merchant_country[att.merchant] != cb.country[att.customer]) * np.where(ecommerce, 1.0, 0.5)
    risky = world.cat_risky[cat].astype(np.float64)
    log_amount = np.log(att.amount / 50.0)
    busy = np.log1p(vel_hour) + 0.5 * np.log1p(vel_day)
    logit_05 = (world.issuer_strictness[issuer] + world.issuer_amount_coef[issuer] * log_amount
                + world.issuer_cross_border_coef[issuer] * cross + p.risky_mcc_coef * risky
                + p.ecommerce_coef * ecommerce + world.issuer_velocity_coef[issuer] * busy)
    risk = np.maximum(log_amount, 0.0) + cross + risky + np.log1p(vel_hour)
    logit_59 = p.fraud_base_logit + p.fraud_risk_coef * risk + world.issuer_fraud_skill[issuer] * att.fraud

    u = rng.random((6, n), dtype=np.float32)  # single precision is plenty for Bernoulli draws
    testing = att.source == CARD_TESTING
    # Testers guess CVV/expiry; genuine customers occasionally mistype the CVV online.
    invalid = np.where(testing, u[1] < config.card_testing.invalid_rate,
                       ecommerce & (u[1] < config.customers.wrong_cvv_rate))
    # A wrong guess is a CVV mismatch (60%), an expired date (25%) or an invalid number (15%).
    invalid_code = np.where(testing & (u[2] >= 0.6), np.where(u[2] < 0.85, CODE_EXPIRED, CODE_INVALID_CARD),
                            CODE_CVV)
    code = np.full(n, APPROVED, dtype=np.int64)
    for fired, reason in (
        (u[0] < p.technical_rate, CODE_UNAVAILABLE),
        (invalid, invalid_code),
        ((cat == GAMBLING) & world.issuer_blocks_gambling[issuer], CODE_NOT_PERMITTED),
        ((vel_hour >= world.issuer_velocity_limit[issuer]) & (u[3] < VELOCITY_RULE_HIT), CODE_VELOCITY),
        (u[4] < _sigmoid(logit_59), CODE_FRAUD),
        (u[5] < _sigmoid(logit_05), CODE_DO_NOT_HONOUR),
    ):
        hit = fired & (code == APPROVED)
        code[hit] = reason[hit] if isinstance(reason, np.ndarray) else reason
    code[out_of_funds(config, world, cb, att, code == APPROVED)] = CODE_FUNDS
    return code


def out_of_funds(config: SyntheticConfig, world: World, cb: CustomerBlock, att: Attempts,
                 candidate: np.ndarray) -> np.ndarray:
    """Attempts declined for insufficient funds (51).

    On each payday the customer receives `tightness * mean spending per period * period noise`; what is
    left at the end of a period is carried over up to `savings_cap` paydays. Within a period approved
    amounts are summed in time order; once the sum passes the available funds, every later attempt of the
    period larger than what was left at that moment is declined (small ones still fit) until the next payday.

    Args:
        att: (N,) attempts sorted by (customer, time).
        candidate: (N,) bool, attempts not declined for another reason (only they spend).

    Returns:
        (N,) bool.
    """
    f = config.funds
    n = len(att)
    schedule = cb.schedule[att.customer]
    period = np.zeros(n, dtype=np.int64)
    for s, paydays in enumerate(world.paydays):  # five schedules
        on = schedule == s
        period[on] = np.searchsorted(paydays, att.time[on], side="right")
    # Income scales with what the customer normally spends (fraud drains the same account).
    legit_spend = np.bincount(att.customer, weights=att.amount * ~att.fraud, minlength=cb.size)
    periods = np.maximum((cb.end - cb.start) / (PERIOD_DAYS[cb.schedule] * DAY_MS), 1.0)
    income = (cb.tightness * legit_spend / periods)[:, None] * cb.period_noise  # (n_customers, P)
    carry = income[:, 0] * f.savings_cap * cb.initial_savings
    declined = np.zeros(n, dtype=bool)
    # Periods in order (a few dozen at most); within one, all customers at once.
    # Stable, so (customer, time) order holds inside a period; int16 keys make it a radix sort.
    by_period = np.argsort(period.astype(np.int16), kind="stable")
    bounds = np.searchsorted(period[by_period], np.arange(income.shape[1] + 1))
    for k in range(income.shape[1]):
        rows = by_period[bounds[k]:bounds[k + 1]]
        if len(rows) == 0:
            carry = np.minimum(carry + income[:, k], f.savings_cap * income[:, k])
            continue
        customer = att.customer[rows]
        available = (carry + income[:, k])[customer]
        amount = att.amount[rows]
        spend = amount * candidate[rows]
        new = np.r_[True, customer[1:] != customer[:-1]]
        first = np.maximum.accumulate(np.where(new, np.arange(len(rows)), 0))
        total = np.cumsum(spend)
        spent = total - (total - spend)[first]  # inclusive sum within the customer's period
        over = spent > available
        first_over = over & (new | ~np.r_[False, over[:-1]])
        crossing = np.maximum.accumulate(np.where(first_over, np.arange(len(rows)), 0))
        left = (available - (spent - spend))[crossing]
        out = candidate[rows] & over & (amount > left)
        declined[rows] = out
        paid = np.bincount(customer, weights=spend * ~out, minlength=cb.size)
        carry = np.clip(carry + income[:, k] - paid, 0.0, f.savings_cap * income[:, k])
    return declined
