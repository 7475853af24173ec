"""scores.parquet: fixed columns and dtypes, round trip, alignment of several models on the test event ids."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundation.evaluation.report import ModelResult
from foundation.evaluation.scores import (
    join_by_event_id,
    read_scores,
    score_column,
    scores_table,
    write_scores,
    write_scores_table,
)


def make_keys(n: int = 6) -> pa.Table:
    start = dt.datetime(2024, 5, 20)
    return pa.table({
        "row": pa.array(np.arange(n) * 10, pa.int64()),
        "event_id": pa.array(np.arange(100, 100 + n), pa.int64()),
        "event_time": pa.array([start + dt.timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
        "customer_id": pa.array([1, 1, 2, 2, 3, None][:n], pa.int64()),
        "merchant_id": pa.array(["m1", "m2", "m1", "m3", "m2", "m1"][:n], pa.string()),
        "label": pa.array([0, 1, 0, 0, 1, 0][:n], pa.int8()),
    })


def test_schema_is_fixed_and_round_trips(tmp_path):
    keys = make_keys()
    labels = keys.column("label").to_numpy()
    scores = {"velocity_gbdt": np.linspace(0, 1, 6), "mlp": np.arange(6, dtype=np.float32)}
    path = write_scores(tmp_path / "out" / "scores.parquet", keys, labels, scores,
                        extra={"fraud_pattern": pa.array([None, "card_testing", None, None, "replay", None])})
    table, models, extra = read_scores(path)
    assert [(f.name, f.type) for f in table.schema] == [
        ("event_id", pa.int64()), ("customer_id", pa.int64()), ("merchant_id", pa.string()),
        ("event_time", pa.timestamp("ms")), ("label", pa.int8()), ("score_velocity_gbdt", pa.float64()),
        ("score_mlp", pa.float64()), ("fraud_pattern", pa.string())]
    assert models == ["velocity_gbdt", "mlp"] and extra == ["fraud_pattern"]
    assert table.column("event_id").to_pylist() == list(range(100, 106))
    assert table.column("customer_id").null_count == 1
    np.testing.assert_array_equal(table.column(score_column("mlp")).to_numpy(), np.arange(6.0))
    np.testing.assert_array_equal(table.column("label").to_numpy(), labels)
    df = pq.read_table(path).to_pandas()  # plain parquet for pandas / DuckDB users
    assert df.loc[df.fraud_pattern == "card_testing", "label"].tolist() == [1]


def test_bad_inputs_name_the_problem(tmp_path):
    keys = make_keys()
    labels = keys.column("label").to_numpy()
    with pytest.raises(ValueError, match="'mlp' has"):
        write_scores(tmp_path / "s.parquet", keys, labels, {"mlp": np.zeros(5)})
    with pytest.raises(ValueError, match="labels must be 0/1"):
        write_scores(tmp_path / "s.parquet", keys, labels * 2, {"mlp": np.zeros(6)})
    with pytest.raises(ValueError, match="clashes"):
        write_scores(tmp_path / "s.parquet", keys, labels, {"mlp": np.zeros(6)}, extra={"label": np.zeros(6)})
    with pytest.raises(ValueError, match=r"lack columns \['event_time'\]"):
        write_scores(tmp_path / "s.parquet", keys.drop(["event_time"]), labels, {"mlp": np.zeros(6)})
    dup = keys.set_column(1, "event_id", pa.array([1, 1, 2, 3, 4, 5], pa.int64()))
    with pytest.raises(ValueError, match="1 duplicates"):
        write_scores(tmp_path / "s.parquet", dup, labels, {"mlp": np.zeros(6)})
    pq.write_table(keys, tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match="not a scores file"):
        read_scores(tmp_path / "plain.parquet")


def result(model: str, keys: pa.Table, order: np.ndarray, fraction: float = 1.0) -> ModelResult:
    ids = keys.column("event_id").to_numpy()[order]
    labels = keys.column("label").to_numpy()[order]
    return ModelResult("fraud", model, labels, ids / 1000.0, label_fraction=fraction, event_ids=ids)


def test_scores_table_aligns_models_scored_in_different_orders(tmp_path):
    keys = make_keys()
    shuffled = np.array([5, 3, 1, 0, 2, 4])
    table = scores_table([result("probe", keys, np.arange(6)), result("mlp", keys, shuffled),
                          result("mlp", keys, shuffled[::-1], fraction=0.1)], keys)
    # Every model's score is its own event id / 1000, so alignment is right when the columns agree.
    expected = keys.column("event_id").to_numpy() / 1000.0
    for column in ("score_probe", "score_mlp", "score_mlp@10%"):
        np.testing.assert_array_equal(table.column(column).to_numpy(), expected)
    np.testing.assert_array_equal(table.column("label").to_numpy(), keys.column("label").to_numpy())
    _, models, _ = read_scores(write_scores_table(tmp_path / "scores.parquet", table))
    assert models == ["probe", "mlp", "mlp@10%"]


def test_scores_table_names_the_model_whose_ids_differ():
    keys = make_keys()
    good = result("probe", keys, np.arange(6))
    short = result("mlp", keys, np.arange(5))
    with pytest.raises(ValueError, match=r"fraud/mlp: event ids differ .*1 keys not scored"):
        scores_table([good, short], keys)
    other = result("full", keys, np.arange(6))
    other.event_ids = other.event_ids + 1
    with pytest.raises(ValueError, match="fraud/full: event ids differ"):
        scores_table([good, other], keys)
    no_ids = result("gbdt", keys, np.arange(6))
    no_ids.event_ids = None
    with pytest.raises(ValueError, match="fraud/gbdt: the result has no event_ids"):
        scores_table([good, no_ids], keys)
    flipped = result("mlp", keys, np.arange(6))
    flipped.labels = 1 - flipped.labels
    with pytest.raises(ValueError, match="fraud/mlp: labels differ"):
        scores_table([good, flipped], keys)
    with pytest.raises(ValueError, match="one scores table per task"):
        scores_table([good, ModelResult("auth", "probe", good.labels, good.scores, event_ids=good.event_ids)], keys)


def test_join_by_event_id_brings_labels_from_the_raw_events(tmp_path):
    keys = make_keys()
    table = scores_table([result("probe", keys, np.arange(6))], keys)
    raw = pa.table({"event_id": pa.array(["105", "101", "999", "104"]),  # string ids, other order, extra row
                    "fraud_pattern": ["replay", "card_testing", "replay", None]})
    joined = join_by_event_id(table, raw, ["fraud_pattern"])
    assert joined.column("fraud_pattern").to_pylist() == [None, "card_testing", None, None, None, "replay"]
    _, models, extra = read_scores(write_scores_table(tmp_path / "scores.parquet", joined))
    assert models == ["probe"] and extra == ["fraud_pattern"]
    with pytest.raises(ValueError, match="already in the scores table"):
        join_by_event_id(joined, raw, ["fraud_pattern"])
    with pytest.raises(ValueError, match=r"lacks columns \['mcc'\]"):
        join_by_event_id(table, raw, ["mcc"])
