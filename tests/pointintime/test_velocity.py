"""Velocity features: exact counts against a brute-force reference, point in time, outcome fields."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.pointintime import VelocityConfig, velocity_features
from tests.conftest import make_schema
from tests.evaluation.conftest import CANONICAL, make_events
from tests.pointintime.reference import event_arrays

HOUR, DAY = np.timedelta64(1, "h"), np.timedelta64(1, "D")


def _feature(features, name):
    return features.values[:, features.names.index(name)]


def test_counts_match_a_brute_force_reference():
    events = make_events(250, seed=3)
    features = velocity_features(events, make_schema())
    a = event_arrays(events)
    ids, times, kinds, amount, customer, merchant, attempt = (a.ids, a.times, a.kinds, a.amount, a.customer,
                                                              a.merchant, a.attempt)
    for i in range(len(events)):  # the slow reference: a loop over events, on purpose
        before = (times < times[i]) | ((times == times[i]) & (ids < ids[i]))
        mine = before & (customer == customer[i])
        for window, span in (("1h", HOUR), ("7d", 7 * DAY), ("30d", 30 * DAY)):
            recent = mine & attempt & (times >= times[i] - span)
            assert _feature(features, f"customer_count_{window}")[i] == recent.sum()
            assert _feature(features, f"customer_amount_{window}")[i] == pytest.approx(amount[recent].sum(), rel=1e-6)
        declines = mine & (kinds == "decline") & (times >= times[i] - DAY)
        assert _feature(features, "customer_declines_1d")[i] == declines.sum()
        at_merchant = before & (merchant == merchant[i])
        charges, disputes = (at_merchant & (kinds == "charge")).sum(), (at_merchant & (kinds == "dispute")).sum()
        rate = _feature(features, "merchant_dispute_rate")[i]
        assert (np.isnan(rate) and charges == 0) or rate == pytest.approx(disputes / charges, rel=1e-6)
        previous = np.flatnonzero(mine & attempt)
        gap = _feature(features, "customer_hours_since_last")[i]
        if len(previous):
            expected = (times[i] - times[previous].max()) / HOUR
            assert gap == pytest.approx(expected, rel=1e-5)
        else:
            assert np.isnan(gap)


def test_future_events_and_later_disputes_never_change_earlier_features():
    schema = make_schema()
    events = make_events(300, seed=5)
    cutoff = np.datetime64("2024-04-01", "ms")
    past = events.filter(pc.less(events.column("event_time"), pa.scalar(cutoff)))
    # a later dispute of an early charge, and a burst of future events by the same customers
    first = past.slice(0, 1).to_pylist()[0]
    dispute = {**first, "event_id": "late", "event_type": "dispute", "event_time": cutoff + 2 * DAY,
               "disputed_event_id": first["event_id"], "is_fraud": None, "approved": None}
    future = make_events(100, seed=6, start="2024-04-02", days=30)
    extended = pa.concat_tables([past, pa.Table.from_pylist([dispute], schema=CANONICAL), future])
    fit_until = "2024-04-01"
    before = velocity_features(past, schema, fit_until=fit_until)
    after = velocity_features(extended, schema, fit_until=fit_until)
    assert after.names == before.names
    np.testing.assert_array_equal(after.rows(before.event_id), before.values)


def test_outcomes_labels_and_ids_are_never_features(events, schema):
    features = velocity_features(events, schema)
    for name in ("event_type", "decline_code", "is_fraud", "approved", "disputed_event_id", "descriptor"):
        assert name not in features.names
    assert set(features.categorical) == {"channel", "mcc", "merchant_country", "card_country"}
    assert {"amount", "cross_border", "hour", "day_of_week", "merchant_dispute_rate"} <= set(features.names)
    with pytest.raises(ValueError, match="outcome fields"):
        velocity_features(events, schema, {"raw_fields": ["amount", "decline_code"]})


def test_categories_are_fitted_before_the_cutoff_and_reusable(events, schema):
    features = velocity_features(events, schema, fit_until="2024-01-15")
    mcc = _feature(features, "mcc")
    vocabulary = features.categories["mcc"]
    known = ~np.isnan(mcc)
    assert np.array_equal(np.array(vocabulary)[mcc[known].astype(int)],
                          np.array(events.column("mcc").to_pylist())[known])
    again = velocity_features(events, schema, categories=features.categories)
    np.testing.assert_array_equal(again.values, features.values)
    with pytest.raises(KeyError, match="no vocabulary for categorical field 'channel'"):
        velocity_features(events, schema, categories={"mcc": vocabulary})


def test_a_dataset_without_event_types_counts_every_event(schema):
    events = make_events(200).filter(pc.not_equal(make_events(200).column("event_type"), "dispute"))
    events = events.drop_columns(["event_type"])
    schema.fields.pop("event_type")
    features = velocity_features(events, schema)
    assert not [n for n in features.names if "decline" in n or "dispute" in n]
    total = _feature(features, "customer_count_total")
    # every earlier event of the customer counts
    customers = np.array(events.column("customer_id").to_pylist())
    expected = np.array([(customers[:i] == c).sum() for i, c in enumerate(customers)])
    np.testing.assert_array_equal(total, expected)


def test_disputes_without_a_merchant_follow_the_disputed_charge(events, schema):
    is_dispute = pc.equal(events.column("event_type"), "dispute")
    merchant = pc.if_else(is_dispute, pa.scalar(None, pa.string()), events.column("merchant_id"))
    blank = events.set_column(events.column_names.index("merchant_id"), "merchant_id", merchant)
    reference = velocity_features(events, schema)
    attributed = velocity_features(blank, schema)
    keep = ~is_dispute.to_numpy(zero_copy_only=False)
    column = reference.names.index("merchant_dispute_rate")
    np.testing.assert_array_equal(attributed.values[keep, column], reference.values[keep, column])
    assert np.nanmax(reference.values[:, column]) > 0


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown keys \\['window'\\]"):
        VelocityConfig.from_config({"window": ["1h"]})
    with pytest.raises(ValueError, match="cannot parse duration"):
        VelocityConfig.from_config({"windows": ["1 fortnight"]})


def test_rows_gathers_by_event_id(events, schema):
    features = velocity_features(events, schema)
    order = list(features.event_id)
    picked = features.rows(pa.array(["e00010", "e00003"]))
    np.testing.assert_array_equal(picked, features.values[[order.index("e00010"), order.index("e00003")]])
    with pytest.raises(KeyError, match="no feature row"):
        features.rows(["nope"])


def test_low_cardinality_entity_ids_can_be_features(events, schema):
    assert "issuer_id" not in velocity_features(events, schema).names
    features = velocity_features(events, schema, {"id_features": ["issuer"]})
    assert "issuer_id" in features.categorical
    codes = _feature(features, "issuer_id").astype(int)
    decoded = np.array(features.categories["issuer_id"])[codes]
    np.testing.assert_array_equal(decoded, np.array(events.column("issuer_id").to_pylist()))
