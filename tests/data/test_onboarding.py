"""Onboarding datasets end to end: YAML -> read_events (parquet/CSV; file, folder, glob) -> validate."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from foundation.data.events import read_events
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.validate import validate
from tests.data.raw_events import CONF_DATA, small_schema_dict, sparkov_raw, synthetic_raw


def _write_parts(table: pa.Table, folder, rows_per_part: int, fmt: str = "parquet") -> None:
    folder.mkdir(parents=True)
    for index, start in enumerate(range(0, table.num_rows, rows_per_part)):
        part = table.slice(start, rows_per_part)
        if fmt == "parquet":
            pq.write_table(part, folder / f"part-{index:05d}.parquet")
        else:
            pacsv.write_csv(part, folder / f"part-{index:05d}.csv")


def test_sparkov_slice_onboards_through_its_yaml(tmp_path):
    """The real file's columns and types, ~200 rows, with only the source path overridden."""
    raw = sparkov_raw(200)
    path = tmp_path / "transactions.parquet"
    pq.write_table(raw, path)
    schema = DataSchema.from_yaml(CONF_DATA / "sparkov.yaml", overrides=[f"source.path={path}"],
                                  root={"paths": {"root_dir": str(tmp_path), "data_dir": str(tmp_path / "data")}})
    result = validate(read_events(schema), schema)
    table = result.table
    assert result.quarantine_counts == {} and table.num_rows == 200
    assert table.schema.equals(schema.canonical_schema())
    assert table["customer_id"].to_pylist() == raw["card_id"].to_pylist()  # leading zeros kept
    assert table["merchant_id"].to_pylist() == raw["merchant_id"].to_pylist()
    assert table["event_time"].to_pylist() == [t.replace(microsecond=t.microsecond // 1000 * 1000)
                                               for t in raw["ts"].to_pylist()]
    assert table["is_fraud"].to_pylist() == [float(v) for v in raw["is_fraud"].to_pylist()]
    assert table["city_pop"].type == pa.float64() and "dob" not in table.column_names

    # A broken copy is quarantined under the YAML's quarantine_dir, nothing lost.
    bad = raw.set_column(4, "amount", pc.if_else(pc.equal(raw["event_id"], 10), -1.0, raw["amount"]))
    pq.write_table(bad, path)
    result = validate(read_events(schema), schema)
    assert result.quarantine_counts == {"negative_value.amount": 1}
    assert result.quarantine_paths["negative_value.amount"].parent == tmp_path / "data" / "sparkov" / "quarantine"
    assert result.table.num_rows + result.n_quarantined == 200


def test_synthetic_parts_folder_onboards_through_its_yaml(tmp_path):
    raw = synthetic_raw(240)
    _write_parts(raw, tmp_path / "synthetic" / "events", rows_per_part=50)
    schema = DataSchema.from_yaml(CONF_DATA / "synthetic.yaml", root={"paths": {"data_dir": str(tmp_path)}})
    events = read_events(schema)
    assert events.column_names == schema.raw_columns and "disputed_event_id" not in events.column_names
    assert events["event_id"].to_pylist() == raw["event_id"].to_pylist()  # parts read in order
    result = validate(events, schema)
    assert result.table.num_rows == 240 and result.quarantine_counts == {}
    assert result.table["issuer_id"].to_pylist() == [str(v) for v in raw["issuer_id"].to_pylist()]


@pytest.mark.parametrize("layout", ["file", "folder", "glob", "hive"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_read_events_from_files_folders_and_globs(tmp_path, layout, fmt):
    raw = synthetic_raw(120)
    if layout == "file":
        path = tmp_path / f"events.{fmt}"
        pq.write_table(raw, path) if fmt == "parquet" else pacsv.write_csv(raw, path)
    elif layout in ("folder", "glob"):
        _write_parts(raw, tmp_path / "events", rows_per_part=25, fmt=fmt)
        (tmp_path / "events" / "_SUCCESS").write_text("")  # markers written by Spark are skipped
        path = tmp_path / "events" / ("*" if layout == "glob" else "")
    else:
        for month in (1, 2):
            part = raw.filter(pc.equal(pc.month(raw["ts"]), month))
            _write_parts(part, tmp_path / "events" / f"month={month}", rows_per_part=25, fmt=fmt)
        raw = pa.concat_tables([raw.filter(pc.equal(pc.month(raw["ts"]), m)) for m in (1, 2)])
        path = tmp_path / "events"
    schema = DataSchema.from_config(small_schema_dict(source={"path": str(path), "format": fmt}))
    result = validate(read_events(schema), schema)
    assert result.table["event_id"].to_pylist() == [str(v) for v in raw["event_id"].to_pylist()]
    assert result.table["amount"].to_pylist() == raw["amount"].to_pylist()
    assert result.table["event_time"].to_pylist() == raw["ts"].to_pylist()
    assert result.table["is_fraud"].to_pylist() == raw["is_fraud"].to_pylist()


def test_minimal_dataset_with_card_and_terminal_only(tmp_path):
    path = tmp_path / "pos.csv"
    path.write_text("time,card,terminal\n2024-01-01 10:00:00,0042,T1\n2024-01-01 10:05:00,0042,T2\n"
                    "2024-01-02 09:00:00,77,T1\n")
    schema = DataSchema.from_config({"name": "pos", "source": str(path), "timestamp": "time",
                                     "entities": {"customer": "card", "merchant": "terminal"}})
    table = validate(read_events(schema), schema).table
    assert table.to_pydict() == {
        "event_id": ["0", "1", "2"],
        "event_time": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 5), datetime(2024, 1, 2, 9)],
        "customer_id": ["0042", "0042", "77"],  # CSV is read as text: ids keep their leading zeros
        "merchant_id": ["T1", "T2", "T1"]}


def test_csv_problems_are_quarantined_with_raw_text(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("ts;card;amount\n2024-01-01;a;1.5\n2024-01-02;b;abc\nsoon;c;2\n2024-01-04;;3\n"
                    "2024-01-05;e;NaN\n2024-01-06;f;\n")
    schema = DataSchema.from_config({
        "name": "tx", "source": {"path": str(path), "delimiter": ";"}, "timestamp": "ts",
        "entities": {"customer": "card"}, "fields": {"amount": {"type": "numeric"}},
        "validation": {"on_error": "quarantine", "quarantine_dir": str(tmp_path / "q")}})
    result = validate(read_events(schema), schema)
    assert result.quarantine_counts == {"unparsable_timestamp": 1, "null_entity_key.customer": 1,
                                        "wrong_type.amount": 1, "nan_value.amount": 1}
    assert result.table["customer_id"].to_pylist() == ["a", "f"]
    assert result.table["amount"].to_pylist() == [1.5, None]  # an empty cell is a null, not an error
    wrong = pq.read_table(result.quarantine_paths["wrong_type.amount"]).to_pylist()
    assert wrong == [{"ts": "2024-01-02", "card": "b", "amount": "abc", "_source_row": 1}]


def test_read_events_errors_name_the_path_and_the_columns(tmp_path):
    schema = DataSchema.from_config(small_schema_dict(source={"path": str(tmp_path / "nope" / "*.parquet")}))
    with pytest.raises(FileNotFoundError, match="source.path: the glob .*nope.* matches no file"):
        read_events(schema)
    schema = DataSchema.from_config(small_schema_dict(source={"path": str(tmp_path / "missing.parquet")}))
    with pytest.raises(FileNotFoundError, match="source.path: .*missing.parquet' is not a file"):
        read_events(schema)
    pq.write_table(synthetic_raw(5).rename_columns(
        ["id" if c == "event_id" else c for c in synthetic_raw(5).column_names]), tmp_path / "missing.parquet")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) 'event_id' \(event_id\).*available columns: 'id'"):
        read_events(schema)
