"""Task features: the scorer's layout row by row, example states from the store, raw fields without outcomes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.data.validate import validate
from foundation.pointintime import (
    FeatureLayout,
    PointInTimeEncoder,
    PointInTimeStates,
    RawFieldLayout,
    example_keys,
    example_states,
    raw_field_features,
    task_feature_matrix,
    task_features,
)
from foundation.pointintime.batches import canonical_rows
from tests.embeddings.world import World, raw_events, session_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return session_world(tmp_path_factory)


def test_matrix_rows_are_the_scorers_task_features():
    rng = np.random.default_rng(0)
    hidden = [rng.normal(size=(7, 4)).astype(np.float32) for _ in range(2)]
    flags = [rng.random(7) < 0.5, np.ones(7, bool)]
    vector = rng.normal(size=(7, 4)).astype(np.float32)
    matrix = task_feature_matrix(hidden, flags, vector)
    layout = FeatureLayout(("customer", "merchant"), 4)
    assert matrix.shape == (7, layout.n_features) == (7, len(layout.names()))
    for i in range(7):
        np.testing.assert_array_equal(matrix[i], task_features([h[i] for h in hidden], [f[i] for f in flags],
                                                               vector[i]))
    with pytest.raises(ValueError, match="differ"):
        task_feature_matrix([hidden[0][:, :3]], [flags[0]], vector)


def _canonical(world: World) -> pa.Table:
    return validate(raw_events(), world.schema, on_error="raise").table


def test_example_states_put_the_event_right_after_its_customer_state(world):
    events = _canonical(world)
    attempts = pc.is_in(events["event_type"], value_set=pa.array(["charge", "decline"]))
    rows = pa.table({"row": pa.array(np.flatnonzero(attempts.to_numpy(zero_copy_only=False))[:60])})
    keys = example_keys(events, rows, ["customer", "merchant", "issuer"])
    encoder = PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), 256, progress=False)
    states = example_states(PointInTimeStates(world.store, encoder), keys, ["customer", "merchant", "issuer"])
    features = states.features(["customer", "issuer"])
    assert features.shape == (60, FeatureLayout(("customer", "issuer"), encoder.hidden_size).n_features)
    assert np.isfinite(features).all()
    # the first attempt of a customer has no history: zeros and a 0 flag
    first = ~states.states["customer"].has_history
    assert first.any() and not features[first, : encoder.hidden_size].any()
    sub = states.take(np.array([5, 2]))
    np.testing.assert_array_equal(sub.features(["customer", "merchant"]),
                                  states.features(["customer", "merchant"])[[5, 2]])
    np.testing.assert_array_equal(states.positions(sub.event_ids), [5, 2])
    # an event that is not in its customer's sequence cannot get an event vector
    fake = keys.set_column(0, "event_id", pa.array(["no-such-event"] * keys.num_rows))
    with pytest.raises(ValueError, match="not in their customer sequence"):
        example_states(PointInTimeStates(world.store, encoder), fake.slice(0, 3), ["customer"])


def test_raw_fields_hold_no_outcome_and_no_label(world):
    events = _canonical(world)
    raw = raw_field_features(events, world.schema, {"country_fields": ["merchant_country", "card_country"]})
    assert raw.values.shape == (events.num_rows, len(raw.names))
    for name in ("event_type", "decline_code", "is_fraud", "approved", "descriptor"):
        assert name not in raw.names
    assert {"amount", "mcc", "channel", "cross_border", "hour", "day_of_week"} <= set(raw.names)
    # encoding one new event with the trained vocabularies gives the same codes (what a scorer would do)
    one = raw_field_features(events.slice(10, 1), world.schema, {}, categories=raw.categories)
    np.testing.assert_array_equal(one.values[0], raw.values[10])
    # the served head's raw-field layout (what head.json records) encodes new events the same way
    layout = RawFieldLayout({"country_fields": ["merchant_country", "card_country"]}, raw.categories, raw.names)
    np.testing.assert_array_equal(layout.features(events.slice(10, 1), world.schema)[0], raw.values[10])
    with pytest.raises(ValueError, match="differ from the head's"):
        RawFieldLayout({}, raw.categories, raw.names[:-1]).features(events.slice(10, 1), world.schema)


def test_raw_fields_row_by_row_equal_the_table_path(world):
    """The service's row path (`RawFieldLayout.rows`) gives `features` value for value, nulls and values the
    vocabulary never saw included; a field type it does not take sends the caller to the table path."""
    events = _canonical(world).slice(0, 300)
    velocity = {"country_fields": ["merchant_country", "card_country"]}
    raw = raw_field_features(events, world.schema, velocity)
    categorical = raw.categorical[0]
    numeric = next(n for n in raw.names if n not in raw.categories and n not in ("hour", "day_of_week", "cross_border"))
    rows = events.to_pylist()
    for row, ms in zip(rows, pc.cast(events["event_time"], pa.int64()).to_pylist()):
        row["event_time"] = ms
    rows[0][categorical], rows[1][categorical], rows[2][numeric] = None, "never-seen", None
    rows[3]["merchant_country"] = None
    rows.append({**rows[4], "event_time": -1})  # before 1970: floor division, as pyarrow's calendar
    table = canonical_rows(rows, events.schema)
    layout = RawFieldLayout(velocity, raw.categories, raw.names)
    expected = layout.features(table, world.schema)
    found = layout.rows(rows, events.schema)
    assert np.isnan(found[:4]).any() and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)  # NaN where NaN
    as_numbers = pa.schema([pa.field(categorical, pa.int64()) if f.name == categorical else f for f in events.schema])
    assert layout.rows(rows, as_numbers) is None
