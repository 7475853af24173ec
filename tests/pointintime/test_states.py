"""Point-in-time states (docs/architecture.md section 8): batch == the scorer's own window, as-of lookups,
and nothing after an event (a later event, a late dispute) ever changes its features or its score."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from foundation.data.validate import validate
from foundation.heads.probe import ProbeHead
from foundation.pointintime import (
    EventSurprise,
    PointInTimeEncoder,
    PointInTimeStates,
    as_of_index,
    event_batch,
    event_vectors,
    example_states,
    gather_windows,
    window_batch,
    window_start,
)
from tests.embeddings.world import raw_events, write_events

ENTITIES = ["customer", "merchant", "issuer"]


def _encoder(world, batch_tokens: int = 64) -> PointInTimeEncoder:
    return PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), batch_tokens, progress=False)


@pytest.mark.parametrize("entity_type", ["customer", "issuer"])
def test_every_event_state_equals_a_forward_over_its_own_window(world, entity_type):
    """The block-batched state of event i == the model on [window_start(i), i] alone (the scorer's batch)."""
    encoded = world.store.encoded(world.store.shards(entity_type)[0])
    encoder, specs, model = _encoder(world, 256), world.run.tokenizer.field_specs(), world.run.model
    states = encoder.all_states(encoded.slice(0, 2))  # (events of 2 entities, H)
    lengths = encoded["length"].to_numpy()
    starts = np.r_[0, np.cumsum(lengths)]
    max_len = model.config.max_position
    assert lengths[:2].min() > 2 * max_len  # the histories cross several window blocks
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for r in range(2):
            row = encoded.slice(r, 1)
            # the first blocks (window start 0, then moving) and a sample of later events
            later = rng.choice(np.arange(3 * max_len, lengths[r]), 6, replace=False)
            for i in np.r_[np.arange(2 * max_len + 1), later]:
                first = window_start(i, max_len)
                expected = model(window_batch(row, specs, first, i - first + 1)).entity_embedding[0].numpy()
                np.testing.assert_allclose(states[starts[r] + i], expected, atol=2e-5, rtol=1e-4)


def test_event_vectors_equal_the_scorers(world):
    encoded = world.store.encoded(world.store.shards("customer")[0])
    specs, model = world.run.tokenizer.field_specs(), world.run.model
    rows, positions = np.array([0, 0, 1, 2]), np.array([0, 5, 3, 1])
    found = _encoder(world).event_vectors(encoded, rows, positions).numpy()
    lengths = encoded["length"].to_numpy()
    for j, (r, p) in enumerate(zip(rows, positions)):
        # the scorer's event_batch reads a fresh one-row table (list offsets from 0), as tokenizer.encode makes
        one_row = gather_windows(encoded, np.array([r]), np.array([0]), lengths[[r]])
        expected = event_vectors(model, event_batch(one_row, specs, int(p)), specs)[0, 0].numpy()
        np.testing.assert_allclose(found[j], expected, atol=1e-6)


def test_outcome_fields_do_not_reach_the_event_vector(world):
    encoded = world.store.encoded(world.store.shards("customer")[0])
    window = gather_windows(encoded, np.array([0]), np.array([4]), np.array([1]))
    flipped_values = pc.add(pc.list_flatten(window["event_type"]).combine_chunks(), 1)  # another event type
    flipped = window.set_column(window.schema.get_field_index("event_type"), "event_type",
                                pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()), flipped_values))
    encoder = _encoder(world)
    np.testing.assert_array_equal(encoder.event_vectors(window, [0], [0]).numpy(),
                                  encoder.event_vectors(flipped, [0], [0]).numpy())


def _brute_force(offsets, times, ids, q_rows, q_times, q_ids, inclusive):
    out = []
    for r, t, i in zip(q_rows, q_times, q_ids):
        if r < 0:
            out.append(-1)
            continue
        a, b = offsets[r], offsets[r + 1]
        if inclusive:
            count = sum(1 for k in range(a, b) if times[k] <= t)
        else:
            count = sum(1 for k in range(a, b) if (times[k], ids[k]) < (t, i))
        out.append(count - 1)
    return np.array(out)


@pytest.mark.parametrize("inclusive", [False, True])
def test_as_of_index_matches_brute_force(inclusive):
    rng = np.random.default_rng(1)
    lengths = np.array([5, 0, 12, 1, 30])
    offsets = np.r_[0, np.cumsum(lengths)]
    times, ids = [], []
    for n in lengths:  # many same-millisecond events: ties are broken by the event id (string order)
        pairs = sorted(zip(rng.integers(0, 20, n).tolist(), [f"e{v}" for v in rng.integers(0, 200, n)]))
        times += [p[0] for p in pairs]
        ids += [p[1] for p in pairs]
    q_rows = rng.integers(-1, len(lengths), 200)
    q_times = rng.integers(-2, 23, 200)
    q_ids = [f"e{v}" for v in rng.integers(0, 200, 200)]
    found = as_of_index(offsets, np.array(times), q_rows, q_times, pa.array(ids), pa.array(q_ids), inclusive)
    np.testing.assert_array_equal(found, _brute_force(offsets, times, ids, q_rows, q_times, q_ids, inclusive))


