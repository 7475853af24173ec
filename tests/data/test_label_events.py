"""Landed labels as events (`label_events:`): hand-built cases with known answers, and the point-in-time rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from foundation.data.config_values import SchemaError
from foundation.data.label_events import is_label_event
from foundation.data.schema import DataSchema
from foundation.data.sequences import build_sequences
from foundation.data.validate import validate
from foundation.pointintime import velocity_features
from foundation.preparation import sequence_files

T0 = datetime(2024, 1, 10)
DAY = timedelta(days=1)


def _schema(label_events=("is_fraud",), delay: str = "7d", **extra) -> DataSchema:
    node = {"name": "landed", "source": "events.parquet", "timestamp": "ts", "event_id": "tx",
            "entities": {"customer": "card", "merchant": "terminal"},
            "fields": {"event_type": {"column": "kind", "type": "categorical", "outcome": True},
                       "amount": {"column": "amount", "type": "numeric"},
                       "mcc": {"column": "mcc", "type": "categorical"}},
            "labels": {"is_fraud": "is_fraud", "approved": "approved"},
            "splits": {"label_delay": delay}, **extra}
    if label_events is not None:
        node["label_events"] = list(label_events) if not isinstance(label_events, dict) else label_events
    return DataSchema.from_config(node)


# (tx, days after T0, card, terminal, kind, amount, mcc, is_fraud, approved)
ROWS = [("a", 0.0, "c1", "t1", "charge", 10.0, "5411", 0.0, 1.0),
        ("b", 1.0, "c1", "t1", "charge", 80.0, "5999", 1.0, 1.0),
        ("c", 2.0, "c2", "t1", "decline", 50.0, "5999", 1.0, 0.0),
        ("d", 3.0, "c2", "t2", "charge", 20.0, "5411", None, 1.0),
        ("e", 9.0, "c1", "t2", "charge", 15.0, "5411", 0.0, 1.0)]


def _raw(rows=ROWS) -> pa.Table:
    tx, days, card, terminal, kind, amount, mcc, fraud, approved = map(list, zip(*rows))
    return pa.table({"tx": tx, "ts": pa.array([T0 + d * DAY for d in days], pa.timestamp("ms")), "card": card,
                     "terminal": terminal, "kind": kind, "amount": amount, "mcc": mcc,
                     "is_fraud": pa.array(fraud, pa.float64()), "approved": pa.array(approved, pa.float64())})


def test_each_positive_label_lands_as_an_event_after_the_delay():
    result = validate(_raw(), _schema())
    table = result.table
    landed = table.filter(pa.array(is_label_event(table, _schema())))
    assert result.n_label_events == 2 and table.num_rows == len(ROWS) + 2
    assert sorted(landed["event_id"].to_pylist()) == ["b:landed:is_fraud", "c:landed:is_fraud"]
    by_id = {r["event_id"]: r for r in landed.to_pylist()}
    b = by_id["b:landed:is_fraud"]
    assert b["event_time"] == T0 + 1 * DAY + 7 * DAY, "lands at the labelled event's time + label_delay"
    assert (b["customer_id"], b["merchant_id"], b["amount"], b["mcc"]) == ("c1", "t1", 80.0, "5999")
    assert b["landed_label"] == "is_fraud"
    assert b["event_type"] is None, "outcome fields are not copied: the label event is no charge or decline"
    assert b["is_fraud"] is None and b["approved"] is None, "a label event is never an example"
    source = table.filter(pc.invert(pa.array(is_label_event(table, _schema()))))
    assert source["landed_label"].null_count == len(ROWS)


def test_short_form_dict_form_and_custom_field():
    assert _schema(["is_fraud"]).label_events.field == "landed_label"
    schema = _schema({"labels": ["is_fraud", "approved"], "field": "known_outcome"})
    assert schema.label_events.labels == ("is_fraud", "approved")
    assert schema.fields["known_outcome"].outcome and schema.fields["known_outcome"].type == "categorical"
    assert "known_outcome" not in schema.raw_columns, "the framework fills it: no raw column is read"
    table = validate(_raw(), schema).table
    assert table.num_rows == len(ROWS) + 2 + 4, "two frauds and four approvals land"


@pytest.mark.parametrize(("label_events", "delay", "message"), [
    (["chargeback"], "7d", "label_events.labels"),
    ({"labels": ["is_fraud"], "field": "mcc"}, "7d", "label_events.field"),
    (["is_fraud"], "0d", "label_delay > 0"),
    ({"labels": []}, "7d", "label_events.labels"),
])
def test_bad_config_names_the_key(label_events, delay, message):
    with pytest.raises(SchemaError, match=message):
        _schema(label_events, delay)


def test_a_label_event_reaches_the_sequences_of_both_entities_at_its_landing_time(tmp_path):
    schema = _schema()
    build_sequences(validate(_raw(), schema).table, schema, tmp_path)
    def landed(entity_type: str, entity_id: str) -> list:
        rows = pq.read_table(sequence_files(tmp_path, entity_type)).to_pylist()
        return next(r for r in rows if r["entity_id"] == entity_id)["landed_label"]

    assert landed("customer", "c1") == [None, None, "is_fraud", None], "c1: a, b, b's label at day 8, e at day 9"
    assert landed("merchant", "t1") == [None, None, None, "is_fraud", "is_fraud"], "a, b, c, then b's and c's labels"


def test_velocity_features_never_read_label_events():
    """The incumbent's features of every source event are the same with and without label events; the label
    events' own rows are NaN (never examples)."""
    with_events = validate(_raw(), _schema()).table
    without = validate(_raw(), _schema(label_events=None)).table
    config = {"windows": ["1d", "30d"], "entities": ["customer", "merchant"], "risk_entities": ["customer"],
              "risk_windows": ["30d"], "risk_labels": ["is_fraud"], "pairs": [], "raw_fields": ["amount", "mcc"]}
    a = velocity_features(with_events, _schema(), config, fit_until=T0 + 30 * DAY)
    b = velocity_features(without, _schema(label_events=None), config, fit_until=T0 + 30 * DAY)
    assert a.names == b.names
    landed = is_label_event(with_events, _schema())
    np.testing.assert_array_equal(a.values[~landed], b.values)
    assert np.isnan(a.values[landed]).all()
    assert list(a.event_id[~landed]) == list(b.event_id)
