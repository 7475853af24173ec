"""convert_events and validate: canonical types, a clear error per problem, counted quarantine."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from foundation.data.events import convert_events
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.validate import validate
from tests.data.raw_events import small_schema_dict, synthetic_raw


@pytest.fixture
def schema() -> DataSchema:
    cfg = small_schema_dict()
    cfg["fields"]["amount"]["max"] = 10_000
    return DataSchema.from_config(cfg)


def _replace(table: pa.Table, column: str, values, dtype=None) -> pa.Table:
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, dtype or table[column].type))


def _edit(table: pa.Table, column: str, rows: dict[int, object], dtype=None) -> pa.Table:
    values = table[column].to_pylist()
    for row, value in rows.items():
        values[row] = value
    return _replace(table, column, values, dtype)


def test_clean_table_becomes_the_canonical_table(schema):
    raw = synthetic_raw(200)
    result = validate(raw, schema)
    table = result.table
    assert table.schema.equals(schema.canonical_schema())
    assert table.num_rows == 200 and result.quarantine_counts == {} and result.quarantine_paths == {}
    assert table["event_id"].to_pylist()[:2] == ["1000", "1001"]
    assert table["customer_id"].to_pylist() == [str(v) for v in raw["card_id"].to_pylist()]
    assert table["event_time"].to_pylist() == raw["ts"].to_pylist()
    assert table["descriptor"].to_pylist() == raw["merchant_descriptor"].to_pylist()
    assert table["is_fraud"].null_count == raw["is_fraud"].null_count > 0  # unknown stays null
    # A canonical table is accepted as is (validate is idempotent).
    again = validate(table, schema)
    assert again.table.equals(table)


PROBLEMS = [
    # (column, {row: bad value}, dtype, reason, problem text)
    ("amount", {7: -5.0}, None, "negative_value.amount", "value is negative"),
    ("amount", {7: float("nan")}, None, "nan_value.amount", "NaN or infinite"),
    ("amount", {7: float("inf")}, None, "nan_value.amount", "NaN or infinite"),
    ("amount", {7: None}, None, "null_value.amount", "value is null (allow_null: false)"),
    ("amount", {7: 20_000.0}, None, "above_max.amount", "above max 10000"),
    ("amount", {7: "12,50"}, pa.string(), "wrong_type.amount", "value is not a number"),
    ("card_id", {7: None}, None, "null_entity_key.customer", "customer key is null or empty"),
    ("card_id", {7: ""}, pa.string(), "null_entity_key.customer", "customer key is null or empty"),
    ("card_id", {7: " \t "}, pa.string(), "null_entity_key.customer", "customer key is null or empty (or blank)"),
    ("issuer_id", {7: None}, None, "null_entity_key.issuer", "issuer key is null or empty"),
    ("event_id", {7: 1003}, None, "duplicate_event_id", "first occurrence is kept"),
    ("event_id", {7: None}, None, "null_event_id", "event id is null"),
    ("ts", {7: "yesterday"}, pa.string(), "unparsable_timestamp", "not an ISO-8601 date/time"),
    ("ts", {7: None}, None, "null_timestamp", "event time is null"),
    ("is_fraud", {7: "maybe"}, pa.string(), "wrong_type.is_fraud", "value is not a number"),
]


def _with_problem(raw: pa.Table, column: str, rows: dict, dtype) -> pa.Table:
    if dtype == pa.string():  # the other rows as their string form, as a CSV would hold them
        values = [None if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                  for v in raw[column].to_pylist()]
        raw = _replace(raw, column, values, pa.string())
    return _edit(raw, column, rows, dtype)


@pytest.mark.parametrize("column, rows, dtype, reason, problem", PROBLEMS, ids=[p[3] + "-" + str(list(p[1].values())[0])
                                                                                for p in PROBLEMS])
def test_each_problem_raises_a_clear_error(schema, column, rows, dtype, reason, problem):
    raw = _with_problem(synthetic_raw(50), column, rows, dtype)
    with pytest.raises(DataValidationError) as err:
        validate(raw, schema)
    message = str(err.value)
    assert f"column '{column}'" in message and problem in message and f"[{reason}]" in message
    assert "1 row(s), e.g. row 7: {" in message  # count and the example row as a dict
    example = err.value.problems[0].example
    assert err.value.problems[0].example_row == 7
    assert example["event_id"] == raw["event_id"][7].as_py()
    assert repr(example[column]) == repr(raw[column][7].as_py())  # repr: NaN != NaN
    assert len(err.value.problems) == 1 and err.value.problems[0].reason == reason


@pytest.mark.parametrize("column, rows, dtype, reason, problem", PROBLEMS, ids=[p[3] + "-" + str(list(p[1].values())[0])
                                                                                for p in PROBLEMS])
def test_each_problem_is_quarantined(schema, tmp_path, column, rows, dtype, reason, problem):
    raw = _with_problem(synthetic_raw(50), column, rows, dtype)
    result = validate(raw, schema, quarantine_dir=tmp_path, on_error="quarantine")
    assert result.quarantine_counts == {reason: 1}
    assert result.table.num_rows == 49 and result.n_input_rows == 50
    assert result.quarantine_paths[reason] == tmp_path / f"{reason}.parquet"
    kept = pq.read_table(result.quarantine_paths[reason])
    assert kept["_source_row"].to_pylist() == [7]
    assert repr(kept[column].to_pylist()) == repr([raw[column][7].as_py()])  # raw values kept for inspection


def test_quarantine_counts_every_row_once_and_keeps_the_first_duplicate(tmp_path):
    schema = DataSchema.from_config(small_schema_dict(
        validation={"on_error": "quarantine", "quarantine_dir": str(tmp_path / "q")}))
    raw = synthetic_raw(300)
    raw = _edit(raw, "amount", {3: -1.0, 4: -2.0, 5: float("nan"), 6: -3.0})
    raw = _edit(raw, "card_id", {6: None, 10: None})  # row 6 has two problems: counted under the first
    raw = _edit(raw, "event_id", {20: 1000, 21: 1000, 22: 1005})  # copies of rows 0 and 5
    result = validate(raw, schema)
    assert result.quarantine_counts == {"null_entity_key.customer": 2, "nan_value.amount": 1,
                                        "negative_value.amount": 2, "duplicate_event_id": 2}
    assert result.table.num_rows + result.n_quarantined == raw.num_rows
    # Row 5 (event 1005) is quarantined for NaN, so row 22 is the first *valid* occurrence and stays.
    assert pq.read_table(result.quarantine_paths["duplicate_event_id"])["_source_row"].to_pylist() == [20, 21]
    assert pq.read_table(result.quarantine_paths["null_entity_key.customer"])["_source_row"].to_pylist() == [6, 10]
    ids = result.table["event_id"]
    assert pc.count_distinct(ids).as_py() == ids.length() and "1000" in ids.to_pylist()
    assert "1005" in ids.to_pylist()
    clean_rows = set(range(300)) - {3, 4, 5, 6, 10, 20, 21}
    assert result.table["amount"].to_pylist() == [raw["amount"][i].as_py() for i in sorted(clean_rows)]
    summary = json.loads((tmp_path / "q" / "_summary.json").read_text())
    assert summary["input_rows"] == 300 and summary["quarantined_rows"] == 7

    # A second run replaces the first one's files: no stale reason file survives.
    clean = validate(_edit(raw, "card_id", {6: 1, 10: 1}), schema)
    assert "null_entity_key.customer" not in clean.quarantine_counts
    assert not (tmp_path / "q" / "null_entity_key.customer.parquet").exists()
    assert (tmp_path / "q" / "negative_value.amount.parquet").exists()


def test_quarantine_counts_are_logged(tmp_path, caplog):
    schema = DataSchema.from_config(small_schema_dict())
    raw = _edit(synthetic_raw(20), "amount", {2: -1.0})
    validate(raw, schema, quarantine_dir=tmp_path, on_error="quarantine")
    assert "quarantined 1 of 20 rows (negative_value.amount=1)" in caplog.text


def test_all_problems_are_listed_in_one_error(schema):
    raw = _edit(synthetic_raw(40), "amount", {1: -1.0, 2: -2.0})
    raw = _edit(raw, "merchant_id", {9: None})
    with pytest.raises(DataValidationError) as err:
        validate(raw, schema)
    assert [(p.reason, p.count) for p in err.value.problems] == [
        ("null_entity_key.merchant", 1), ("negative_value.amount", 2)]
    assert "validation.on_error=quarantine" in str(err.value)


def test_missing_column_is_always_raised(tmp_path):
    schema = DataSchema.from_config(small_schema_dict(
        validation={"on_error": "quarantine", "quarantine_dir": str(tmp_path)}))
    with pytest.raises(DataValidationError) as err:
        validate(synthetic_raw(10).drop_columns(["mcc"]), schema)
    message = str(err.value)
    assert "missing column(s) 'mcc' (fields.mcc.column)" in message and "available columns: 'event_id'" in message
    assert not list(tmp_path.iterdir())


def test_a_column_of_the_wrong_kind_is_raised():
    schema = DataSchema.from_config(small_schema_dict())
    raw = _replace(synthetic_raw(5), "amount", [[1.0]] * 5, pa.list_(pa.float64()))
    with pytest.raises(DataValidationError, match=r"column 'amount' \(fields.amount.column\): has type list"):
        validate(raw, schema)


def test_integer_timestamps_need_a_unit():
    schema = DataSchema.from_config(small_schema_dict())
    raw = _replace(synthetic_raw(5), "ts", [1_700_000_000] * 5, pa.int64())
    with pytest.raises(DataValidationError, match=r"column 'ts' \(timestamp.column\): holds int64 .*unit"):
        validate(raw, schema)


def test_bad_values_are_raised_with_an_example_row(schema):
    days = [f"2024-02-{day:02d}" for day in range(25, 35)]  # 2024-02-30 and later do not exist
    raw = _replace(synthetic_raw(10), "ts", days, pa.string())
    with pytest.raises(DataValidationError, match=r"column 'ts'.*ISO-8601.*5 row.*row 5: .*'2024-02-30'"):
        validate(raw, schema)


TIMESTAMPS = [
    # (raw values, raw type, unit, format, expected naive UTC)
    (["2024-03-01T10:00:00"], pa.string(), None, None, datetime(2024, 3, 1, 10)),
    (["2024-03-01"], pa.string(), None, None, datetime(2024, 3, 1)),
    (["2024-03-01 10:00:00.25", "2024-03-01T12:00:00+02:00", "2024-03-01T10:00Z", "x"], pa.string(), None, None,
     [datetime(2024, 3, 1, 10, 0, 0, 250_000), datetime(2024, 3, 1, 10), datetime(2024, 3, 1, 10), None]),
    (["01/03/2024 10:00"], pa.string(), None, "%d/%m/%Y %H:%M", datetime(2024, 3, 1, 10)),
    ([1_709_287_200], pa.int64(), "s", None, datetime(2024, 3, 1, 10)),
    ([1_709_287_200_000], pa.int64(), "ms", None, datetime(2024, 3, 1, 10)),
    ([1_709_287_200_000_000], pa.int64(), "us", None, datetime(2024, 3, 1, 10)),
    ([1_709_287_200_000_000_000], pa.int64(), "ns", None, datetime(2024, 3, 1, 10)),
    ([1_709_287_200.5], pa.float64(), "s", None, datetime(2024, 3, 1, 10, 0, 0, 500_000)),
    (["1709287200"], pa.string(), "s", None, datetime(2024, 3, 1, 10)),
    ([datetime(2024, 3, 1, 11)], pa.timestamp("us", tz="Europe/Paris"), None, None, datetime(2024, 3, 1, 10)),
    ([datetime(2024, 3, 1, 10, 0, 0, 123_456)], pa.timestamp("ns"), None, None,
     datetime(2024, 3, 1, 10, 0, 0, 123_000)),
]


@pytest.mark.parametrize("values, dtype, unit, fmt, expected", TIMESTAMPS)
def test_timestamp_conversions(tmp_path, values, dtype, unit, fmt, expected):
    schema = DataSchema.from_config({"name": "t", "source": "x.parquet",
                                     "timestamp": {"column": "ts", "unit": unit, "format": fmt},
                                     "entities": {"customer": "card"}})
    if isinstance(dtype, pa.TimestampType) and dtype.tz:
        array = pa.array([v.replace(tzinfo=None) for v in values], pa.timestamp("us"))
        array = pc.assume_timezone(array, dtype.tz)  # 11:00 in Paris is 10:00 UTC
    else:
        array = pa.array(values, dtype)
    raw = pa.table({"ts": array, "card": ["c"] * len(values)})
    expected = expected if isinstance(expected, list) else [expected]
    if None in expected:  # unparsable values: an error, or quarantined with the others converted
        with pytest.raises(DataValidationError, match=f"{expected.count(None)} row"):
            validate(raw, schema)
        result = validate(raw, schema, quarantine_dir=tmp_path, on_error="quarantine")
        assert result.quarantine_counts == {"unparsable_timestamp": expected.count(None)}
        expected = [value for value in expected if value is not None]
    else:
        result = validate(raw, schema)
    assert result.table["event_time"].to_pylist() == expected
    assert result.table.schema.field("event_time").type == pa.timestamp("ms")


def test_canonical_types_from_assorted_raw_types():
    schema = DataSchema.from_config({
        "name": "t", "source": "x.parquet", "timestamp": "ts", "event_id": "id",
        "entities": {"customer": "card", "merchant": "shop"},
        "fields": {"kind": {"column": "kind", "type": "categorical"}, "n": {"column": "n", "type": "numeric"},
                   "flag": {"column": "flag", "type": "categorical"}},
        "labels": {"y": "y"}})
    raw = pa.table({
        "id": pa.array(["a", "b", "c"], pa.large_string()),
        "ts": pa.array(["2024-01-01", "2024-01-02", "2024-01-03"]).cast(pa.timestamp("s")),
        "card": pa.array([1.0, 20.0, None]),  # integer ids made float by a null (pandas)
        "shop": pa.array(["x", "y", "x"]).dictionary_encode(),
        "kind": pa.array([5, 51, None], pa.int32()),
        "n": pa.array([1, 2, 3], pa.int16()),
        "flag": pa.array([True, False, None]),
        "y": pa.array([1, 0, None], pa.int64()),
    })
    table = convert_events(raw, schema).table
    assert table.schema.equals(schema.canonical_schema())
    assert table["customer_id"].to_pylist() == ["1", "20", None]
    assert table["merchant_id"].to_pylist() == ["x", "y", "x"]
    assert table["kind"].to_pylist() == ["5", "51", None]
    assert table["n"].to_pylist() == [1.0, 2.0, 3.0]
    assert table["flag"].to_pylist() == ["true", "false", None]
    assert table["y"].to_pylist() == [1.0, 0.0, None]


def test_labels_nan_means_unknown_and_missing_event_id_uses_row_numbers():
    schema = DataSchema.from_config({"name": "t", "source": "x.parquet", "timestamp": "ts",
                                     "entities": {"customer": "card"}, "labels": {"y": "y"}})
    raw = pa.table({"ts": pa.array([0, 1, 2], pa.timestamp("ms")), "card": ["a", "b", "c"],
                    "y": pa.array([1.0, np.nan, 0.0])})
    table = convert_events(raw, schema).table
    assert table["y"].to_pylist() == [1.0, None, 0.0]
    assert table["event_id"].to_pylist() == ["0", "1", "2"]


def test_numeric_strings_are_parsed_and_blank_is_null():
    schema = DataSchema.from_config({"name": "t", "source": "x.csv", "timestamp": "ts",
                                     "entities": {"customer": "card"},
                                     "fields": {"amount": {"type": "numeric", "allow_nan": True}}})
    raw = pa.table({"ts": ["2024-01-01"] * 5, "card": ["a"] * 5, "amount": ["1.5", " 2 ", "", "1e3", "NaN"]})
    values = validate(raw, schema).table["amount"].to_pylist()
    assert values[:4] == [1.5, 2.0, None, 1000.0] and np.isnan(values[4])


@pytest.mark.parametrize("kind", ["dense_int", "sparse_int", "string", "shuffled"])
def test_duplicates_found_whatever_the_id_kind(tmp_path, kind):
    """Every id code path (dense ints, sparse ints, strings, unsorted) keeps exactly the first occurrence."""
    schema = DataSchema.from_config(small_schema_dict())
    raw = synthetic_raw(60)
    ids = [1, 2, 3, 2, 5, 6, 1, 8, 2] + list(range(100, 151))
    values = {"dense_int": ids, "sparse_int": [i * 10**12 for i in ids], "string": [f"e{i}" for i in ids],
              "shuffled": ids[::-1]}[kind]
    raw = _replace(raw, "event_id", values, pa.string() if kind == "string" else pa.int64())
    result = validate(raw, schema, quarantine_dir=tmp_path, on_error="quarantine")
    expected = [3, 6, 8] if kind != "shuffled" else [56, 58, 59]  # reversed: the last copies are later
    rows = pq.read_table(result.quarantine_paths["duplicate_event_id"])["_source_row"].to_pylist()
    assert sorted(rows) == sorted(expected) and result.quarantine_counts == {"duplicate_event_id": 3}
    assert pc.count_distinct(result.table["event_id"]).as_py() == result.table.num_rows == 57


def test_large_table_takes_the_parallel_and_gather_paths():
    """Above 200k rows columns convert in threads and low-cardinality int keys are gathered, not cast."""
    n = 250_000
    rng = np.random.default_rng(0)
    cards = rng.integers(-50, 5_000, n)
    nulls = rng.random(n) < 0.001
    raw = pa.table({"ts": pa.array(np.arange(n), pa.timestamp("s")),
                    "card": pa.array(cards, pa.int32(), mask=nulls), "id": pa.array(np.arange(n) * 3)})
    schema = DataSchema.from_config({"name": "big", "source": "x.parquet", "timestamp": "ts", "event_id": "id",
                                     "entities": {"customer": "card"}})
    table = convert_events(raw, schema).table
    assert table["customer_id"].to_pylist() == [None if m else str(c) for c, m in zip(cards, nulls)]
    assert table["event_id"][n - 1].as_py() == str(3 * (n - 1))
    assert table["event_time"][n - 1].as_py() == datetime(1970, 1, 1) + timedelta(seconds=n - 1)
