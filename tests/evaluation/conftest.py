"""Tiny canonical event tables for the evaluation tests (their schema: tests/conftest.py `make_schema`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

CANONICAL = pa.schema(
    [("event_id", pa.string()), ("event_time", pa.timestamp("ms"))]
    + [(name, pa.string()) for name in ("customer_id", "merchant_id", "issuer_id", "event_type")]
    + [("amount", pa.float64())]
    + [(name, pa.string()) for name in
       ("channel", "mcc", "merchant_country", "card_country", "decline_code", "disputed_event_id", "descriptor")]
    + [("is_fraud", pa.float64()), ("approved", pa.float64())]
)


def make_events(n: int = 400, seed: int = 0, start: str = "2024-01-01", days: int = 180) -> pa.Table:
    """A canonical event table: attempts (charge/decline) plus disputes of some fraudulent charges."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start, "ms")
    offsets = np.sort(rng.integers(0, days * 86_400_000, n))
    times = t0 + offsets.astype("timedelta64[ms]")
    customer = rng.integers(0, 12, n)
    merchant = rng.integers(0, 6, n)
    fraud = (rng.random(n) < 0.15).astype(float)
    declined = rng.random(n) < 0.1 + 0.3 * fraud
    event_type = np.where(declined, "decline", "charge").astype(object)
    table = {
        "event_id": [f"e{i:05d}" for i in range(n)],
        "event_time": times,
        "customer_id": [f"c{c}" for c in customer],
        "merchant_id": [f"m{m}" for m in merchant],
        "issuer_id": [f"i{c % 3}" for c in customer],
        "event_type": event_type,
        "amount": np.round(rng.lognormal(3, 1, n) * (1 + 2 * fraud), 2),
        "channel": rng.choice(["card_present", "ecommerce", "recurring"], n),
        "mcc": rng.choice(["5411", "5812", "5999", "7995"], n),
        "merchant_country": rng.choice(["US", "GB"], n, p=[0.8, 0.2]),
        "card_country": rng.choice(["US", "GB"], n, p=[0.9, 0.1]),
        "decline_code": np.where(declined, "05", None),
        "disputed_event_id": [None] * n,
        "descriptor": ["SHOP"] * n,
        "is_fraud": fraud,
        "approved": (~declined).astype(float),
    }
    events = pa.table(table, schema=CANONICAL)
    # disputes of fraudulent approved charges land 3 days later, on the merchant's timeline
    disputed = np.flatnonzero((fraud == 1) & ~declined)
    disputes = pa.table({
        "event_id": [f"d{i:05d}" for i in disputed],
        "event_time": times[disputed] + np.timedelta64(3, "D"),
        "customer_id": [f"c{customer[i]}" for i in disputed],
        "merchant_id": [f"m{merchant[i]}" for i in disputed],
        "issuer_id": [f"i{customer[i] % 3}" for i in disputed],
        "event_type": ["dispute"] * len(disputed),
        "amount": table["amount"][disputed],
        "channel": table["channel"][disputed],
        "mcc": table["mcc"][disputed],
        "merchant_country": table["merchant_country"][disputed],
        "card_country": table["card_country"][disputed],
        "decline_code": [None] * len(disputed),
        "disputed_event_id": [f"e{i:05d}" for i in disputed],
        "descriptor": ["SHOP"] * len(disputed),
        "is_fraud": [None] * len(disputed),
        "approved": [None] * len(disputed),
    }, schema=CANONICAL)
    combined = pa.concat_tables([events, disputes])
    return combined.sort_by([("event_time", "ascending"), ("event_id", "ascending")])


@pytest.fixture
def events() -> pa.Table:
    return make_events()
