"""Entity task targets on a hand-built fixture with known answers; the horizon and schedule rules."""

import numpy as np
import pytest

from foundation.entitytasks.spec import EntityTaskSpec, TargetSpec
from foundation.entitytasks.targets import (
    NoExamplesError,
    as_of_dates,
    build_examples,
    target_labels,
    target_values,
)
from foundation.entitytasks.timeline import EntityTimeline
from tests.conftest import make_schema
from tests.entitytasks.fixtures import DAY, ROWS, at, fixture_events

ATTEMPTS = {"field": "event_type", "values": ["charge", "decline"]}


def _value(target: dict, entity: str = "merchant", entity_id: str = "m1", day: float = 0, rows=ROWS,
           horizon_days: int = 30) -> tuple[float, bool]:
    events = fixture_events(rows)
    spec, _ = TargetSpec.from_config(target).on(make_schema())
    timeline = EntityTimeline(events, entity)
    values, defined = target_values(timeline, events, spec, timeline.codes_of([entity_id]), at(day), horizon_days * DAY)
    return float(values[0]), bool(defined[0])


def test_known_answers_of_every_measure():
    disputes = {"field": "event_type", "values": ["dispute"]}
    charges = {"field": "event_type", "values": ["charge"]}
    # (0, 30]: charges on days 1, 10, 30; a dispute on day 2; a 51 decline on day 3; day 0 and day 31 are outside
    assert _value({"measure": "count", "problem": "regression", "events": disputes}) == (1.0, True)
    assert _value({"measure": "rate", "problem": "regression", "events": disputes, "denominator": charges}) == (
        pytest.approx(1 / 3), True)
    # labelled attempts in (0, 30]: days 1 (0), 3 (1), 10 (0), 30 (1)
    assert _value({"measure": "label_rate", "label": "is_fraud", "problem": "regression",
                   "denominator": ATTEMPTS}) == (0.5, True)
    # c2 in (0, 30]: one attempt, declined for insufficient funds
    assert _value({"measure": "rate", "problem": "regression", "events": {"field": "decline_code", "values": ["51"]},
                   "denominator": ATTEMPTS}, "customer", "c2") == (1.0, True)
    # c3 makes no attempt in (0, 30] (its next is on day 45): churned
    assert _value({"measure": "count", "problem": "regression", "events": ATTEMPTS}, "customer", "c3") == (0.0, True)
    # declines among attempts: next 30 days 1 of 4, last 28 days 1 of 3 (days -5, -1, 0), smoothed
    value, defined = _value({"measure": "shift", "problem": "regression", "events": {"field": "event_type",
                             "values": ["decline"]}, "denominator": ATTEMPTS, "baseline": "28d"})
    assert defined and value == pytest.approx(np.log(1.5 / 5) - np.log(1.5 / 4))
    # a rate over too few denominator events is undefined (the example is dropped)
    assert not _value({"measure": "rate", "problem": "regression", "events": disputes, "denominator": charges,
                       "min_denominator": 4})[1]


def test_the_horizon_is_half_open_on_the_left_and_closed_on_the_right():
    target = {"measure": "count", "problem": "regression", "events": ATTEMPTS}
    assert _value(target)[0] == 4  # days 1, 3, 10, 30: not day 0
    # events after as_of + horizon never change the target
    later = ROWS + [(30.001, "m1", "c1", "charge", None, 1.0, 0.0), (60, "m1", "c1", "decline", "51", 1.0, 1.0)]
    assert _value(target, rows=later)[0] == 4
    # the event at exactly as_of + horizon is read
    assert _value(target, rows=[r for r in ROWS if r[0] != 30])[0] == 3
    assert _value(target, horizon_days=29)[0] == 3


def test_problems_turn_values_into_labels():
    binary = TargetSpec.from_config({"measure": "count", "problem": "binary", "positive": {"op": "==", "value": 0}})
    assert target_labels(binary, np.array([0.0, 2.0])).tolist() == [1, 0]
    multi = TargetSpec.from_config({"measure": "shift", "problem": "multiclass", "baseline": "28d",
                                    "edges": [-0.5, 0.5], "classes": ["down", "flat", "up"]})
    assert target_labels(multi, np.array([-1.0, 0.0, 0.5, 2.0])).tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError, match="binary target needs positive"):
        TargetSpec.from_config({"measure": "count", "problem": "binary"})
    with pytest.raises(ValueError, match="len\\(edges\\) \\+ 1 classes"):
        TargetSpec.from_config({"measure": "shift", "problem": "multiclass", "baseline": "7d", "edges": [0.0],
                                "classes": ["a"]})


