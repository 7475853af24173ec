"""Bad source files and values: one line naming the file or column, never pyarrow's raw ArrowInvalid."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundation.data.events import read_events
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.validate import validate
from tests.data.raw_events import small_schema_dict, synthetic_raw
from tests.data.test_onboarding import _write_parts


def _folder_schema(folder, fmt: str = "parquet") -> DataSchema:
    return DataSchema.from_config(small_schema_dict(source={"path": str(folder), "format": fmt}))


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "not_parquet"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_an_unreadable_file_in_a_source_folder_is_named(tmp_path, damage, position):
    folder = tmp_path / "events"
    _write_parts(synthetic_raw(100), folder, rows_per_part=25)
    name = "part-00000.parquet" if position == "first" else "part-00003.parquet"
    target = folder / name
    content = target.read_bytes()
    target.write_bytes({"zero_bytes": b"", "truncated": content[: len(content) // 2],
                        "not_parquet": b"event_id,ts\n1,2024-01-01\n"}[damage])
    with pytest.raises(DataValidationError) as err:
        read_events(_folder_schema(folder))
    message = str(err.value)
    assert message.startswith(f"source.path: cannot read '{target}' as parquet (") and "\n" not in message


def test_non_data_files_in_a_folder_are_skipped_counted_and_said(tmp_path, caplog):
    folder = tmp_path / "events"
    raw = synthetic_raw(100)
    _write_parts(raw, folder, rows_per_part=25)
    (folder / "notes.txt").write_text("loaded by hand on Monday\n")
    (folder / "README.md").write_text("# events\n")
    with caplog.at_level(logging.WARNING, logger="foundation.data.source"):
        events = read_events(_folder_schema(folder))
    assert events["event_id"].to_pylist() == raw["event_id"].to_pylist()
    assert "skipped 2 file(s) that are not parquet data by their extension: README.md, notes.txt" in caplog.text


def test_a_folder_without_data_files_is_one_clear_error(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here yet\n")
    with pytest.raises(DataValidationError, match=r"^source.path: '.*events' holds no parquet file \(skipped 1"):
        read_events(_folder_schema(folder))


def test_an_empty_source_stops_with_one_line(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(synthetic_raw(10).slice(0, 0), path)
    with pytest.raises(DataValidationError, match=r"^source.path: '.*events.parquet' holds no events \(0 rows in 1"):
        read_events(_folder_schema(path))


@pytest.mark.parametrize("values, dtype", [([1_700_000_000, 10**17], pa.int64()),
                                           ([1.7e9, 1e30], pa.float64()), (["1700000000", "1e30"], pa.string())])
def test_an_overflowing_epoch_column_is_named(values, dtype):
    schema = DataSchema.from_config({"name": "t", "source": "x.parquet", "timestamp": {"column": "ts", "unit": "s"},
                                     "entities": {"customer": "card"}})
    raw = pa.table({"ts": pa.array(values, dtype), "card": ["a", "b"]})
    with pytest.raises(DataValidationError, match=r"^column 'ts' \(timestamp.column\): epoch value 1e\+(17|30) in s "
                                                  r"overflows the millisecond timestamp range"):
        validate(raw, schema)


def test_blank_keys_are_quarantined_like_null_keys(tmp_path):
    raw = synthetic_raw(20)
    cards = [str(v) for v in raw["card_id"].to_pylist()]
    cards[3], cards[5], cards[8] = "   ", "\t", ""
    raw = raw.set_column(raw.column_names.index("card_id"), "card_id", pa.array(cards))
    schema = DataSchema.from_config(small_schema_dict())
    result = validate(raw, schema, quarantine_dir=tmp_path, on_error="quarantine")
    assert result.quarantine_counts == {"null_entity_key.customer": 3}
    rows = pq.read_table(result.quarantine_paths["null_entity_key.customer"])["_source_row"].to_pylist()
    assert rows == [3, 5, 8] and np.all(np.char.strip(np.array(result.table["customer_id"].to_pylist())) != "")
