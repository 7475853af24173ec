"""Online states == batch states: the scorer on a live store (events ingested out of order) against the
batch path's own sequences, encoded in full and windowed with the same window rule, on a real tiny model."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from foundation.pointintime import event_vectors, window_batch, window_start
from foundation.serving.schemas import EventParser, RequestError
from foundation.serving.scorer import Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, write_events

MAX_POSITION = 8  # windows of 8, stride 4: 30-event histories cross many window blocks


def ingest(schema, raw, path, max_events):
    """A store fed the fixture events as the service would: parsed, out of order, in small batches."""
    store = SqliteStateStore(path, max_events=max_events, buckets={"issuer": schema.entities["issuer"].bucket_ms})
    parser = EventParser(schema)
    rows = [json_event(raw, i) for i in range(raw.num_rows)]
    # Late events: rows shuffled inside blocks of 37 (about 6 hours), sent in batches of 10, so events
    # arrive out of order across requests (raw-event entities tolerate any disorder, see test_state;
    # aggregate entities tolerate lateness within their retained buckets).
    rng = random.Random(0)
    for start in range(0, len(rows), 37):
        block = rows[start : start + 37]
        rng.shuffle(block)
        rows[start : start + 37] = block
    for start in range(0, len(rows), 10):
        store.apply(parser.parse_batch(rows[start : start + 10], 1000))
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scorer")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=240, n_customers=6, n_merchants=3, n_issuers=2)
    schema, seq_dir = build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=MAX_POSITION)
    scorer = Scorer.from_pretrained(tmp / "run")
    store = ingest(schema, raw, tmp / "state.sqlite", scorer.max_events)
    sequences = {t: pq.read_table(seq_dir / t / "part-00000.parquet") for t in ("customer", "merchant", "issuer")}
    yield scorer, store, sequences, raw
    store.close()


def batch_row(sequences, entity_type, entity_id):
    table = sequences[entity_type]
    row = pc.index(table["entity_id"], entity_id).as_py()
    return table.slice(row, 1)


@torch.inference_mode()
def batch_state(scorer, row, index):
    """The batch path: encode the entity's full sequence, run the window of event `index`."""
    encoded = scorer.tokenizer.encode(row)
    start = window_start(index, MAX_POSITION)
    batch = window_batch(encoded, scorer.field_specs, start, index - start + 1)
    return scorer.model(batch).entity_embedding[0].numpy()


