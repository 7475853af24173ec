"""The event table as plain numpy arrays, for the slow brute-force references of the velocity tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa


def event_arrays(events: pa.Table) -> SimpleNamespace:
    """ids, times, kinds, amount, customer, merchant and the attempt mask (charge or decline) of `events`."""
    kinds = np.array(events.column("event_type").to_pylist())
    return SimpleNamespace(
        ids=np.array(events.column("event_id").to_pylist()), times=events.column("event_time").to_numpy(),
        kinds=kinds, amount=events.column("amount").to_numpy(),
        customer=np.array(events.column("customer_id").to_pylist()),
        merchant=np.array(events.column("merchant_id").to_pylist()), attempt=np.isin(kinds, ["charge", "decline"]))
