"""Labels set by outcome events (`labels.<name>.from_events`): hand-built cases with known answers."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from foundation.data.config_values import SchemaError
from foundation.data.schema import DataSchema
from foundation.data.validate import validate

T0 = datetime(2024, 1, 10)


def _schema(label: dict, fields: dict | None = None, quarantine: str | None = None) -> DataSchema:
    policy = {"on_error": "quarantine", "quarantine_dir": quarantine} if quarantine else {}
    return DataSchema.from_config({"validation": policy,
        "name": "disputes", "source": "events.parquet", "timestamp": "ts", "event_id": "tx",
        "entities": {"customer": "card", "merchant": "terminal"},
        "fields": fields or {"event_type": {"column": "kind", "type": "categorical", "outcome": True},
                             "amount": {"column": "amount", "type": "numeric"}},
        "labels": {"is_fraud": label}})


def _raw(rows: list[tuple]) -> pa.Table:
    """rows: (tx, hours after T0, card, terminal, kind, amount)."""
    tx, hours, card, terminal, kind, amount = map(list, zip(*rows))
    return pa.table({"tx": tx, "ts": pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("ms")),
                     "card": card, "terminal": terminal, "kind": kind, "amount": amount})


def _labels(table: pa.Table) -> dict[str, float]:
    return dict(zip(table["event_id"].to_pylist(), table["is_fraud"].to_numpy(zero_copy_only=False)))


ROWS = [("a", 0, "c1", "t1", "charge", 10.0),
        ("b", 5, "c1", "t1", "charge", 80.0),     # the latest c1/t1 charge before the dispute at hour 100
        ("c", 6, "c1", "t2", "charge", 10.0),     # another terminal
        ("d", 7, "c2", "t1", "charge", 10.0),     # another card
        ("x", 100, "c1", "t1", "dispute", 80.0),
        ("e", 120, "c1", "t1", "charge", 10.0)]   # after the dispute: never marked by it


def test_match_marks_the_latest_earlier_event_of_the_same_entities():
    schema = _schema({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["customer", "merchant"]}})
    labels = _labels(validate(_raw(ROWS), schema).table)
    assert {k: v for k, v in labels.items() if k != "x"} == {"a": 0, "b": 1, "c": 0, "d": 0, "e": 0}
    assert np.isnan(labels["x"]), "the outcome event itself is not an example"


def test_match_on_a_field_and_a_window():
    by_amount = _schema({"from_events": {"field": "event_type", "values": ["dispute"],
                                         "match": ["customer", "amount"]}})
    rows = [("x", 100, "c1", "t1", "dispute", 10.0)] + [r for r in ROWS if r[0] != "x"]
    labels = _labels(validate(_raw(rows), by_amount).table)
    assert labels["c"] == 1 and labels["a"] == 0 and labels["b"] == 0  # c1 paid 10.0 last at hour 6 (t2)
    short = _schema({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["customer", "merchant"],
                                     "within": "2d"}})
    labels = _labels(validate(_raw(ROWS), short).table)
    assert labels["b"] == 0, "a dispute 95 hours after the charge is outside a 2-day window"


def test_ref_marks_the_named_event():
    fields = {"event_type": {"column": "kind", "type": "categorical", "outcome": True},
              "disputed": {"column": "disputed", "type": "categorical", "outcome": True}}
    schema = _schema({"from_events": {"field": "event_type", "values": ["dispute"], "ref": "disputed"}}, fields)
    raw = _raw(ROWS).append_column("disputed", pa.array([None, None, None, None, "a", None], pa.string()))
    labels = _labels(validate(raw, schema).table)
    assert {k: v for k, v in labels.items() if k != "x"} == {"a": 1, "b": 0, "c": 0, "d": 0, "e": 0}


def test_a_quarantined_dispute_marks_nothing(tmp_path):
    schema = _schema({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["customer", "merchant"]}},
                     quarantine=str(tmp_path))
    rows = [r if r[0] != "x" else ("a", 100, "c1", "t1", "dispute", 80.0) for r in ROWS]  # duplicate id: quarantined
    result = validate(_raw(rows), schema)
    assert result.quarantine_counts == {"duplicate_event_id": 1}
    assert set(_labels(result.table).values()) == {0.0}


@pytest.mark.parametrize(("label", "message"), [
    ({"from_events": {"field": "kind", "values": ["dispute"], "match": ["customer"]}}, "'kind' is not a categorical"),
    ({"from_events": {"field": "amount", "values": ["dispute"], "match": ["customer"]}}, "'amount' is not a categ"),
    ({"from_events": {"field": "event_type", "values": ["dispute"]}}, "give `ref`"),
    ({"from_events": {"field": "event_type"}}, "needs `field`"),
    ({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["issuer"]}}, "name no entity"),
    ({"from_events": {"field": "event_type", "values": ["dispute"], "ref": "nope"}}, "'nope' is not a field"),
    ({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["customer"], "within": "7x"}},
     "cannot parse duration"),
    ({"column": "fraud", "from_events": {"field": "event_type", "values": ["d"], "match": ["customer"]}}, "not both"),
    ({"from_events": {"field": "event_type", "values": ["d"], "match": ["customer"], "by": 1}}, "by"),
])
def test_bad_derived_labels_name_the_key(label, message):
    with pytest.raises(SchemaError, match="labels.is_fraud") as error:
        _schema(label)
    assert message in str(error.value)


def test_a_derived_label_has_no_raw_column_anywhere_a_raw_event_is_read():
    from foundation.embeddings.api import Embedder
    from foundation.serving.schemas import EventParser

    schema = _schema({"from_events": {"field": "event_type", "values": ["dispute"], "match": ["customer", "merchant"]}})
    assert schema.label_columns == [] and [s.name for s in schema.derived_labels] == ["is_fraud"]
    assert None not in schema.raw_columns
    parser = EventParser(schema)  # the service's request parser: labels are never inputs
    records = parser.parse_batch([{"tx": "a", "ts": "2024-01-10T00:00:00", "card": "c1", "terminal": "t1",
                                   "kind": "charge", "amount": 1.0}], max_events=10)
    assert len(records) == 1
    embedder = Embedder.__new__(Embedder)  # the raw-table preparation of the Embedder, without a model
    embedder.schema = schema
    table = _raw(ROWS[:2])
    assert embedder._raw_table(table).column_names == table.column_names
