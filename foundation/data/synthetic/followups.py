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
    n = len(att)
    u = rng.random((4, n))
    z = rng.standard_normal((2, n))
    approved = code == APPROVED
    c, d = config.customers, config.disputes

    refunded = (approved & np.isin(att.source, (PURCHASE, TRAVEL))
                & (u[0] < world.cat_refund[world.merchant_cat[att.merchant]]))
    refund_delay = np.clip(np.exp(np.log(c.refund_delay_days_median) + 0.8 * z[0]), 0.1, 60.0) * DAY_MS
    refund_amount = np.where(u[1] < c.full_refund_share, att.amount, att.amount * (0.2 + 0.7 * u[2]))

    report = np.where(att.amount < d.small_amount, d.report_prob_small, d.report_prob)
    disputed = approved & att.fraud & (u[3] < report)
    sigma = np.log(d.delay_days_max / d.delay_days_min) / 4  # ~95% of delays inside [min, max] before clipping
    dispute_delay = np.clip(np.exp(np.log(d.delay_days_median) + sigma * z[1]), d.delay_days_min,
                            d.delay_days_max) * DAY_MS

    parent = np.concatenate([np.nonzero(refunded)[0], np.nonzero(disputed)[0]])
    time = np.concatenate([att.time[refunded] + refund_delay[refunded].astype(np.int64),
                           att.time[disputed] + dispute_delay[disputed].astype(np.int64)])
    kind = np.concatenate([np.full(int(refunded.sum()), REFUND), np.full(int(disputed.sum()), DISPUTE)])
    amount = np.concatenate([refund_amount[refunded], att.amount[disputed]])
    keep = time < world.period_ms
    return Followups(parent=parent[keep], time=time[keep], kind=kind[keep].astype(np.int64), amount=amount[keep])
