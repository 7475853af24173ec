"""Parameters of the synthetic payments world (conf/synthetic/default.yaml instantiates `synthetic_config`).

Every planted behaviour has its own parameter group; each field is documented where it is declared.
`config_hash` fingerprints everything that changes the bytes written (not where they are written).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

# Bump on a deliberate change of the data layout; edits of the generator's code are caught by
# `_source_digest` anyway, so files written by older code are never mistaken for current ones.
GENERATOR_VERSION = "1"


def _check(cond: bool, name: str, problem: str) -> None:
    if not cond:
        raise ValueError(f"synthetic config: `{name}` {problem}")


def _check_share(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(0.0 <= value <= 1.0, f"{type(obj).PREFIX}.{name}", f"must be in [0, 1], got {value}")


def _check_range(obj: Any, low: str, high: str, positive: bool = True) -> None:
    lo, hi = getattr(obj, low), getattr(obj, high)
    prefix = type(obj).PREFIX
    _check(lo <= hi, f"{prefix}.{low}", f"({lo}) must not exceed `{prefix}.{high}` ({hi})")
    if positive:
        _check(lo > 0, f"{prefix}.{low}", f"must be > 0, got {lo}")


@dataclass(frozen=True)
class CustomerParams:
    """Legitimate behaviour of customers (one card each)."""

    PREFIX = "customers"
    activity_sigma: float = 0.8  # log-normal spread of purchase rates between customers
    spend_sigma: float = 0.5  # log-normal spread of spending level (multiplies all amounts)
    category_concentration: float = 20.0  # Dirichlet concentration of category tastes (lower = more idiosyncratic)
    loyalty: float = 0.6  # share of purchases at the customer's favourite merchant of the category
    online_sigma: float = 0.5  # log-normal spread of the propensity to shop online
    late_start_share: float = 0.15  # cards issued after the period start
    early_end_share: float = 0.05  # cards closed before the period end
    subscriptions_mean: float = 2.0  # mean number of monthly subscriptions (channel `recurring`)
    trips_per_year: float = 1.0  # mean trips abroad per customer-year (legit country shifts)
    trip_days_min: float = 2.0
    trip_days_max: float = 14.0
    home_online_share: float = 0.8  # ecommerce purchases at domestic merchants (rest: anywhere)
    wrong_cvv_rate: float = 0.004  # legit ecommerce attempts with a mistyped CVV (declined N7)
    refund_delay_days_median: float = 6.0
    full_refund_share: float = 0.7  # refunds of the whole amount (rest: partial)

    def __post_init__(self) -> None:
        _check_share(self, "loyalty", "late_start_share", "early_end_share", "home_online_share",
                     "wrong_cvv_rate", "full_refund_share")
        _check_range(self, "trip_days_min", "trip_days_max")
        for name in ("activity_sigma", "spend_sigma", "online_sigma", "subscriptions_mean", "trips_per_year"):
            _check(getattr(self, name) >= 0, f"customers.{name}", "must be >= 0")
        _check(self.category_concentration > 0, "customers.category_concentration", "must be > 0")
        _check(self.refund_delay_days_median > 0, "customers.refund_delay_days_median", "must be > 0")


@dataclass(frozen=True)
class CardTestingParams:
    """Pattern 1: a burst of tiny ecommerce attempts on a card, mostly declined, then large cash-outs."""

    PREFIX = "card_testing"
    card_rate: float = 0.02  # share of cards hit by one card-testing episode
    n_merchants: int = 6  # online US merchants (digital goods, charities) fraudsters test on
    attempts_min: int = 6  # attempts per burst
    attempts_max: int = 30
    amount_min: float = 0.5  # USD, uniform
    amount_max: float = 2.0
    seconds_between_mean: float = 15.0  # exponential gaps between attempts of a burst
    invalid_rate: float = 0.6  # attempts with a wrong CVV/expiry guess (declined N7/54/14)
    cashout_min: int = 3  # large fraudulent charges after the burst
    cashout_max: int = 8
    cashout_delay_hours_median: float = 6.0  # log-normal delay from the burst to the first cash-out
    cashout_gap_minutes_mean: float = 45.0
    cashout_amount_median: float = 350.0  # USD, log-normal (sigma 0.6)
    cashout_foreign_share: float = 0.5  # cash-outs at merchants anywhere in the world (rest: domestic)

    def __post_init__(self) -> None:
        _check_share(self, "card_rate", "invalid_rate", "cashout_foreign_share")
        _check_range(self, "attempts_min", "attempts_max")
        _check_range(self, "amount_min", "amount_max")
        _check_range(self, "cashout_min", "cashout_max")
        _check(self.n_merchants >= 1, "card_testing.n_merchants", "must be >= 1")
        for name in ("seconds_between_mean", "cashout_delay_hours_median", "cashout_gap_minutes_mean",
                     "cashout_amount_median"):
            _check(getattr(self, name) > 0, f"card_testing.{name}", "must be > 0")


@dataclass(frozen=True)
class AccountTakeoverParams:
    """Pattern 2: a fraudster takes over a card: sudden shift of country, MCCs and amounts."""

    PREFIX = "account_takeover"
    customer_rate: float = 0.02  # share of customers with one takeover episode
    duration_days_min: float = 1.0  # every fraudster event in the episode is fraud
    duration_days_max: float = 10.0
    events_per_day: float = 5.0  # fraudster attempts per day (Poisson); the owner keeps transacting too
    amount_multiplier: float = 2.0  # fraudster amounts relative to the customer's own spending level
    online_share: float = 0.75  # ecommerce share (rest: card present with a cloned card abroad)

    def __post_init__(self) -> None:
        _check_share(self, "customer_rate", "online_share")
        _check_range(self, "duration_days_min", "duration_days_max")
        _check(self.events_per_day > 0, "account_takeover.events_per_day", "must be > 0")
        _check(self.amount_multiplier > 0, "account_takeover.amount_multiplier", "must be > 0")


@dataclass(frozen=True)
class CompromiseParams:
    """Pattern 3: compromised merchants leak the cards used there during a window; fraud follows later."""

    PREFIX = "compromised_merchants"
    merchant_rate: float = 0.02  # share of merchants compromised once (skimmer or breach)
    window_days_min: float = 7.0
    window_days_max: float = 30.0
    exploit_prob: float = 0.7  # probability a card seen during the window is later used by fraudsters
    delay_days_min: float = 3.0  # from the customer's first visit in the window to the fraud
    delay_days_max: float = 40.0
    events_min: int = 1  # fraudulent attempts per exploited card, hours apart
    events_max: int = 6
    amount_median: float = 180.0  # USD, log-normal (sigma 0.7)
    cloned_card_share: float = 0.3  # card present abroad with a cloned card (rest: ecommerce)

    def __post_init__(self) -> None:
        _check_share(self, "merchant_rate", "exploit_prob", "cloned_card_share")
        _check_range(self, "window_days_min", "window_days_max")
        _check_range(self, "delay_days_min", "delay_days_max")
        _check_range(self, "events_min", "events_max")
        _check(self.amount_median > 0, "compromised_merchants.amount_median", "must be > 0")


@dataclass(frozen=True)
class ReplayParams:
    """Pattern 6: the card's last purchases are re-submitted, same merchants, amounts and hours, days later."""

    PREFIX = "replay"
    customer_rate: float = 0.01  # share of customers with one replay episode
    events_min: int = 2  # purchases replayed, in their original order
    events_max: int = 5
    delay_days_min: int = 1  # whole days after the last replayed purchase's day (so hours stay habitual)
    delay_days_max: int = 6

    def __post_init__(self) -> None:
        _check_share(self, "customer_rate")
        _check_range(self, "events_min", "events_max")
        _check_range(self, "delay_days_min", "delay_days_max")