def test_latest_states_match_batch(world):
    scorer, store, sequences, _ = world
    for entity_type in ("customer", "merchant", "issuer"):
        for entity_id in sequences[entity_type]["entity_id"].to_pylist():
            row = batch_row(sequences, entity_type, entity_id)
            n = row["length"][0].as_py()
            assert n > scorer.max_events  # evictions happened: the state holds only the tail
            state = scorer.entity_states([(entity_type, entity_id)], store)[0]
            assert state.has_history and state.index == n - 1
            np.testing.assert_allclose(state.hidden, batch_state(scorer, row, n - 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("slack", [0, MAX_POSITION])
def test_point_in_time_states_match_batch(world, tmp_path, slack):
    """Scoring event k of a customer: the state after event k - 1. With max_events = max_position + 1 + m
    every cut-off at most m events back is exact; older ones (or unlucky block positions without slack)
    are refused with 409, never approximated."""
    scorer, store, sequences, raw = world
    if slack:
        store = ingest(scorer.schema, raw, tmp_path / "slack.sqlite", scorer.max_events + slack)
    customer = sequences["customer"]["entity_id"][0].as_py()
    row = batch_row(sequences, "customer", customer)
    n = row["length"][0].as_py()
    times = row["event_time"][0].values.cast(pa.int64()).to_pylist()
    ids = row["event_id"][0].values.to_pylist()
    exact, refused = [], []
    for k in range(n - scorer.max_events - slack, n):
        try:
            state = scorer.entity_states([("customer", customer)], store, times[k], ids[k])[0]
        except RequestError as err:
            assert err.status == 409, err.message
            refused.append(k)
            continue
        exact.append(k)
        assert state.index == k - 1 and state.last_time == times[k - 1]
        np.testing.assert_allclose(state.hidden, batch_state(scorer, row, k - 1), rtol=1e-5, atol=1e-5)
    # Exact iff the window of event k - 1 and the predecessor of its first event are retained.
    first_retained = n - scorer.max_events - slack
    needed = {k: max(window_start(k - 1, MAX_POSITION) - 1, 0) for k in range(first_retained, n)}
    assert refused == [k for k, lo in needed.items() if lo < first_retained or k - 1 < first_retained]
    if slack:
        assert exact[-slack:] == list(range(n - slack, n))  # m <= slack newer events: always exact
    else:
        assert refused  # with the bare bound a cut-off before a newer event depends on the block position
    with pytest.raises(RequestError) as err:  # long before the retained tail
        scorer.entity_states([("customer", customer)], store, times[2], ids[2])
    assert err.value.status == 409


def test_aggregate_state_is_the_last_closed_bucket(world):
    scorer, store, sequences, _ = world
    issuer = sequences["issuer"]["entity_id"][0].as_py()
    row = batch_row(sequences, "issuer", issuer)
    n = row["length"][0].as_py()
    ends = row["event_time"][0].values.cast(pa.int64()).to_pylist()
    for j in (n - 2, n - 3):
        # Any time inside [end_j, end_{j+1}) sees exactly buckets 0..j.
        for t in (ends[j], ends[j + 1] - 1):
            state = scorer.entity_states([("issuer", issuer)], store, t, "x")[0]
            assert state.index == j and state.last_time == ends[j]
            np.testing.assert_allclose(state.hidden, batch_state(scorer, row, j), rtol=1e-5, atol=1e-5)


def test_event_vector_matches_the_batch_encoding(world):
    scorer, store, sequences, raw = world
    customer = sequences["customer"]["entity_id"][1].as_py()
    row = batch_row(sequences, "customer", customer)
    n = row["length"][0].as_py()
    encoded = scorer.tokenizer.encode(row)
    batch = window_batch(encoded, scorer.field_specs, n - 1, 1)
    expected = event_vectors(scorer.model, batch, scorer.field_specs)[0, 0].numpy()
    last_id = row["event_id"][0].values[n - 1].as_py()
    previous = row["event_time"][0].values.cast(pa.int64())[n - 2].as_py()
    raw_row = pc.index(raw["event_id"].cast(pa.string()), last_id).as_py()
    attempt = EventParser(scorer.schema).parse_attempt(json_event(raw, raw_row), commit=False)
    np.testing.assert_allclose(scorer.event_vector(attempt.record, previous), expected, rtol=1e-5, atol=1e-5)
    # Outcome fields are removed: changing them changes nothing.
    altered = dict(json_event(raw, raw_row), event_type="refund", decline_code="59")
    other = EventParser(scorer.schema).parse_attempt(altered, commit=False)
    np.testing.assert_array_equal(scorer.event_vector(other.record, previous), scorer.event_vector(attempt.record, previous))


def test_attempt_batch_equals_the_sequence_table_encoding(world):
    """The attempts' batch built from flat columns (EventTokenizer.encode_flat) holds exactly the tensors of
    one-row sequence tables through `encode` and `event_batch`: every key, dtype and value."""
    scorer, store, sequences, raw = world
    parser = EventParser(scorer.schema)
    records = [parser.parse_attempt(json_event(raw, i), commit=False).record for i in range(0, 60, 3)]
    records[1].payload["descriptor"] = None  # a null text field and a null category
    records[2].payload["mcc"] = None
    previous = [None if k % 4 == 0 else r.event_time - 1000 * (k * 997 % 90_000) for k, r in enumerate(records)]
    engine = scorer.engine
    batch = engine._events_batch(records, previous)
    for r, (record, time) in enumerate(zip(records, previous)):
        alone = engine._event_batch(record, time)
        assert list(batch) == list(alone)
        for key, expected in alone.items():
            got = batch[key][r:r + 1]
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
            torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True, msg=key)


def test_cache_hits_and_invalidation(world):
    scorer, store, sequences, raw = world
    customer = sequences["customer"]["entity_id"][2].as_py()
    ref = [("customer", customer)]
    first = scorer.entity_states(ref, store)[0]
    hits = scorer.cache_hits
    again = scorer.entity_states(ref, store)[0]
    assert scorer.cache_hits == hits + 1 and again is first
    # A new event for the customer: the next lookup recomputes and the state moves on.
    event = dict(json_event(raw, raw.num_rows - 1), event_id=10**9, card_id=int(customer), ts="2030-01-01T00:00:00")
    store.apply(EventParser(scorer.schema).parse_batch([event], 10))
    misses = scorer.cache_misses
    after = scorer.entity_states(ref, store)[0]
    assert scorer.cache_misses == misses + 1 and after.index == first.index + 1
    assert not np.allclose(after.hidden, first.hidden)


def test_unknown_entity_has_an_empty_history(world):
    scorer, store, _, _ = world
    state = scorer.entity_states([("merchant", "never-seen")], store, 1_800_000_000_000, "x")[0]
    assert not state.has_history and state.index == -1 and not state.hidden.any()


def test_window_starting_before_the_retained_tail_is_refused(world, tmp_path):
    """A cut-off whose window starts at the entity's first event, which has been evicted: 409, not a
    window over the wrong events."""
    scorer, _, _, raw = world
    customer = raw["card_id"][0].as_py()
    rows = [i for i, c in enumerate(raw["card_id"].to_pylist()) if c == customer][: scorer.max_events + 3]
    store = ingest(scorer.schema, raw.take(rows), tmp_path / "short.sqlite", scorer.max_events)
    times = raw["ts"].cast(pa.int64()).to_pylist()
    ids = [str(i) for i in raw["event_id"].to_pylist()]
    # Events 0..2 are evicted; the state before event 5 needs the window [0, 4]: not reproducible.
    with pytest.raises(RequestError) as err:
        scorer.entity_states([("customer", str(customer))], store, times[rows[5]], ids[rows[5]])
    assert err.value.status == 409
    state = scorer.entity_states([("customer", str(customer))], store)[0]  # the newest state still works
    assert state.index == len(rows) - 1
