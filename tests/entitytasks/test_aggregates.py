"""Hand-crafted entity aggregates: known answers, nothing after as_of, labels only once they have landed."""

import numpy as np
import pyarrow as pa
import pytest

from foundation.entitytasks.aggregates import AggregateConfig, entity_aggregates
from foundation.entitytasks.timeline import EntityTimeline
from tests.conftest import make_schema
from tests.entitytasks.fixtures import ROWS, at, fixture_events

CFG = AggregateConfig.from_config({"windows": ["7d", "90d"], "amount_field": "amount", "labels": ["is_fraud"],
                                   "rates": {"decline": {"field": "event_type", "values": ["decline"]},
                                             "absent": {"field": "no_such_field", "values": ["x"]}}})


def _features(rows=ROWS, day: float = 0, entity_id: str = "m1") -> dict[str, float]:
    events = fixture_events(rows)
    X, names = entity_aggregates(events, make_schema(), EntityTimeline(events, "merchant"), CFG,
                                 pa.array([entity_id]), at(day))
    return dict(zip(names, X[0].tolist()))


def test_known_answers():
    f = _features()
    # (-7, 0]: days -5 (20), -1 (30, a decline) and 0 (40: an event at as_of is known at as_of)
    assert f["count_7d"] == 3 and f["amount_sum_7d"] == 90 and f["amount_mean_7d"] == 30
    assert f["amount_std_7d"] == pytest.approx(np.std([20, 30, 40]))
    assert f["decline_count_7d"] == 1 and f["decline_share_7d"] == pytest.approx(1 / 3)
    assert f["count_90d"] == 4 and f["amount_sum_90d"] == 100
    assert f["recency_days"] == 0 and f["tenure_days"] == 40
    assert not any(name.startswith("absent") for name in f)  # a rate whose field the schema lacks is skipped
    # an entity without history: zero counts, missing recency
    none = _features(entity_id="unknown")
    assert none["count_90d"] == 0 and np.isnan(none["recency_days"])


def test_labels_are_read_only_after_the_label_delay():
    f = _features()
    # the day -5 fraud lands on day 2 (7-day delay): unknown at as_of; labels of (-97, -7] are day -40's (0)
    assert np.isnan(f["is_fraud_rate_7d"]) and f["is_fraud_rate_90d"] == 0
    assert _features(day=2)["is_fraud_rate_90d"] == pytest.approx(0.5)  # now days -40 (0) and -5 (1)


def test_no_feature_reads_an_event_after_as_of():
    before = _features()
    changed = [r for r in ROWS if r[0] <= 0] + [(0.0001, "m1", "c9", "decline", "51", 999.0, 1.0),
                                                 (5, "m1", "c9", "dispute", None, 1e6, None)]
    assert _features(changed) == pytest.approx(before, nan_ok=True)
    # and the first event after as_of is read once as_of reaches it
    assert _features(day=1)["count_7d"] == 4