@dataclass(frozen=True)
class DormantParams:
    """Pattern 7: after weeks without purchases, a card buys in categories it never used, at ordinary prices."""

    PREFIX = "dormant_reactivation"
    customer_rate: float = 0.03  # share of customers with a dormant spell who are hit once
    dormant_days: float = 14.0  # days without a purchase (subscriptions still bill) before the fraud
    rare_taste: float = 0.01  # categories below this share of the customer's tastes count as new to it
    events_min: int = 1  # fraudulent purchases, hours apart, at domestic merchants
    events_max: int = 4
    gap_hours_mean: float = 8.0

    def __post_init__(self) -> None:
        _check_share(self, "customer_rate", "rare_taste")
        _check_range(self, "events_min", "events_max")
        _check(self.dormant_days > 0, "dormant_reactivation.dormant_days", "must be > 0")
        _check(self.gap_hours_mean > 0, "dormant_reactivation.gap_hours_mean", "must be > 0")


@dataclass(frozen=True)
class IssuerParams:
    """Pattern 4: per-issuer authorization rules (logits; each issuer draws its own coefficients)."""

    PREFIX = "issuers"
    strictness_mean: float = -3.8  # base logit of a "do not honour" (05) decline
    strictness_sd: float = 0.5  # spread of strictness between issuers
    amount_coef_min: float = 0.25  # logit per unit of log(amount_usd / 50)
    amount_coef_max: float = 0.6
    cross_border_coef_min: float = 0.8  # logit when merchant country != card country (online; half in person)
    cross_border_coef_max: float = 1.8
    velocity_coef_min: float = 0.4  # logit per log1p(attempts in the last hour) (+ half for the last day)
    velocity_coef_max: float = 1.0
    velocity_limit_min: int = 4  # attempts per hour after which the issuer declines with 65
    velocity_limit_max: int = 8
    risky_mcc_coef: float = 1.5  # logit for gambling / crypto / money transfer
    ecommerce_coef: float = 0.3
    fraud_base_logit: float = -7.0  # suspected-fraud (59) model: base logit ...
    fraud_risk_coef: float = 0.5  # ... + coef * risk score (amount, cross-border, risky MCC, velocity) ...
    fraud_skill_min: float = 2.0  # ... + skill on truly fraudulent attempts (what the issuer sees that we do not)
    fraud_skill_max: float = 4.0
    gambling_block_share: float = 0.3  # issuers that refuse gambling outright (57)
    technical_rate: float = 0.002  # issuer unavailable (91)

    def __post_init__(self) -> None:
        _check_share(self, "gambling_block_share", "technical_rate")
        _check(self.strictness_sd >= 0, "issuers.strictness_sd", "must be >= 0")
        for low, high in (("amount_coef_min", "amount_coef_max"), ("cross_border_coef_min", "cross_border_coef_max"),
                          ("velocity_coef_min", "velocity_coef_max"), ("fraud_skill_min", "fraud_skill_max")):
            _check_range(self, low, high, positive=False)
        _check_range(self, "velocity_limit_min", "velocity_limit_max")


