"""Incremental live states == the window pass == the batch path, for the GRU and the transformer (with and
without learned index positions), after any sequence of ingests interleaved with scores: late events,
duplicates, block boundaries, a restart that rebuilds the states from the durable log."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from foundation.pointintime import window_batch, window_start
from foundation.serving.incremental import carry_nbytes
from foundation.serving.schemas import EventParser
from foundation.serving.scorer import Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, write_events

MAX_POSITION = 8  # windows of 8, stride 4: histories of ~40 events cross many block boundaries
ENCODERS = {"gru": {"encoder_type": "gru"}, "transformer": {"encoder_type": "transformer"},
            "transformer-index": {"encoder_type": "transformer", "index_position": True},
            "mingru": {"encoder_type": "mingru"}}


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def world(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"incremental-{request.param}")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=240, n_customers=6, n_merchants=3, n_issuers=2)
    schema, seq_dir = build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=MAX_POSITION,
                                       **ENCODERS[request.param])
    sequences = {t: pq.read_table(seq_dir / t / "part-00000.parquet") for t in ("customer", "merchant")}
    return tmp, raw, schema, sequences


def open_store(schema, path, max_events):
    return SqliteStateStore(path, max_events=max_events, buckets={"issuer": schema.entities["issuer"].bucket_ms})


def filled_store(schema, raw, path, max_events):
    """A state store holding every fixture event (ingested as shuffled batches)."""
    store = open_store(schema, path, max_events)
    for batch in shuffled_batches(raw, schema):
        store.apply(batch)
    return store


def shuffled_batches(raw, schema, seed=0):
    """The fixture events as parsed batches of 5, shuffled inside blocks of 23 (late events across batches)."""
    rows = [json_event(raw, i) for i in range(raw.num_rows)]
    rng = random.Random(seed)
    for start in range(0, len(rows), 23):
        block = rows[start:start + 23]
        rng.shuffle(block)
        rows[start:start + 23] = block
    parser = EventParser(schema)
    return [parser.parse_batch(rows[s:s + 5], 1000) for s in range(0, len(rows), 5)]


def touched(batch):
    return list(dict.fromkeys(ref for record in batch for ref in record.entities if ref[0] != "issuer"))


def assert_same(live, reference):
    for a, b in zip(live, reference):
        assert (a.index, a.last_time, a.has_history) == (b.index, b.last_time, b.has_history)
        np.testing.assert_allclose(a.hidden, b.hidden, rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def batch_state(scorer, sequences, entity_type, entity_id, index):
    """The batch path: the entity's full sequence encoded, the window of event `index`."""
    table = sequences[entity_type]
    row = table.slice(pc.index(table["entity_id"], entity_id).as_py(), 1)
    encoded = scorer.tokenizer.encode(row)
    start = window_start(index, MAX_POSITION)
    batch = window_batch(encoded, scorer.field_specs, start, index - start + 1)
    return scorer.model(batch).entity_embedding[0].numpy(), row["length"][0].as_py()


def test_interleaved_ingests_and_scores_match_the_window_pass(world):
    tmp, raw, schema, sequences = world
    live = Scorer.from_pretrained(tmp / "run")
    reference = Scorer.from_pretrained(tmp / "run", incremental=False)
    assert live.engine.live is not None and reference.engine.live is None
    store = open_store(schema, tmp / "interleaved.sqlite", live.max_events)
    batches = shuffled_batches(raw, schema)
    newest = 0
    for n, batch in enumerate(batches):
        store.apply(batch)
        newest = max([newest] + [r.event_time for r in batch])
        if n % 4 == 3:
            store.apply(batches[n - 2])  # duplicates: acknowledged, change nothing
        refs = touched(batch)
        assert_same(live.entity_states(refs, store), reference.entity_states(refs, store))
        # a score: states as of an attempt after every applied event (the live state serves it)
        assert_same(live.entity_states(refs, store, newest + 1, "attempt"),
                    reference.entity_states(refs, store, newest + 1, "attempt"))
    states = live.engine.live
    assert states.steps > 0 and states.prefills > 0  # both paths were taken
    for entity_type in ("customer", "merchant"):
        for entity_id in sequences[entity_type]["entity_id"].to_pylist():
            state = live.entity_states([(entity_type, entity_id)], store)[0]
            expected, n = batch_state(live, sequences, entity_type, entity_id, state.index)
            assert state.index == n - 1
            np.testing.assert_allclose(state.hidden, expected, rtol=1e-5, atol=1e-5)
    store.close()


def test_a_late_event_recomputes_from_the_durable_log(world):
    tmp, raw, schema, sequences = world
    scorer = Scorer.from_pretrained(tmp / "run")
    store = open_store(schema, tmp / "late.sqlite", scorer.max_events)
    batches = shuffled_batches(raw, schema)
    customer = batches[0][0].payload["customer_id"]
    mine = [r for b in batches for r in b if r.payload["customer_id"] == customer]
    ordered = sorted(mine, key=lambda r: r.sort_key())
    late = ordered[-3]  # held back, then arrives after two newer events
    for record in ordered:
        if record is not late:
            store.apply([record])
            scorer.entity_states([("customer", customer)], store)
    prefills = scorer.engine.live.prefills
    # in order, only a block boundary (every MAX_POSITION // 2 events) costs a window pass
    assert scorer.engine.live.steps >= 2 * prefills
    store.apply([late])
    state = scorer.entity_states([("customer", customer)], store)[0]
    assert scorer.engine.live.prefills == prefills + 1  # not a step on top of the newest event
    reference = Scorer.from_pretrained(tmp / "run", incremental=False)
    assert_same([state], reference.entity_states([("customer", customer)], store))
    assert state.index == len(ordered) - 1
    store.close()


