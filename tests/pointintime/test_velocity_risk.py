"""Label-delayed risk: known frauds among an entity's attempts of (t - delay - d, t - delay], never early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from foundation.data.schema import DataSchema
from foundation.pointintime import VelocityConfig, velocity_features
from tests.conftest import make_schema
from tests.pointintime.velocity_tables import event, table, value

D = 24.0  # hours
ROOT = Path(__file__).resolve().parents[2]


def _labelled(fraud_a3: float = 1.0, fraud_s3: float = 0.0):
    return table([
        event("a1", 0.0, customer="c1", fraud=1.0),
        event("a2", 1.0, customer="c2"),
        event("a3", 3 * D, customer="c3", fraud=fraud_a3),  # its label lands at day 10
        event("s1", 7 * D + 0.5, customer="c4"),
        event("s2", 7 * D + 2, customer="c5"),
        event("s3", 9 * D, customer="c6", fraud=fraud_s3),
        event("s4", 10 * D, customer="c7"),
        event("s5", 8 * D, customer="c1"),
    ])


def test_label_column_risk_on_a_hand_computed_case():
    features = velocity_features(_labelled(), make_schema(label_delay="7d"))
    assert value(features, "s1", "merchant_risk_count_1d") == 1  # cohort (-23.5h, 0.5h]: a1
    assert value(features, "s1", "merchant_risk_rate_1d") == 1
    assert value(features, "s2", "merchant_risk_rate_1d") == 0.5  # a1 of a1, a2
    assert value(features, "s3", "merchant_risk_count_1d") == 0  # cohort (day 1, day 2] is empty
    assert np.isnan(value(features, "s3", "merchant_risk_rate_1d"))
    assert value(features, "s3", "merchant_risk_rate_7d") == 0.5  # a3's label has not landed by day 9
    assert value(features, "s4", "merchant_risk_rate_7d") == pytest.approx(2 / 3)  # ... and has by day 10
    assert value(features, "s5", "customer_risk_count_7d") == 1  # c1's own fraud of day 0


def test_a_label_that_lands_after_t_never_changes_the_features_at_t():
    schema = make_schema(label_delay="7d")
    before = velocity_features(_labelled(fraud_a3=1.0), schema)
    flipped = velocity_features(_labelled(fraud_a3=0.0), schema)
    np.testing.assert_array_equal(flipped.rows(["s1", "s2", "s3"]), before.rows(["s1", "s2", "s3"]))
    assert value(flipped, "s4", "merchant_risk_count_7d") == 1  # the positive case: landed by day 10
    own = velocity_features(_labelled(fraud_s3=1.0), schema)  # the scored event's own label
    np.testing.assert_array_equal(own.rows(["s3", "s4"]), before.rows(["s3", "s4"]))


def test_without_delay_an_event_still_never_reads_its_own_label():
    schema = make_schema(label_delay="0d")
    rows = [event("a1", 0.0, customer="c1"), event("a2", 1.0, customer="c2")]
    base = velocity_features(table(rows), schema)
    rows[0]["is_fraud"] = 1.0
    flipped = velocity_features(table(rows), schema)
    np.testing.assert_array_equal(flipped.rows(["a1"]), base.rows(["a1"]))
    assert value(flipped, "a2", "merchant_risk_count_1d") == 1


def _disputed(dispute_hours: float, dispute_id: str = "d1", merchant: str | None = "m1"):
    return table([
        event("a1", 0.0, customer="c1"), event("a2", 1.0, customer="c2"),
        event(dispute_id, dispute_hours, customer="c1", merchant=merchant, kind="dispute", ref="a1"),
        event("s1", 7 * D + 2, customer="c3"), event("s2", 7 * D + 4, customer="c4"),
    ], drop=("is_fraud",))


def test_a_dispute_counts_only_once_it_has_landed():
    schema = make_schema(label_delay="7d")
    early = velocity_features(_disputed(48.0), schema)
    assert value(early, "s1", "merchant_risk_rate_1d") == 0.5  # a1 (disputed on day 2) of a1, a2
    assert value(early, "s1", "customer_risk_count_1d") == 0  # c3 has no history
    late = velocity_features(_disputed(7 * D + 3), schema)  # lands between s1 and s2
    assert value(late, "s1", "merchant_risk_count_1d") == 0
    assert value(late, "s2", "merchant_risk_count_1d") == 1
    tie_before = velocity_features(_disputed(7 * D + 2, dispute_id="d0"), schema)  # same time, earlier id
    tie_after = velocity_features(_disputed(7 * D + 2, dispute_id="z9"), schema)
    assert value(tie_before, "s1", "merchant_risk_count_1d") == 1
    assert value(tie_after, "s1", "merchant_risk_count_1d") == 0
    blank = velocity_features(_disputed(48.0, merchant=None), schema)  # attributed through the reference
    assert value(blank, "s1", "merchant_risk_rate_1d") == 0.5


def test_risk_labels_must_be_labels_of_the_schema():
    events = _labelled()
    with pytest.raises(ValueError, match="risk_labels \\['amount'\\] are columns but not labels"):
        velocity_features(events, make_schema(), {"risk_labels": ["amount"]})
    none = velocity_features(events.drop_columns(["is_fraud"]), make_schema())
    assert not [n for n in none.names if "risk" in n]


def _minimal_events() -> pa.Table:
    rows = [event("t1", 0.0, customer="c1"), event("t2", 1.0, customer="c2"),
            event("s0", 7 * D - 1, customer="c3"),
            event("x1", 7 * D, customer="c1", kind="dispute"),  # names no transaction
            event("s1", 7 * D + 1, customer="c3"), event("s2", 7 * D + 2, customer=None, merchant=None)]
    return table(rows, drop=("is_fraud", "disputed_event_id"))


@pytest.mark.parametrize("task", ["fraud", "authorization"])
def test_a_customer_terminal_amount_time_dataset_gets_the_features(task):
    schema = DataSchema.from_yaml(ROOT / "tests/fixtures/minimal_card/data.yaml")
    block = OmegaConf.to_container(OmegaConf.load(ROOT / f"conf/task/{task}.yaml").velocity, resolve=True)
    features = velocity_features(_minimal_events(), schema, VelocityConfig.from_config(block))
    assert value(features, "s0", "merchant_risk_count_1d") == 0
    assert value(features, "s1", "merchant_risk_count_1d") == 1  # the loose dispute landed within a day
    assert value(features, "s1", "merchant_risk_rate_1d") == 0.5  # of t1, t2 a week earlier
    assert value(features, "s1", "merchant_distinct_customer_30d") == 3  # c1, c2, c3
    assert np.isnan(value(features, "s2", "customer_count_1d"))  # no ids: no history, no crash
    assert not [n for n in features.names if n.startswith("issuer_") or "is_fraud" in n or "event_type" in n]