@dataclass(frozen=True)
class FundsParams:
    """Pattern 5: spending depletes funds that refill on payday; overspending gives 51 declines."""

    PREFIX = "funds"
    tight_share: float = 0.25  # customers living paycheck to paycheck
    tight_income_min: float = 0.5  # income per pay period / the customer's mean spending per period
    tight_income_max: float = 0.9
    loose_income_min: float = 1.6
    loose_income_max: float = 4.0
    period_sigma: float = 0.25  # log-normal noise of the budget from one pay period to the next
    savings_cap: float = 2.0  # unspent funds carry over, up to this many paydays' income

    def __post_init__(self) -> None:
        _check_share(self, "tight_share")
        _check_range(self, "tight_income_min", "tight_income_max")
        _check_range(self, "loose_income_min", "loose_income_max")
        _check(self.period_sigma >= 0, "funds.period_sigma", "must be >= 0")
        _check(self.savings_cap >= 0, "funds.savings_cap", "must be >= 0")


@dataclass(frozen=True)
class DisputeParams:
    """Fraud labels arrive late: a `dispute` event referencing an approved fraudulent charge."""

    PREFIX = "disputes"
    report_prob: float = 0.9  # probability a fraudulent charge is disputed ...
    report_prob_small: float = 0.4  # ... when below `small_amount` USD (cardholders miss tiny charges)
    small_amount: float = 5.0
    delay_days_min: float = 2.0  # log-normal delay, clipped to [min, max]
    delay_days_median: float = 9.0
    delay_days_max: float = 30.0

    def __post_init__(self) -> None:
        _check_share(self, "report_prob", "report_prob_small")
        _check_range(self, "delay_days_min", "delay_days_max")
        _check(self.delay_days_min <= self.delay_days_median <= self.delay_days_max, "disputes.delay_days_median",
               "must lie between delay_days_min and delay_days_max")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines the synthetic world and its files.

    Attributes:
        seed: master seed; with the other fields it fixes every byte written.
        start, end: ISO dates, half-open period [start, end).
        n_events: target number of events (the realised count is within a few percent).
        n_customers, n_merchants, n_issuers: entity counts.
        block_customers: customers simulated together with one random stream (memory ~ block size);
            changing it changes the data.
        blocks_per_file: blocks per parquet part (file layout only; concatenated rows do not change).
        compression: parquet codec.
        events_dir: folder of the parquet parts (and of `_manifest.json`, which readers skip).
    """

    seed: int = 7
    start: str = "2024-01-01"
    end: str = "2024-07-01"
    n_events: int = 2_000_000
    n_customers: int = 20_000
    n_merchants: int = 2_000
    n_issuers: int = 30
    block_customers: int = 1024
    blocks_per_file: int = 8
    compression: str = "zstd"
    events_dir: str = "data/synthetic/events"
    customers: CustomerParams = field(default_factory=CustomerParams)
    card_testing: CardTestingParams = field(default_factory=CardTestingParams)
    account_takeover: AccountTakeoverParams = field(default_factory=AccountTakeoverParams)
    compromised_merchants: CompromiseParams = field(default_factory=CompromiseParams)
    replay: ReplayParams = field(default_factory=ReplayParams)
    dormant_reactivation: DormantParams = field(default_factory=DormantParams)
    issuers: IssuerParams = field(default_factory=IssuerParams)
    funds: FundsParams = field(default_factory=FundsParams)
    disputes: DisputeParams = field(default_factory=DisputeParams)

    def __post_init__(self) -> None:
        try:
            days = (date.fromisoformat(self.end) - date.fromisoformat(self.start)).days
        except ValueError as err:
            raise ValueError(f"synthetic config: `start`/`end` must be ISO dates: {err}") from err
        _check(days >= 28, "end", f"must be at least 28 days after `start` ({self.start} -> {self.end})")
        _check(self.n_customers >= 1, "n_customers", f"must be >= 1, got {self.n_customers}")
        _check(self.n_issuers >= 1, "n_issuers", f"must be >= 1, got {self.n_issuers}")
        _check(self.n_events >= self.n_customers, "n_events", f"({self.n_events}) must be >= n_customers ({self.n_customers})")
        _check(self.block_customers >= 1, "block_customers", "must be >= 1")
        _check(self.blocks_per_file >= 1, "blocks_per_file", "must be >= 1")

    @property
    def n_blocks(self) -> int:
        return -(-self.n_customers // self.block_customers)


_GROUP_CLASSES = {
    "customers": CustomerParams, "card_testing": CardTestingParams, "account_takeover": AccountTakeoverParams,
    "compromised_merchants": CompromiseParams, "replay": ReplayParams, "dormant_reactivation": DormantParams,
    "issuers": IssuerParams, "funds": FundsParams,
    "disputes": DisputeParams,
}


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"synthetic config: unknown parameter(s) {unknown} in `{where}` (known: {sorted(types)})")
    # Command-line overrides like n_events=2e6 arrive as floats; normalise so the config hash is stable.
    values = dict(values)
    for name, value in values.items():
        if types[name] == "int" and isinstance(value, float) and value.is_integer():
            values[name] = int(value)
        elif types[name] == "float" and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    return cls(**values)


def synthetic_config(**values: Any) -> SyntheticConfig:
    """Build a validated `SyntheticConfig` from plain (possibly nested) mappings, e.g. a Hydra node.

    Args:
        **values: top-level fields; parameter groups as mappings (or the dataclasses themselves).

    Returns:
        The config. Raises ValueError naming the field on unknown keys or out-of-range values.
    """
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    for group, cls in _GROUP_CLASSES.items():
        if isinstance(values.get(group), Mapping):
            values[group] = _build(cls, dict(values[group]), group)
    return _build(SyntheticConfig, values, "synthetic")


@functools.cache
def _source_digest() -> str:
    """sha256 of the generator's source files (the package this module lives in)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def config_hash(config: SyntheticConfig) -> str:
    """Fingerprint of everything that changes the written bytes (16 hex chars).

    Covers every parameter except `events_dir`, the generator version and its source code.
    """
    payload = dataclasses.asdict(config)
    payload.pop("events_dir")
    payload["generator"] = [GENERATOR_VERSION, _source_digest()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
