"""Velocity feature families on hand-computed cases and against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.pointintime import VelocityConfig, velocity_features
from tests.conftest import make_schema
from tests.evaluation.conftest import make_events
from tests.pointintime.reference import event_arrays
from tests.pointintime.velocity_tables import event, table, value

DAY = np.timedelta64(1, "D")


def _history():
    return table([
        event("e1", 0.0, amount=10.0),
        event("e2", 0.5, merchant="m2", amount=20.0),
        event("e3", 2.0, amount=30.0),
        event("e4", 2 + 10 / 60, amount=60.0),
        event("e5", 2.5, customer="c2", amount=5.0),
        event("e6", 3.0, customer="c2", merchant=None, amount=7.0),
    ])


def test_window_amount_and_history_features_on_a_hand_computed_case():
    features = velocity_features(_history(), make_schema())
    expected = {  # e4: c1 paid 10 (m1), 20 (m2), 30 (m1) in the last day, 30 in the last hour
        "customer_count_1h": 1, "customer_amount_1h": 30, "customer_amount_mean_1h": 30,
        "customer_amount_max_1h": 30, "customer_count_1d": 3, "customer_amount_1d": 60,
        "customer_amount_mean_1d": 20, "customer_amount_max_1d": 30, "customer_distinct_merchant_1h": 1,
        "customer_distinct_merchant_1d": 2, "customer_count_total": 3, "customer_amount_vs_mean_30d": 3,
        "customer_amount_z_30d": 4,  # (60 - 20) / sample std of (10, 20, 30)
        "customer_merchant_pair_count": 2, "customer_merchant_first_pair": 0, "is_night": 0,
        "merchant_count_1d": 2, "merchant_distinct_customer_1d": 1,
    }
    for name, wanted in expected.items():
        assert value(features, "e4", name) == pytest.approx(wanted, rel=1e-5), name
    assert value(features, "e4", "customer_hours_since_last") == pytest.approx(10 / 60, rel=1e-4)
    assert value(features, "e2", "customer_merchant_first_pair") == 1
    assert value(features, "e1", "is_night") == 1  # 05:00
    assert value(features, "e5", "merchant_distinct_customer_1d") == 1  # c1 (three times)
    assert np.isnan(value(features, "e1", "customer_amount_mean_1d"))  # no history
    assert np.isnan(value(features, "e1", "customer_amount_max_1d"))
    assert np.isnan(value(features, "e2", "customer_amount_z_30d"))  # one earlier amount has no spread


def test_a_missing_counterparty_gives_missing_pair_features_and_is_not_counted():
    features = velocity_features(_history(), make_schema())
    assert np.isnan(value(features, "e6", "customer_merchant_pair_count"))
    assert np.isnan(value(features, "e6", "merchant_count_1d"))
    assert value(features, "e6", "customer_count_1d") == 1
    assert value(features, "e6", "customer_distinct_merchant_1d") == 1


def test_distinct_max_and_pairs_match_a_brute_force_reference():
    events = make_events(300, seed=11, days=20)
    features = velocity_features(events, make_schema())
    a = event_arrays(events)
    ids, times, amount, customer, merchant, attempt = a.ids, a.times, a.amount, a.customer, a.merchant, a.attempt
    column = {name: features.values[:, j] for j, name in enumerate(features.names)}
    for i in range(len(events)):  # the slow reference: a loop over events, on purpose
        before = attempt & ((times < times[i]) | ((times == times[i]) & (ids < ids[i])))
        for window, span in (("1d", DAY), ("7d", 7 * DAY)):
            recent = before & (times >= times[i] - span)
            mine, here = recent & (customer == customer[i]), recent & (merchant == merchant[i])
            assert column[f"customer_distinct_merchant_{window}"][i] == len(set(merchant[mine]))
            assert column[f"merchant_distinct_customer_{window}"][i] == len(set(customer[here]))
            top = column[f"merchant_amount_max_{window}"][i]
            assert (np.isnan(top) and not here.any()) or top == pytest.approx(amount[here].max(), rel=1e-6)
        pair = (before & (customer == customer[i]) & (merchant == merchant[i])).sum()
        assert column["customer_merchant_pair_count"][i] == pair


def test_the_config_block_picks_families():
    events = make_events(60, seed=1)
    bare = velocity_features(events, make_schema(), {"entities": ["customer"], "pairs": [],
                                                    "risk_entities": [], "windows": ["1d"]})
    assert not [n for n in bare.names if "distinct" in n or "pair" in n or "risk" in n or n.startswith("merchant_count_")]
    assert "customer_amount_max_1d" in bare.names and "customer_count_7d" not in bare.names
    with pytest.raises(ValueError, match="velocity.pairs"):
        VelocityConfig.from_config({"pairs": [["customer", "customer"]]})
    with pytest.raises(ValueError, match="night_hours"):
        VelocityConfig.from_config({"night_hours": [25, 3]})
    late = velocity_features(events, make_schema(), {"night_hours": [22, 6]})
    hours = late.values[:, late.names.index("hour")]
    np.testing.assert_array_equal(late.values[:, late.names.index("is_night")], (hours >= 22) | (hours < 6))


def test_raw_field_only_calls_keep_the_raw_block():
    events = make_events(80, seed=2)
    raw = velocity_features(events, make_schema(), {"entities": [], "decline_entities": [], "dispute_entities": []})
    assert raw.names == ["amount", "channel", "mcc", "merchant_country", "card_country", "cross_border", "hour",
                         "day_of_week"]