def test_a_restart_rebuilds_the_live_states_from_the_durable_log(world):
    tmp, raw, schema, sequences = world
    path = tmp / "restart.sqlite"
    first = Scorer.from_pretrained(tmp / "run")
    store = open_store(schema, path, first.max_events)
    batches = shuffled_batches(raw, schema, seed=1)
    for batch in batches[:-1]:
        store.apply(batch)
        first.entity_states(touched(batch), store)
    refs = [(t, i) for t in ("customer", "merchant") for i in sequences[t]["entity_id"].to_pylist()]
    before = first.entity_states(refs, store)
    store.close()
    # a new process: nothing in memory, the store file is the durable log
    store = open_store(schema, path, first.max_events)
    second = Scorer.from_pretrained(tmp / "run")
    assert len(second.engine.live) == 0
    encoder, passes = second.engine.live.encoder, []
    prefill_many = encoder.prefill_many
    encoder.prefill_many = lambda batch: passes.append(len(batch["lengths"])) or prefill_many(batch)
    assert_same(second.entity_states(refs, store), before)
    assert second.engine.live.prefills == len(refs) and second.engine.live.steps == 0
    assert passes == [len(refs)]  # every entity's window in one padded pass
    # and it advances from the rebuilt states as the first process would have
    store.apply(batches[-1])
    assert_same(second.entity_states(refs, store), Scorer.from_pretrained(tmp / "run", incremental=False)
                .entity_states(refs, store))
    store.close()


def test_state_size_per_entity(world):
    tmp, raw, schema, sequences = world
    scorer = Scorer.from_pretrained(tmp / "run")
    store = filled_store(schema, raw, tmp / "size.sqlite", scorer.max_events)
    customer = sequences["customer"]["entity_id"][0].as_py()
    state = scorer.entity_states([("customer", customer)], store)[0]
    carry = scorer.engine.live.get(("customer", customer)).carry
    config = scorer.model.config
    window = state.index - window_start(state.index, MAX_POSITION) + 1
    per_event = 2 * config.num_layers * config.hidden_size * 4 + 8  # keys + values (float32) + the event time
    expected = {"gru": config.num_layers * config.hidden_size * 4, "transformer": window * per_event}
    if config.encoder_type == "mingru":  # its own fixed-size state: (1, layers, state size)
        expected["mingru"] = config.num_layers * scorer.model.encoder.blocks[0].recurrence.gate_bias.shape[0] * 4
    assert carry_nbytes(carry) == expected[config.encoder_type]
    store.close()


def test_many_entities_advance_in_one_pass_from_the_store_tails(world):
    """One entity_states call over every entity, several new events each: the cached states advance together
    (one tokenizer call, one batched recurrent pass), reading only the events after each cached key."""
    tmp, raw, schema, sequences = world
    scorer = Scorer.from_pretrained(tmp / "run")
    reference = Scorer.from_pretrained(tmp / "run", incremental=False)
    store = open_store(schema, tmp / "tails.sqlite", scorer.max_events)
    records = sorted((r for b in shuffled_batches(raw, schema) for r in b), key=lambda r: r.sort_key())
    refs = [(t, i) for t in ("customer", "merchant") for i in sequences[t]["entity_id"].to_pylist()]
    store.apply(records[:150])
    scorer.entity_states(refs, store)  # every entity gets a live state
    reads = {"tails": 0, "histories": 0}
    for name in reads:
        method = getattr(store, name)

        def counted(*args, _method=method, _name=name, **kwargs):
            reads[_name] += len(args[0])
            return _method(*args, **kwargs)

        setattr(store, name, counted)
    steps, prefills = scorer.engine.live.steps, scorer.engine.live.prefills
    store.apply(records[150:162])  # in order: a few new events for most entities
    live = scorer.entity_states(refs, store)
    stepped = scorer.engine.live.steps - steps
    window_passes = scorer.engine.live.prefills - prefills
    assert stepped > len(refs) // 2 and stepped + window_passes <= 2 * 12  # each event joins two entities
    assert reads["tails"] == len(refs)  # every entity read its tail ...
    assert reads["histories"] == window_passes  # ... only window passes read the full history
    assert_same(live, reference.entity_states(refs, store))
    store.close()


def test_the_live_states_stay_within_their_memory_bound(world):
    """Beyond `live_bytes` the least recently used states go; an evicted entity is rebuilt by a window pass."""
    tmp, raw, schema, sequences = world
    probe = Scorer.from_pretrained(tmp / "run")
    store = filled_store(schema, raw, tmp / "bound.sqlite", probe.max_events)
    refs = [(t, i) for t in ("customer", "merchant") for i in sequences[t]["entity_id"].to_pylist()]
    probe.entity_states(refs, store)
    sizes = [carry_nbytes(probe.engine.live.get(ref).carry) for ref in refs]
    bound = 3 * max(sizes)
    scorer = Scorer.from_pretrained(tmp / "run", live_bytes=bound)
    reference = Scorer.from_pretrained(tmp / "run", incremental=False)
    for _ in range(2):  # the second round finds most entities evicted
        assert_same(scorer.entity_states(refs, store), reference.entity_states(refs, store))
        live = scorer.engine.live
        assert live.nbytes <= bound and 1 <= len(live) < len(refs)
        assert live.nbytes == sum(carry_nbytes(live.get(ref).carry) for ref in refs if live.get(ref) is not None)
        scorer.invalidate(refs)
    store.close()