def _config(**target) -> dict:
    return {"name": "t", "kind": "entity", "entity": "merchant", "schedule": {"every": "7d"}, "horizon": "30d",
            "population": {"active_within": "90d", "events": ATTEMPTS},
            "target": {"measure": "count", "problem": "regression", "events": ATTEMPTS, **target}}


def _spec(**target) -> EntityTaskSpec:
    return EntityTaskSpec.from_config(_config(**target))


def test_as_of_dates_keep_the_target_window_before_the_next_split():
    schema = make_schema()
    spec = _spec()
    count, _ = spec.resolve(schema)
    train = as_of_dates(schema, spec, count, "train")
    validation_start = np.datetime64("2024-04-15", "ms").astype(np.int64)
    assert train[0] == np.datetime64("2024-02-01", "ms").astype(np.int64) and np.all(np.diff(train) == 7 * DAY)
    assert len(train) == 7 and train[-1] + 30 * DAY <= validation_start < train[-1] + 37 * DAY
    # a label target also waits for the label delay (7 days) before the next split starts
    labels, _ = _spec(measure="label_rate", label="is_fraud").resolve(schema)
    assert len(as_of_dates(schema, spec, labels, "train")) == 6
    test = as_of_dates(schema, spec, count, "test")
    assert len(test) == 2 and test[-1] + 30 * DAY <= np.datetime64("2024-07-01", "ms").astype(np.int64)


def test_examples_are_the_active_entities_with_their_targets():
    events, schema = fixture_events(), make_schema()
    spec = _spec()
    target, _ = spec.resolve(schema)
    examples = build_examples(events, schema, spec, target, EntityTimeline(events, "merchant"))
    first = examples.filter(np.asarray(examples.column("as_of").to_numpy() == at(0)[0]))
    # m1 and m2 both attempted in the 90 days up to 2024-02-01
    assert sorted(zip(first["entity_id"].to_pylist(), first["target"].to_pylist())) == [("m1", 4.0), ("m2", 0.0)]
    # the test dates (2024-05-20, 05-27): both attempted in the last 90 days, neither attempts afterwards
    test = examples.filter(np.asarray(examples.column("split").to_pylist()) == "test")
    assert sorted(test["entity_id"].to_pylist()) == ["m1", "m1", "m2", "m2"] and set(test["target"].to_pylist()) == {0}
    # within 70 days, m1 (last attempt on day 30) is no longer active on 2024-05-20 (day 109), m2 (day 45) is
    short = EntityTaskSpec.from_config({**_config(), "population": {"active_within": "70d", "events": ATTEMPTS}})
    test = build_examples(events, schema, short, target, EntityTimeline(events, "merchant"))
    assert set(test.filter(np.asarray(test.column("split").to_pylist()) == "test")["entity_id"].to_pylist()) == {"m2"}


def test_a_split_without_examples_names_why():
    events, schema = fixture_events(), make_schema()
    # validation runs 2024-04-15 to 05-13, test starts 05-20 (tests/conftest.py): a 60-day horizon never fits
    spec = EntityTaskSpec.from_config({**_config(), "horizon": "60d"})
    target, _ = spec.resolve(schema)
    with pytest.raises(NoExamplesError, match=r"no as-of date of the validation split \(2024-04-15 to 2024-05-13\) leaves the 60-day horizon before the test"):
        build_examples(events, schema, spec, target, EntityTimeline(events, "merchant"))
    # a 1-day activity window leaves no active merchant at the validation dates: named as such
    idle = EntityTaskSpec.from_config({**_config(), "population": {"active_within": "1d", "events": ATTEMPTS}})
    with pytest.raises(NoExamplesError, match="no merchant active within 1 days of a validation as-of date"):
        build_examples(events, schema, idle, target, EntityTimeline(events, "merchant"))
