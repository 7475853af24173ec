"""Events that follow approved charges: refunds (merchant returns money) and disputes (the fraud label).

A dispute lands days after an approved fraudulent charge and references it; tiny charges are disputed
less often (cardholders miss them). Follow-ups after the period end are not written (labels still unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundation.data.synthetic.attempts import PURCHASE, TRAVEL, Attempts
from foundation.data.synthetic.authorization import APPROVED
from foundation.data.synthetic.catalog import DISPUTE, REFUND
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import STREAM_FOLLOWUPS, CustomerBlock, block_rng
from foundation.data.synthetic.world import DAY_MS, World


@dataclass
class Followups:
    """F follow-up events; `parent` is the index of the attempt they refer to."""

    parent: np.ndarray  # (F,) int64 index into the block's sorted attempts
    time: np.ndarray  # (F,) int64 ms
    kind: np.ndarray  # (F,) int64 catalog.REFUND or catalog.DISPUTE
    amount: np.ndarray  # (F,) float64 USD


def followups(config: SyntheticConfig, world: World, cb: CustomerBlock, att: Attempts,
              code: np.ndarray) -> Followups:
    """Refunds of approved legitimate purchases and disputes of approved fraudulent charges.

    Args:
        att: (N,) the block's attempts sorted by (customer, time).
        code: (N,) issuer decisions (APPROVED or a decline code index).

    Returns:
        The follow-ups, in no particular order.
    """
    rng = block_rng(config.seed, cb.block, STREAM_FOLLOWUPS)
    c, d = config.customers, config.disputes
    approved = code == APPROVED
    chance = np.where(np.isin(att.source, (PURCHASE, TRAVEL)), world.cat_refund[world.merchant_cat[att.merchant]], 0.0)
    refunded = np.nonzero(approved & (rng.random(len(att), dtype=np.float32) < chance))[0]
    r = len(refunded)
    refund_delay = np.clip(np.exp(np.log(c.refund_delay_days_median) + 0.8 * rng.standard_normal(r)), 0.1, 60.0)
    partial = 0.2 + 0.7 * rng.random(r)
    refund_amount = np.where(rng.random(r) < c.full_refund_share, 1.0, partial) * att.amount[refunded]

    fraud = np.nonzero(approved & att.fraud)[0]
    report = np.where(att.amount[fraud] < d.small_amount, d.report_prob_small, d.report_prob)
    disputed = fraud[rng.random(len(fraud)) < report]
    sigma = np.log(d.delay_days_max / d.delay_days_min) / 4  # ~95% of delays inside [min, max] before clipping
    dispute_delay = np.clip(np.exp(np.log(d.delay_days_median) + sigma * rng.standard_normal(len(disputed))),
                            d.delay_days_min, d.delay_days_max)

    parent = np.concatenate([refunded, disputed])
    time = att.time[parent] + (np.concatenate([refund_delay, dispute_delay]) * DAY_MS).astype(np.int64)
    kind = np.repeat(np.array([REFUND, DISPUTE], dtype=np.int64), [r, len(disputed)])
    amount = np.concatenate([refund_amount, att.amount[disputed]])
    keep = time < world.period_ms
    return Followups(parent=parent[keep], time=time[keep], kind=kind[keep], amount=amount[keep])
