"""Aggregate representation: hourly buckets stamped at their end, with point-in-time correct statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from foundation.data.aggregates import bucket_ms, count_column_name, top_values
from foundation.data.schema import SchemaError
from foundation.data.sequences import build_sequences
from tests.data.test_sequences import HOUR, MINUTE, T0, canonical_table, explode, read_type, tiny_schema


def _events(rows: list[tuple]) -> pa.Table:
    """Canonical table from (event_id, minutes after T0, issuer, customer, event_type, amount) rows."""
    eid, minutes, issuer, customer, etype, amount = zip(*rows)
    n = len(rows)
    return pa.table({
        "event_id": pa.array(eid),
        "event_time": pa.array(T0 + np.array(minutes, dtype=np.float64).astype(np.int64) * MINUTE, pa.timestamp("ms")),
        "customer_id": pa.array(customer, pa.string()),
        "merchant_id": pa.array(["m"] * n),
        "issuer_id": pa.array(issuer, pa.string()),
        "event_type": pa.array(etype),
        "amount": pa.array(amount, pa.float64()),
        "mcc": pa.array(["5411"] * n),
        "descriptor": pa.array(["SHOP"] * n),
        "is_fraud": pa.array([0.0] * n),
    })


def test_buckets_are_stamped_at_their_end_with_hand_computed_statistics(tmp_path):
    events = _events([
        ("e1", 10, "A", "c1", "charge", 10.0),
        ("e2", 50, "A", "c2", "decline", 30.0),
        ("e3", 60, "A", "c1", "charge", 5.0),  # exactly 01:00: opens the next bucket
        ("e4", 150, "A", "c1", "charge", None),
        ("e5", 179.99, "A", None, "refund", 7.0),
        ("e6", 0, "B", "c3", "decline", 2.0),  # exactly 00:00: bucket [00:00, 01:00)
        ("e7", 300, "C", "c1", "charge", None),  # no amount in the bucket: sum/mean/max unknown
    ])
    manifest = build_sequences(events, tiny_schema(), tmp_path, entity_types=["issuer"])
    stats = manifest.entity_types["issuer"]
    assert (stats.representation, stats.bucket_ms, stats.count_by) == ("aggregate", HOUR, "event_type")
    assert stats.count_values == ["charge", "decline", "refund"]
    seqs = read_type(tmp_path, "issuer").to_pylist()
    assert [s["entity_id"] for s in seqs] == ["A", "B", "C"]
    a, b, c = seqs
    ends = [T0 + h * HOUR for h in (1, 2, 3)]
    assert a["length"] == 3
    assert [t.replace(tzinfo=dt.timezone.utc).timestamp() * 1000 for t in a["event_time"]] == ends
    assert a["event_id"] == [f"issuer:A:{e}" for e in ends]
    assert a["agg_n_events"] == [2.0, 1.0, 2.0]
    assert a["agg_amount_sum"] == [40.0, 5.0, 7.0]
    assert a["agg_amount_mean"] == [20.0, 5.0, 7.0]
    assert a["agg_amount_max"] == [30.0, 5.0, 7.0]
    assert a["agg_n_charge"] == [1.0, 1.0, 1.0]
    assert a["agg_n_decline"] == [1.0, 0.0, 0.0]
    assert a["agg_n_refund"] == [0.0, 0.0, 1.0]
    assert a["agg_n_distinct_customers"] == [2.0, 1.0, 1.0]
    assert (b["event_id"], b["agg_n_events"], b["agg_amount_sum"], b["agg_n_decline"]) == (
        [f"issuer:B:{T0 + HOUR}"], [1.0], [2.0], [1.0])
    assert (c["agg_n_events"], c["agg_amount_sum"], c["agg_amount_mean"], c["agg_amount_max"]) == (
        [1.0], [None], [None], [None])
    assert "is_fraud" not in seqs[0] and "mcc" not in seqs[0]  # labels and other fields are not aggregated
    assert (stats.entities, stats.events, stats.source_events) == (3, 5, 7)


def test_a_bucket_only_holds_events_from_before_its_end(tmp_path):
    events = canonical_table(n=400)
    manifest = build_sequences(events, tiny_schema(), tmp_path, entity_types=["issuer"])
    buckets = explode(read_type(tmp_path, "issuer"))
    raw = events.filter(pc.is_valid(events.column("issuer_id")))
    t = raw.column("event_time").cast(pa.int64()).to_numpy()
    issuer = np.asarray(raw.column("issuer_id").to_pylist())
    customer = np.asarray(raw.column("customer_id").to_pylist())
    amount = raw.column("amount").to_numpy()
    ends = buckets.column("event_time").cast(pa.int64()).to_numpy()
    assert np.all(ends % HOUR == 0)
    for entity, end, n, total, n_customers in zip(
        buckets.column("entity_id").to_pylist(), ends, buckets.column("agg_n_events").to_numpy(),
        buckets.column("agg_amount_sum").to_numpy(), buckets.column("agg_n_distinct_customers").to_numpy(),
    ):
        inside = (issuer == entity) & (t >= end - HOUR) & (t < end)
        assert n == inside.sum() > 0
        assert total == pytest.approx(amount[inside].sum())
        assert n_customers == len(set(customer[inside]))
    assert buckets.column("agg_n_events").to_numpy().sum() == raw.num_rows == manifest.entity_types["issuer"].source_events


def test_buckets_cut_by_the_window_are_dropped_and_counted(tmp_path):
    events = canonical_table(n=400)
    until = np.datetime64("2024-01-03T12:30", "ms")
    manifest = build_sequences(events, tiny_schema(), tmp_path, until=until.astype(object), entity_types=["issuer"])
    ends = explode(read_type(tmp_path, "issuer")).column("event_time").to_numpy()
    assert ends.max() <= np.datetime64("2024-01-03T12:00", "ms")  # the 12:00-13:00 bucket is not closed yet
    t = events.column("event_time").to_numpy()
    keyed = pc.is_valid(events.column("issuer_id")).to_numpy(zero_copy_only=False)
    partial = keyed & (t >= np.datetime64("2024-01-03T12:00", "ms")) & (t < until)
    assert partial.sum() > 0
    stats = manifest.entity_types["issuer"]
    assert stats.skipped_partial_bucket == partial.sum()
    assert stats.source_events == (keyed & (t < until)).sum() - partial.sum()


def test_count_values_are_the_eight_most_frequent_sorted_or_pinned(tmp_path):
    values = [f"v{i}" for i in range(10)]
    column = pa.array(np.repeat(values, [9, 1, 8, 7, 6, 5, 4, 3, 2, 2]).tolist() + [None])
    # v8 and v9 tie for the eighth place: v8 wins by value; v1 is the least frequent.
    assert top_values(column, None) == ["v0", "v2", "v3", "v4", "v5", "v6", "v7", "v8"]
    assert top_values(column, None, limit=2) == ["v0", "v2"]
    assert top_values(column, np.arange(9, 12)) == ["v1", "v2"]  # only the given rows count
    build_sequences(canonical_table(), tiny_schema(), tmp_path, entity_types=["issuer"],
                    count_values={"issuer": ["decline"]})
    names = read_type(tmp_path, "issuer").column_names
    assert [n for n in names if n.startswith("agg_n_")] == ["agg_n_events", "agg_n_decline", "agg_n_distinct_customers"]


def test_aggregate_names_and_buckets_are_checked(tmp_path):
    assert count_column_name("Card Present") == "agg_n_card_present"
    assert (bucket_ms("1h"), bucket_ms("15min"), bucket_ms(60_000)) == (HOUR, 15 * MINUTE, MINUTE)
    with pytest.raises(SchemaError, match="cannot parse duration"):
        bucket_ms("hourly")
    with pytest.raises(ValueError, match="positive duration"):
        bucket_ms(0)
    with pytest.raises(ValueError, match=r"collide: \['agg_n_events'\]"):
        build_sequences(canonical_table(), tiny_schema(), tmp_path, entity_types=["issuer"],
                        count_values={"issuer": ["events"]})
