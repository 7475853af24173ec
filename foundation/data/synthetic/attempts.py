"""Columnar authorization attempts of one block, before the issuers decide on them.

Every behaviour (ordinary purchases, subscriptions, trips, each fraud pattern) produces an `Attempts`;
the block concatenates them, sorts by (customer, time) and hands them to the issuers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# Where an attempt comes from. Only its fraud pattern is written (`fraud_pattern`, a label, never a
# feature); otherwise the data shows only its consequences.
PURCHASE, SUBSCRIPTION, TRAVEL, CARD_TESTING, CASHOUT, TAKEOVER, COMPROMISE, REPLAY, DORMANT = range(9)
FIRST_FRAUD_SOURCE = CARD_TESTING  # sources >= this are fraudulent
# The planted pattern of each fraudulent source (cash-outs belong to the card-testing episode).
FRAUD_PATTERNS = ("card_testing", "account_takeover", "compromised_merchant", "replay", "dormant_reactivation")
SOURCE_PATTERN = np.array([-1, -1, -1, 0, 0, 1, 2, 3, 4])  # index into FRAUD_PATTERNS, -1 = legitimate


@dataclass
class Attempts:
    """N attempts as parallel arrays (times in ms since the period start, amounts in USD)."""

    customer: np.ndarray  # (N,) int64 customer index within the block
    time: np.ndarray  # (N,) int64
    merchant: np.ndarray  # (N,) int64 merchant index
    amount: np.ndarray  # (N,) float64 USD
    channel: np.ndarray  # (N,) int64 index into catalog.CHANNELS
    source: np.ndarray  # (N,) int64 one of the source constants above

    def __len__(self) -> int:
        return len(self.customer)

    @property
    def fraud(self) -> np.ndarray:
        """(N,) bool: the attempt was made by a fraudster."""
        return self.source >= FIRST_FRAUD_SOURCE

    @classmethod
    def build(cls, customer: np.ndarray, time: np.ndarray, merchant: np.ndarray, amount: np.ndarray,
              channel: int | np.ndarray, source: int) -> Attempts:
        """Attempts with a common source (and channel when a scalar), dtypes normalised."""
        n = len(customer)
        return cls(customer=np.asarray(customer, np.int64), time=np.asarray(time, np.int64),
                   merchant=np.asarray(merchant, np.int64), amount=np.asarray(amount, np.float64),
                   channel=np.broadcast_to(np.asarray(channel, np.int64), (n,)).copy(),
                   source=np.full(n, source, np.int64))

    @classmethod
    def concat(cls, parts: list[Attempts]) -> Attempts:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: np.ndarray) -> Attempts:
        return Attempts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sorted(self) -> Attempts:
        """Sorted by (customer, time); ties keep concatenation order so the result is deterministic."""
        return self.take(customer_time_order(self.customer, self.time))


def group_positions(counts: np.ndarray) -> np.ndarray:
    """Position of each element within its group for groups laid out back to back.

    Args:
        counts: (G,) group sizes.

    Returns:
        (sum(counts),) int64: 0, 1, ..., counts[0]-1, 0, 1, ...
    """
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every group, exclusive (first element of each group is 0).

    Args:
        values: (sum(counts),) values laid out group after group.
        counts: (G,) group sizes.

    Returns:
        (sum(counts),) exclusive cumulative sums within groups.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=values.dtype)
    exclusive = np.cumsum(values) - values
    starts = np.cumsum(counts) - counts
    return exclusive - np.repeat(exclusive[np.minimum(starts, len(values) - 1)], counts)


def customer_time_order(customer: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Stable argsort by (customer, time) through one int64 key (faster than a lexsort).

    Args:
        customer: (N,) non-negative ints below 2**26; time: (N,) ms in [0, 2**37).

    Returns:
        (N,) permutation; ties keep their input order.
    """
    return np.argsort(customer.astype(np.int64) << 37 | time, kind="stable")