def _ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def _keys(canonical: pa.Table, before_ms: int) -> pa.Table:
    t = canonical["event_time"].cast(pa.int64())
    attempts = pc.is_in(canonical["event_type"], value_set=pa.array(["charge", "decline"]))
    keep = pc.and_(pc.and_(attempts, pc.less(t, before_ms)), pc.greater_equal(t, _ms("2024-02-01")))
    return canonical.filter(keep).select(["event_id", "event_time", "customer_id", "merchant_id", "issuer_id",
                                          "is_fraud"])


def test_future_events_and_late_disputes_never_change_earlier_features_or_scores(world, tmp_path):
    cutoff = _ms("2024-05-25")
    base = raw_events()  # the world's own events (same seed)
    future = raw_events(n=400, seed=5, start_ms=cutoff, first_id=50_000)
    charges = base.filter(pc.and_(pc.equal(base["event_type"], "charge"),
                                  pc.less(base["ts"].cast(pa.int64()), cutoff))).slice(0, 12)
    late = charges.set_column(0, "event_id", pa.array(np.arange(90_000, 90_000 + charges.num_rows)))
    late = late.set_column(1, "ts", pa.array(cutoff + 3_600_000 * np.arange(1, charges.num_rows + 1))
                           .cast(pa.timestamp("ms")))
    for name, values in (("event_type", pa.array(["dispute"] * charges.num_rows)),
                         ("disputed_event_id", charges["event_id"]),
                         ("is_fraud", pa.nulls(charges.num_rows, pa.float64())),
                         ("approved", pa.nulls(charges.num_rows, pa.float64()))):
        late = late.set_column(late.schema.get_field_index(name), name, values)
    extended = pa.concat_tables([base, future, late])

    run = world.run
    data = run.data_config().data
    data.source.path = str(write_events(tmp_path / "events", extended))
    schema2, store2, _ = run.store(run.data_config(data, {"data_dir": str(tmp_path / "data")}))
    encoder = _encoder(world, batch_tokens=256)
    # the event surprise columns too (they end the features)
    encoder.surprise = EventSurprise.load(world.run.hf_dir, world.run.model.config, world.run.tokenizer.field_specs())
    canonical = validate(base, world.schema, on_error="raise").table
    keys = _keys(canonical, cutoff)
    assert keys.num_rows > 100
    before = example_states(PointInTimeStates(world.store, encoder), keys, ENTITIES)
    after = example_states(PointInTimeStates(store2, encoder), keys, ENTITIES)
    assert before.surprise is not None and before.surprise.any()
    np.testing.assert_allclose(after.surprise, before.surprise, atol=2e-5)
    for entities in (["customer", "merchant"], ["customer", "issuer"]):
        np.testing.assert_allclose(after.features(entities), before.features(entities), atol=2e-5)
    for entity in ENTITIES:
        np.testing.assert_array_equal(after.states[entity].index, before.states[entity].index)
    labels = np.nan_to_num(keys["is_fraud"].to_numpy(zero_copy_only=False)).astype(int)
    head = ProbeHead(max_epochs=3).fit(before.features(["customer", "merchant"]), labels,
                                       before.features(["customer", "merchant"]), labels)
    np.testing.assert_allclose(head.predict_proba(after.features(["customer", "merchant"])),
                               head.predict_proba(before.features(["customer", "merchant"])), atol=1e-6)

    # The comparison is sensitive: as of a time after the cutoff, the new events do change the states.
    ids = keys["customer_id"].unique()
    late_time = np.full(len(ids), _ms("2024-06-30"))
    old = PointInTimeStates(world.store, encoder).as_of("customer", ids, late_time)
    new = PointInTimeStates(store2, encoder).as_of("customer", ids, late_time)
    assert np.any(new.index > old.index)
    assert not np.allclose(new.hidden, old.hidden, atol=1e-3)


def test_as_of_an_aggregate_counts_closed_buckets_only(world):
    """An issuer state as of t uses buckets whose end <= t: a bucket still open at t is never used."""
    keys = world.store.keys(world.store.shards("issuer")[0])
    ends = keys["event_time"].combine_chunks().values.cast(pa.int64()).to_numpy()
    first_end = int(ends[0])
    encoder = _encoder(world)
    ids = pa.array([keys["entity_id"][0].as_py()] * 3)
    found = PointInTimeStates(world.store, encoder).as_of("issuer", ids, np.array([first_end - 1, first_end,
                                                                                    first_end + 1]))
    np.testing.assert_array_equal(found.index, [-1, 0, 0])
    np.testing.assert_array_equal(found.has_history, [False, True, True])
    assert not found.hidden[0].any()
