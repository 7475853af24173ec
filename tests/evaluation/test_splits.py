"""Task examples and the out-of-time protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.data.schema import DataSchema, SchemaError
from foundation.evaluation.splits import (
    LeakageError,
    TaskSpec,
    check_no_leakage,
    select_examples,
    subsample_labels,
)
from foundation.heads.gbdt import GBDTHead
from foundation.pointintime import VelocityConfig
from tests.conftest import make_schema, unchecked_schema

from .conftest import make_events

CONF = Path(__file__).resolve().parents[2] / "conf"
ROOT = {"paths": {"data_dir": "/nonexistent", "root_dir": "/nonexistent"}}


@pytest.fixture
def fraud() -> TaskSpec:
    return TaskSpec.from_config(CONF / "task" / "fraud.yaml")


def test_task_configs_parse_and_match_the_synthetic_schema():
    schema = DataSchema.from_yaml(CONF / "data" / "synthetic.yaml", root=ROOT)
    fraud = TaskSpec.from_config(CONF / "task" / "fraud.yaml")
    auth = TaskSpec.from_config(CONF / "task" / "authorization.yaml")
    assert (fraud.label, fraud.entities) == ("is_fraud", ("customer", "merchant"))
    assert (auth.label, auth.entities) == ("approved", ("customer", "issuer"))
    assert fraud.examples.values == ("charge", "decline")
    for task in (fraud, auth):
        task.validate(schema)
        VelocityConfig.from_config(task.velocity)  # every block of the YAML builds its component
        assert GBDTHead.from_config(task.gbdt).params["num_threads"] == 2
    assert VelocityConfig.from_config(auth.velocity).id_features == ("issuer",)
    check_no_leakage(schema)
    # the synthetic dataset's schema and the test events' schema select the same examples
    events = make_events()
    for task in (fraud, auth):
        assert select_examples(events, schema, task, "test").equals(
            select_examples(events, make_schema(), task, "test"))


def test_fraud_config_fits_a_dataset_without_event_types_but_authorization_does_not():
    schema = DataSchema.from_yaml(CONF / "data" / "sparkov.yaml", root=ROOT)
    TaskSpec.from_config(CONF / "task" / "fraud.yaml").validate(schema)
    with pytest.raises(ValueError, match="label 'approved' is not a label"):
        TaskSpec.from_config(CONF / "task" / "authorization.yaml").validate(schema)


def test_examples_lie_in_their_period_are_attempts_and_labelled(events, schema, fraud):
    kinds = dict(zip(events.column("event_id").to_pylist(), events.column("event_type").to_pylist()))
    bounds = {"train": ("2024-02-01", "2024-04-08"), "validation": ("2024-04-15", "2024-05-13"),
              "test": ("2024-05-20", "2024-07-01")}
    seen = set()
    for split, (start, end) in bounds.items():
        table = select_examples(events, schema, fraud, split)
        assert table.column_names == ["row", "event_id", "event_time", "customer_id", "merchant_id", "label"]
        times = table.column("event_time").to_numpy()
        assert len(table) > 0 and times.min() >= np.datetime64(start) and times.max() < np.datetime64(end)
        assert {kinds[e] for e in table.column("event_id").to_pylist()} <= {"charge", "decline"}
        # the row column points back at the same event
        rows = table.column("row").to_numpy()
        assert events.column("event_id").take(rows).to_pylist() == table.column("event_id").to_pylist()
        np.testing.assert_array_equal(table.column("label").to_numpy(),
                                      events.column("is_fraud").to_numpy(zero_copy_only=False)[rows])
        ids = set(table.column("event_id").to_pylist())
        assert not ids & seen
        seen |= ids


def test_label_cutoff_drops_labels_not_yet_arrived(events, schema, fraud):
    full = select_examples(events, schema, fraud, "train")
    strict = select_examples(events, schema, fraud, "train", label_cutoff="2024-04-08")
    latest = strict.column("event_time").to_numpy().max()
    assert latest <= np.datetime64("2024-04-01")  # train end - 7 days label delay
    assert 0 < len(strict) < len(full)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"validation": ("2024-04-10", "2024-05-13")}, "train ends 2024-04-08"),
        ({"pretrain": ("2024-01-01", "2024-05-01")}, "pretrain ends"),
        ({"test": ("2024-05-15", "2024-07-01")}, "validation ends 2024-05-13"),
    ],
)
def test_leaking_splits_raise_a_clear_error(overrides, message):
    with pytest.raises(SchemaError):  # a config cannot hold them; splits built in code can
        make_schema(**overrides)
    with pytest.raises(LeakageError, match=message):
        check_no_leakage(unchecked_schema(**overrides))


def test_zero_label_delay_allows_adjacent_periods():
    check_no_leakage(make_schema(label_delay="0d", validation=("2024-04-08", "2024-05-20")))
    with pytest.raises(LeakageError, match="label_delay"):
        check_no_leakage(unchecked_schema(label_delay="8d"))


def test_missing_example_field_is_skipped_or_an_error(schema):
    events = make_events().drop_columns(["event_type"])
    skip = TaskSpec.from_config({"name": "fraud", "label": "is_fraud", "entities": ["customer"],
                                 "examples": {"field": "event_type", "values": ["charge"], "if_missing": "skip"}})
    schema.fields.pop("event_type")
    table = select_examples(events, schema, skip, "test")
    labelled = pc.is_valid(events.column("is_fraud"))
    in_test = pc.and_(pc.greater_equal(events.column("event_time"), pa.scalar(np.datetime64("2024-05-20", "ms"))),
                      labelled)
    assert len(table) == pc.sum(pc.cast(in_test, pa.int64())).as_py()
    strict = TaskSpec.from_config({"name": "fraud", "label": "is_fraud", "entities": ["customer"],
                                   "examples": {"field": "event_type", "values": ["charge"]}})
    with pytest.raises(ValueError, match="example field 'event_type' is not a column"):
        select_examples(events, schema, strict, "test")


def test_bad_inputs_name_the_problem(events, schema, fraud):
    with pytest.raises(ValueError, match="lacks columns \\['merchant_id'\\]"):
        select_examples(events.drop_columns(["merchant_id"]), schema, fraud, "test")
    with pytest.raises(ValueError, match="split must be"):
        select_examples(events, schema, fraud, "pretrain")
    bad = events.set_column(events.column_names.index("is_fraud"), "is_fraud",
                            pc.multiply(events.column("is_fraud"), 2.0))
    with pytest.raises(ValueError, match="has values \\[2.\\] besides 0/1"):
        select_examples(bad, schema, fraud, "test")
    with pytest.raises(ValueError, match="label_fractions must be in"):
        TaskSpec.from_config({"name": "x", "label": "is_fraud", "entities": ["customer"], "label_fractions": [2]})


def test_subsample_is_stratified_nested_and_seeded(events, schema, fraud):
    train = select_examples(events, schema, fraud, "train")
    labels = train.column("label").to_numpy()
    small = subsample_labels(train, 0.25, seed=3)
    large = subsample_labels(train, 0.5, seed=3)
    for subset, fraction in ((small, 0.25), (large, 0.5)):
        sub_labels = subset.column("label").to_numpy()
        for value in (0, 1):
            assert (sub_labels == value).sum() == max(1, round(fraction * (labels == value).sum()))
    assert set(small.column("event_id").to_pylist()) <= set(large.column("event_id").to_pylist())
    assert subsample_labels(train, 0.25, seed=3).equals(small)
    assert not subsample_labels(train, 0.25, seed=4).equals(small)
    tiny = subsample_labels(train, 0.001, seed=0)
    assert set(tiny.column("label").to_pylist()) == {0, 1}
    with pytest.raises(ValueError, match="fraction must be in"):
        subsample_labels(train, 0.0)
