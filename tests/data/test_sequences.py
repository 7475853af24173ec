"""Sequence store: time order, completeness, sharding, period filtering, reproducibility."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from foundation.data.schema import DataSchema
from foundation.data.sequences import SequenceManifest, build_sequences

T0 = np.datetime64("2024-01-01T00:00:00", "ms").astype(np.int64)
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def tiny_schema(issuer: str = "aggregate") -> DataSchema:
    """The synthetic schema shape with a few fields; `issuer` is its representation."""
    issuer_spec = {"column": "issuer_id", "representation": issuer}
    if issuer == "aggregate":
        issuer_spec["bucket"] = "1h"
    return DataSchema.from_config({
        "name": "tiny",
        "source": {"path": "events.parquet"},
        "timestamp": "ts",
        "entities": {"customer": {"column": "card_id"}, "merchant": {"column": "merchant_id"}, "issuer": issuer_spec},
        "fields": {
            "event_type": {"type": "categorical", "outcome": True},
            "amount": {"type": "numeric", "min": 0},
            "mcc": {"type": "categorical"},
            "descriptor": {"type": "text"},
        },
        "labels": {"is_fraud": {"column": "is_fraud"}},
        "splits": {
            "pretrain": {"start": "2024-01-01", "end": "2024-01-03"},
            "train": {"start": "2024-01-02", "end": "2024-01-04"},
        },
    })


def canonical_table(n: int = 300, seed: int = 0, days: int = 5) -> pa.Table:
    """A canonical event table. Times are whole minutes so ties are common;
    event ids are unpadded numbers so string order differs from numeric order ("10" < "9"); refunds have
    no issuer (an optional key)."""
    rng = np.random.default_rng(seed)
    t = T0 + rng.integers(0, days * 24 * 60, n) * MINUTE
    event_type = rng.choice(["charge", "decline", "refund"], n, p=[0.7, 0.2, 0.1])
    issuer = np.where(event_type == "refund", None, rng.choice(["I1", "I2", "I3"], n))
    customer = rng.integers(0, 25, n)
    # Ties: the first 20 odd rows repeat the time and customer of the row before them.
    t[1:40:2], customer[1:40:2] = t[0:40:2], customer[0:40:2]
    return pa.table({
        "event_id": pa.array(rng.permutation(n).astype(str)),
        "event_time": pa.array(t, pa.timestamp("ms")),
        "customer_id": pa.array(customer.astype(str)),
        "merchant_id": pa.array(rng.choice(["m" + str(i) for i in range(12)], n)),
        "issuer_id": pa.array(issuer, pa.string()),
        "event_type": pa.array(event_type),
        "amount": pa.array(np.round(rng.lognormal(3, 1, n), 2)),
        "mcc": pa.array(rng.choice(["5411", "5812", None], n), pa.string()),
        "descriptor": pa.array(rng.choice(["AMZN MKTP US*2K4", "SHELL OIL 5744"], n)),
        "is_fraud": pa.array(np.where(event_type == "refund", np.nan, rng.random(n) < 0.1), from_pandas=True),
    })


def read_type(seq_dir, entity_type: str) -> pa.Table:
    manifest = SequenceManifest.read(seq_dir)
    return pa.concat_tables([pq.read_table(seq_dir / p) for p in manifest.entity_types[entity_type].shards])


def explode(seqs: pa.Table) -> pa.Table:
    """One row per (entity, event) from a sequence table."""
    lists = [c for c in seqs.column_names if pa.types.is_list(seqs.schema.field(c).type)]
    parent = pc.list_parent_indices(seqs.column("event_id"))
    flat = {c: pc.list_flatten(seqs.column(c)) for c in lists}
    return pa.table({"entity_id": seqs.column("entity_id").take(parent), **flat})


def test_sequences_are_in_time_order_with_event_id_ties_whatever_the_input_order(tmp_path):
    events = canonical_table()
    shuffled = events.take(np.random.default_rng(1).permutation(events.num_rows))
    build_sequences(shuffled, tiny_schema(), tmp_path / "a", entities_per_shard=4)
    seqs = read_type(tmp_path / "a", "customer")
    ties = 0
    for times, ids in zip(seqs.column("event_time").to_pylist(), seqs.column("event_id").to_pylist()):
        keys = list(zip(times, ids))
        assert keys == sorted(keys)
        ties += len(times) - len(set(times))
    assert ties > 0, "fixture must contain equal timestamps within an entity"
    # Same events in another row order: byte-identical shards.
    build_sequences(events, tiny_schema(), tmp_path / "b", entities_per_shard=4)
    for path in sorted((tmp_path / "a").rglob("*.parquet")):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_every_event_appears_exactly_once_per_entity_type_with_its_values(tmp_path):
    events = canonical_table()
    schema = tiny_schema(issuer="events")
    manifest = build_sequences(events, schema, tmp_path, entities_per_shard=5)
    for etype in ("customer", "merchant", "issuer"):
        flat = explode(read_type(tmp_path, etype))
        keyed = events.filter(pc.is_valid(events.column(f"{etype}_id")))
        assert flat.num_rows == keyed.num_rows == manifest.entity_types[etype].events
        assert sorted(flat.column("event_id").to_pylist()) == sorted(keyed.column("event_id").to_pylist())
        # Each event sits in its own entity's sequence and carries its own field and label values.
        joined = flat.join(keyed, "event_id", right_suffix="_in")
        assert joined.column("entity_id").equals(joined.column(f"{etype}_id"))
        for name in ("event_time", "amount", "mcc", "event_type", "descriptor", "is_fraud"):
            assert joined.column(name).equals(joined.column(f"{name}_in")), name
    # Refunds have no issuer: skipped for that type only, and counted.
    refunds = int(pc.sum(pc.equal(events.column("event_type"), "refund")).as_py())
    assert refunds > 0
    assert manifest.entity_types["issuer"].skipped_null_key == refunds
    assert manifest.entity_types["customer"].skipped_null_key == 0


def test_shards_are_contiguous_ranges_of_sorted_entity_ids(tmp_path):
    events = canonical_table()
    manifest = build_sequences(events, tiny_schema(), tmp_path, entities_per_shard=4, entity_types=["customer"])
    ids = sorted(set(events.column("customer_id").to_pylist()))  # string order: "10" < "2"
    stats = manifest.entity_types["customer"]
    assert list(manifest.entity_types) == ["customer"]
    assert stats.shards == [f"customer/part-{s:05d}.parquet" for s in range(-(-len(ids) // 4))]
    for s, path in enumerate(stats.shards):
        shard = pq.read_table(tmp_path / path)
        assert shard.column("entity_id").to_pylist() == ids[4 * s : 4 * s + 4]
        assert set(shard.column("entity_type").to_pylist()) == {"customer"}
        lengths = pc.list_value_length(shard.column("event_id")).cast(pa.int32())
        assert shard.column("length").equals(lengths)
    # A rebuild with fewer shards leaves no stale part files behind.
    build_sequences(events, tiny_schema(), tmp_path, entities_per_shard=100, entity_types=["customer"])
    assert sorted(p.name for p in (tmp_path / "customer").iterdir()) == ["part-00000.parquet"]


def test_output_columns_and_types_follow_the_contract(tmp_path):
    build_sequences(canonical_table(), tiny_schema(), tmp_path, entity_types=["merchant"])
    shard = pq.read_table(tmp_path / "merchant" / "part-00000.parquet")
    expected = [
        ("entity_type", pa.string()), ("entity_id", pa.string()), ("length", pa.int32()),
        ("event_id", pa.list_(pa.string())), ("event_time", pa.list_(pa.timestamp("ms"))),
        ("event_type", pa.list_(pa.string())), ("amount", pa.list_(pa.float64())),
        ("mcc", pa.list_(pa.string())), ("descriptor", pa.list_(pa.string())), ("is_fraud", pa.list_(pa.float64())),
    ]
    assert [(f.name, f.type) for f in shard.schema] == expected  # list<T> compares by value type


def test_period_and_until_keep_only_events_inside_the_window(tmp_path):
    events = canonical_table()
    start, end = np.datetime64("2024-01-02", "ms"), np.datetime64("2024-01-04", "ms")
    manifest = build_sequences(events, tiny_schema(), tmp_path / "train", period="train", entity_types=["customer"])
    flat = explode(read_type(tmp_path / "train", "customer"))
    times = flat.column("event_time").to_numpy()
    t = events.column("event_time").to_numpy()
    assert times.min() >= start and times.max() < end
    assert flat.num_rows == int(((t >= start) & (t < end)).sum()) < events.num_rows
    assert (manifest.period, manifest.start, manifest.end) == ("train", "2024-01-02T00:00:00", "2024-01-04T00:00:00")

    until = dt.datetime(2024, 1, 3, 12, 30)
    build_sequences(events, tiny_schema(), tmp_path / "hist", until=until, entity_types=["customer"])
    flat = explode(read_type(tmp_path / "hist", "customer"))
    assert flat.column("event_time").to_numpy().max() < np.datetime64(until, "ms")
    assert flat.num_rows == int((t < np.datetime64(until, "ms")).sum())


def test_empty_entity_type_still_writes_one_shard_with_the_schema(tmp_path):
    events = canonical_table()
    no_issuer = pa.nulls(events.num_rows, pa.string())  # no event in the window has an issuer key
    events = events.set_column(events.column_names.index("issuer_id"), "issuer_id", no_issuer)
    manifest = build_sequences(events, tiny_schema(), tmp_path, period="train")
    stats = manifest.entity_types["issuer"]
    assert (stats.entities, stats.events, len(stats.shards)) == (0, 0, 1)
    assert stats.skipped_null_key > 0 and manifest.entity_types["customer"].entities > 0
    shard = pq.read_table(tmp_path / stats.shards[0])
    assert shard.num_rows == 0 and shard.schema.names == stats.columns


def test_an_empty_window_stops_with_one_line_naming_the_period(tmp_path):
    events = canonical_table(days=1)  # nothing falls in the "train" period
    with pytest.raises(ValueError, match=r"^schema 'tiny': no events in period 'train' \[2024-01-02T00:00:00, "
                                         r"2024-01-04T00:00:00\); the 300 events span 2024-01-01") as err:
        build_sequences(events, tiny_schema(), tmp_path / "train", period="train")
    assert "\n" not in str(err.value) and not (tmp_path / "train").exists()
    with pytest.raises(ValueError, match=r"the event table is empty \(0 rows"):
        build_sequences(events.slice(0, 0), tiny_schema(), tmp_path / "all")
    with pytest.raises(ValueError, match=r"no events in the window \[-inf, 2024-01-01T00:00:00\)"):
        build_sequences(events, tiny_schema(), tmp_path / "hist", until="2024-01-01")


def test_rerun_is_byte_identical(tmp_path):
    events = canonical_table()
    for out in ("a", "b"):
        build_sequences(events, tiny_schema(), tmp_path / out, period="pretrain", entities_per_shard=3)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.name == "manifest.json" for f in files) and len(files) > 5
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_bad_input_is_a_clear_error(tmp_path):
    events = canonical_table(n=20)
    with pytest.raises(ValueError, match="'amount' is missing"):
        build_sequences(events.drop_columns(["amount"]), tiny_schema(), tmp_path)
    with pytest.raises(ValueError, match="'amount' has type int64"):
        build_sequences(events.set_column(6, "amount", pa.array(np.arange(20))), tiny_schema(), tmp_path)
    with pytest.raises(ValueError, match="'event_time' has 1 nulls"):
        bad_time = pa.array([None] + events.column("event_time").to_pylist()[1:], pa.timestamp("ms"))
        build_sequences(events.set_column(1, "event_time", bad_time), tiny_schema(), tmp_path)
    with pytest.raises(ValueError, match="period 'holdout' is not a split"):
        build_sequences(events, tiny_schema(), tmp_path, period="holdout")
    with pytest.raises(ValueError, match=r"entity_types \['card'\]"):
        build_sequences(events, tiny_schema(), tmp_path, entity_types=["card"])
