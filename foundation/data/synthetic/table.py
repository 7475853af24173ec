"""Turn a block's attempts and follow-ups into the raw event table of the synthetic world (the synthetic
raw event contract: the column names and types conf/data/synthetic.yaml maps)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from foundation.data.synthetic.attempts import FRAUD_PATTERNS, SOURCE_PATTERN, Attempts, customer_time_order
from foundation.data.synthetic.authorization import APPROVED
from foundation.data.synthetic.catalog import CHANNELS, CHARGE, DECLINE, DECLINE_CODES, DISPUTE, EVENT_TYPES
from foundation.data.synthetic.config import SyntheticConfig
from foundation.data.synthetic.customers import STREAM_TABLE, CustomerBlock, block_rng
from foundation.data.synthetic.followups import Followups
from foundation.data.synthetic.world import World

EVENT_SCHEMA = pa.schema([
    ("event_id", pa.int64()),
    ("ts", pa.timestamp("ms")),
    ("card_id", pa.int64()),
    ("merchant_id", pa.int64()),
    ("issuer_id", pa.int64()),
    ("event_type", pa.string()),
    ("amount", pa.float64()),
    ("currency", pa.string()),
    ("mcc", pa.string()),
    ("merchant_country", pa.string()),
    ("card_country", pa.string()),
    ("channel", pa.string()),
    ("merchant_descriptor", pa.string()),
    ("decline_code", pa.string()),
    ("disputed_event_id", pa.int64()),
    ("is_fraud", pa.float64()),
    ("approved", pa.float64()),
    ("fraud_pattern", pa.string()),  # the planted pattern of a fraudulent attempt: a label, never a feature
])
_EVENT_TYPES = pa.array(EVENT_TYPES, pa.string())
_CHANNELS = pa.array(CHANNELS, pa.string())
_DECLINE_CODES = pa.array(DECLINE_CODES, pa.string())
_FRAUD_PATTERNS = pa.array(FRAUD_PATTERNS, pa.string())


def event_kinds(att: Attempts, code: np.ndarray, follow: Followups) -> np.ndarray:
    """(N + F,) event type index of attempts (charge/decline) followed by follow-ups (refund/dispute)."""
    return np.concatenate([np.where(code == APPROVED, CHARGE, DECLINE), follow.kind])


def assemble(config: SyntheticConfig, world: World, cb: CustomerBlock, att: Attempts, code: np.ndarray,
             follow: Followups, first_event_id: int) -> pa.Table:
    """Build the block's rows, sorted by (card_id, ts), with ids `first_event_id, first_event_id + 1, ...`.

    Args:
        att: (N,) attempts sorted by (customer, time); code: (N,) their decisions.
        follow: F follow-ups referring to attempts by index.
        first_event_id: id of the block's first row.

    Returns:
        A table with EVENT_SCHEMA, N + F rows.
    """
    rng = block_rng(config.seed, cb.block, STREAM_TABLE)
    n = len(att)
    # Descriptor variant per attempt (e.g. "AMZN MKTP US*2K4"); follow-ups repeat their charge's descriptor.
    variant = (rng.random(n) * world.descriptor_count[att.merchant]).astype(np.int64)
    descriptor = world.descriptor_offset[att.merchant] + variant

    parent = np.concatenate([np.arange(n), follow.parent])
    time = np.concatenate([att.time, follow.time])
    kind = event_kinds(att, code, follow)
    amount_usd = np.concatenate([att.amount, follow.amount])
    customer = att.customer[parent]
    order = customer_time_order(customer, time)
    parent, time, kind, amount_usd, customer = parent[order], time[order], kind[order], amount_usd[order], customer[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    event_id = first_event_id + np.arange(len(order), dtype=np.int64)
    attempt_id = first_event_id + position[:n]

    merchant = att.merchant[parent]
    currency = world.merchant_currency[merchant]
    scale = 10.0 ** world.currency_decimals[currency]
    amount = np.maximum(np.round(amount_usd * world.currency_fx[currency] * scale), 1.0) / scale
    is_attempt = kind <= DECLINE
    dispute = kind == DISPUTE
    decline = kind == DECLINE
    pattern = SOURCE_PATTERN[att.source[parent]]
    no_pattern = (pattern < 0) | ~is_attempt
    columns = [
        event_id,
        pa.array((world.start + time.astype("timedelta64[ms]")).astype("datetime64[ms]"), pa.timestamp("ms")),
        cb.first + customer + 1,
        merchant + 1,
        cb.issuer[customer] + 1,
        _EVENT_TYPES.take(kind),
        amount,
        world.currency_codes.take(currency),
        world.merchant_mcc.take(merchant),
        world.country_codes.take(world.merchant_country[merchant]),
        world.country_codes.take(cb.country[customer]),
        _CHANNELS.take(att.channel[parent]),
        world.descriptors.take(descriptor[parent]),
        _DECLINE_CODES.take(pa.array(np.where(decline, code[parent], 0), mask=~decline)),
        pa.array(np.where(dispute, attempt_id[parent], 0), pa.int64(), mask=~dispute),
        pa.array(att.fraud[parent].astype(np.float64), pa.float64(), mask=~is_attempt),
        pa.array((kind == CHARGE).astype(np.float64), pa.float64(), mask=~is_attempt),
        _FRAUD_PATTERNS.take(pa.array(np.where(no_pattern, 0, pattern), mask=no_pattern)),
    ]
    return pa.Table.from_arrays([pa.array(c) if isinstance(c, np.ndarray) else c for c in columns],
                                schema=EVENT_SCHEMA)
