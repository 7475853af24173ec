"""Online == batch for task scores: real heads (mlp, gbdt on section-8 + surprise + raw fields, full with its own
encoder) fitted on the batch path's features (foundation.embeddings + foundation.heads.features), served by
the scorer from a live store, on a real tiny model."""

from __future__ import annotations

import copy
import time

import numpy as np
import pyarrow as pa
import pytest
import torch
from fastapi.testclient import TestClient

from foundation.data.events import read_events
from foundation.data.validate import validate
from foundation.evaluation.splits import TaskSpec
from foundation.heads.full import FullHead
from foundation.heads.gbdt import GBDTHead
from foundation.heads.mlp import MLPHead
from foundation.pointintime import (
    EventSurprise,
    FeatureLayout,
    PointInTimeEncoder,
    PointInTimeStates,
    SequenceStore,
    example_keys,
    example_states,
    raw_field_features,
)
from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.schemas import EventParser
from foundation.serving.scorer import CONF_DIR, Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, write_events

pytestmark = pytest.mark.slow  # fits three heads and computes batch states: ~15 s on 2 busy cores

ENTITIES = ["customer", "merchant", "issuer"]
FRAUD, AUTH = ["customer", "merchant"], ["customer", "issuer"]


def batch_features(model, tokenizer, seq_dir, keys, surprise=None):
    encoder = PointInTimeEncoder(model, tokenizer.field_specs(), progress=False, surprise=surprise)
    return example_states(PointInTimeStates(SequenceStore(seq_dir, tokenizer), encoder), keys, ENTITIES)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scores")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=240, n_customers=6, n_merchants=3, n_issuers=2)
    schema, seq_dir = build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=8)
    scorer = Scorer.from_pretrained(tmp / "run")
    events = validate(read_events(schema), schema, on_error="raise").table
    # Examples: the charge attempts of the second half, as a fine-tune would select them.
    kinds = events["event_type"].to_pylist()
    rows = np.array([i for i in range(120, events.num_rows) if kinds[i] in ("charge", "decline")])
    keys = example_keys(events, pa.table({"row": rows}), ENTITIES)
    surprise = EventSurprise.load(tmp / "run" / "hf", scorer.model.config, scorer.field_specs)
    frozen = batch_features(scorer.model, scorer.tokenizer, seq_dir, keys, surprise)
    assert frozen.surprise.shape == (len(rows), len(surprise.names)) and frozen.surprise.any()
    amounts = events["amount"].to_numpy()[rows]
    y = (amounts > np.median(amounts)).astype(np.float64)  # any 0/1 target: the heads just need fitting
    half = len(rows) // 2
    heads = tmp / "finetune" / "heads"

    x_fraud = frozen.features(FRAUD)
    layout = FeatureLayout(tuple(FRAUD), scorer.model.config.hidden_size, tuple(surprise.names))
    mlp = MLPHead(hidden_sizes=(16,), max_epochs=3).fit(x_fraud[:half], y[:half], x_fraud[half:], y[half:])
    mlp.save(heads / "fraud" / "mlp", task="fraud", entity_types=FRAUD, feature_layout=layout.to_dict())

    velocity = TaskSpec.from_config(CONF_DIR / "task" / "authorization.yaml").velocity
    raw_fields = raw_field_features(events, schema, velocity)
    x_auth = np.hstack([frozen.features(AUTH), raw_fields.values[rows]])
    gbdt = GBDTHead({"num_threads": 1, "min_data_in_leaf": 3}, num_boost_round=20, early_stopping_rounds=5)
    gbdt.fit(x_auth[:half], y[:half], x_auth[half:], y[half:], categorical_features=raw_fields.categorical,
             feature_names=FeatureLayout(tuple(AUTH), 32, tuple(surprise.names)).names() + raw_fields.names)
    gbdt.save(heads / "authorization" / "gbdt", task="authorization", entity_types=AUTH,
              feature_layout={**FeatureLayout(tuple(AUTH), 32, tuple(surprise.names)).to_dict(), "kind": "section8+raw",
                              "raw": raw_fields.layout()})

    # A full head carries its own encoder: perturb a copy so its states differ from the pretrained ones.
    tuned = copy.deepcopy(scorer.model)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    full = FullHead(tuned, scorer.field_specs, FRAUD, hidden_sizes=(16,))
    full.save(tmp / "finetune-full" / "heads" / "fraud" / "full", tokenizer=scorer.tokenizer, task="fraud")
    tuned_features = batch_features(full.encoder, scorer.tokenizer, seq_dir, keys).features(FRAUD)

    expected = {"mlp": mlp.predict_proba(x_fraud), "gbdt": gbdt.predict_proba(x_auth),
                "full": full.predict_proba(tuned_features)}
    store = SqliteStateStore(tmp / "state.sqlite", max_events=400, buckets={"issuer": 3_600_000})
    parser = EventParser(schema)
    store.apply(parser.parse_batch([json_event(raw, i) for i in range(raw.num_rows)], 1000))
    yield tmp, raw, rows, expected, store
    store.close()


def attempt(raw, row):
    """The raw event as a charge attempt: its outcome fields are not known yet."""
    return {k: v for k, v in json_event(raw, int(row)).items() if k not in ("event_type", "decline_code")}


def test_online_scores_equal_batch_scores(world):
    tmp, raw, rows, expected, store = world
    scorer = Scorer.from_pretrained(tmp / "run", heads={
        "fraud": {"run": str(tmp / "finetune"), "head": "mlp", "output": "fraud_probability"},
        "authorization": {"run": str(tmp / "finetune"), "output": "approval_probability"}})
    parser = EventParser(scorer.schema)
    for k in range(0, len(rows), 2):  # every other example: each is a different cut-off, i.e. a cache miss
        result = scorer.score(parser.parse_attempt(attempt(raw, rows[k]), commit=False), store)
        assert result["fraud_probability"] == pytest.approx(expected["mlp"][k], rel=1e-4, abs=1e-6)
        assert result["approval_probability"] == pytest.approx(expected["gbdt"][k], rel=1e-4, abs=1e-6)


def test_full_head_uses_its_own_encoder(world):
    tmp, raw, rows, expected, store = world
    scorer = Scorer.from_pretrained(tmp / "run", heads={"fraud": {"run": str(tmp / "finetune-full")}})
    assert set(scorer.engines) == {"pretrained", "fraud/full"}
    parser = EventParser(scorer.schema)
    for k, row in enumerate(rows[:10]):
        result = scorer.score(parser.parse_attempt(attempt(raw, row), commit=False), store)
        assert result["fraud_probability"] == pytest.approx(expected["full"][k], rel=1e-4, abs=1e-6)


def test_score_endpoint(world):
    tmp, raw, rows, expected, store = world
    scorer = Scorer.from_pretrained(tmp / "run", finetune_run=tmp / "finetune", heads={
        "fraud": {"head": "mlp", "output": "fraud_probability"}, "authorization": {"output": "approval_probability"}})
    app = create_app(EventParser(scorer.schema), store, scorer, ServiceSettings(warm_on_ingest=False))
    client = TestClient(app)  # no lifespan: the module's store stays open
    before = store.stats().n_events_applied
    body = client.post("/v1/score", json=attempt(raw, rows[0])).json()
    assert body["fraud_probability"] == pytest.approx(expected["mlp"][0], rel=1e-4, abs=1e-6)
    assert body["committed"] is False and body["event_id"] == str(raw["event_id"][int(rows[0])])
    assert body["model_version"] == scorer.model_version and "+finetune" in body["model_version"]
    assert set(body["has_history"]) == set(ENTITIES) and set(body["thresholds"]) == {
        "fraud_probability", "approval_probability"}
    # commit=true applies the attempt after scoring it (here a new event, an hour after the last one).
    new = dict(json_event(raw, raw.num_rows - 1), event_id=99_999, ts="2024-06-01T00:00:00")
    committed = client.post("/v1/score", params={"commit": "true"}, json=new).json()
    assert committed["committed"] is True and store.stats().n_events_applied == before + 1
    again = client.post("/v1/score", params={"commit": "true"}, json=new).json()
    assert again["committed"] is False  # idempotent: already applied
    outcome_missing = client.post("/v1/score", params={"commit": "true"},
                                  json={k: v for k, v in new.items() if k != "event_type"})
    assert outcome_missing.status_code == 422


def served_scorer(tmp):
    return Scorer.from_pretrained(tmp / "run", finetune_run=tmp / "finetune", heads={
        "fraud": {"head": "mlp", "output": "fraud_probability"}, "authorization": {"output": "approval_probability"}})


def test_score_many_equals_one_by_one(world):
    """One forward pass for N attempts (mlp + gbdt with surprise and raw fields) == N single scores."""
    tmp, raw, rows, expected, store = world
    scorer = served_scorer(tmp)
    parser = EventParser(scorer.schema)
    attempts = [parser.parse_attempt(attempt(raw, row), commit=False) for row in rows[:24]]
    calls = []
    versions = store.versions
    store.versions = lambda refs: calls.append(len(refs)) or versions(refs)
    try:
        batched = scorer.score_many(attempts, store)
    finally:
        del store.versions
    assert len(calls) == 1  # one read of the store versions for the whole micro-batch
    for k, (one, result) in enumerate(zip(attempts, batched)):
        single = scorer.score(one, store)
        assert result.keys() == single.keys() and result["has_history"] == single["has_history"]
        for key in ("fraud_probability", "approval_probability"):
            assert result[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7)
        assert result["fraud_probability"] == pytest.approx(expected["mlp"][k], rel=1e-4, abs=1e-6)


def test_surprise_heads_run_once_per_state(world):
    """A second attempt after the same cached state reuses the state's next-event log-probabilities: same score."""
    tmp, raw, rows, expected, store = world
    scorer = served_scorer(tmp)
    parser = EventParser(scorer.schema)
    attempts = [parser.parse_attempt(attempt(raw, row), commit=False) for row in rows[:4]]
    first = [scorer.score(a, store) for a in attempts]
    calls = []
    log_probs = scorer.engine.surprise.log_probs
    scorer.engine.surprise.log_probs = lambda hidden: calls.append(len(hidden)) or log_probs(hidden)
    again = [scorer.score(a, store) for a in attempts]
    assert calls == []  # every state's log-probabilities were kept
    assert again == first
    scorer.engine._surprise_cache.clear()
    assert [scorer.score(a, store) for a in attempts] == first and calls


def test_concurrent_requests_are_micro_batched(world):
    """N concurrent /v1/score requests: the same scores as N sequential ones, in fewer forward passes."""
    from concurrent.futures import ThreadPoolExecutor

    tmp, raw, rows, expected, store = world
    scorer = served_scorer(tmp)
    app = create_app(EventParser(scorer.schema), store, scorer, ServiceSettings(warm_on_ingest=False,
                                                                                batch_max_size=64))
    batcher, n = app.state.batcher, 12
    score_many = scorer.score_many

    def first_waits(attempts, *args, **kwargs):
        if batcher.batches == 1:  # hold the first pass until the other requests are queued behind it
            deadline = time.monotonic() + 20
            while batcher.items + batcher._queue.qsize() < n and time.monotonic() < deadline:
                time.sleep(0.002)
        return score_many(attempts, *args, **kwargs)

    scorer.score_many = first_waits
    client = TestClient(app)  # no lifespan: the module's store stays open
    bodies = [attempt(raw, row) for row in rows[:n]]
    with ThreadPoolExecutor(n) as pool:
        concurrent = list(pool.map(lambda body: client.post("/v1/score", json=body).json(), bodies))
    assert batcher.items == n and batcher.batches < n and batcher.largest > 1
    sequential = [client.post("/v1/score", json=body).json() for body in bodies]
    for k, (a, b) in enumerate(zip(concurrent, sequential)):
        assert a["event_id"] == b["event_id"] == str(raw["event_id"][int(rows[k])])
        for key in ("fraud_probability", "approval_probability"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7)
    metrics = client.get("/metrics").text
    assert f"foundation_score_batch_size_count {float(batcher.batches)}" in metrics
    assert f"foundation_score_batch_size_sum {float(2 * n)}" in metrics
    # the stage profile covers every scored request, and each stage took some time
    assert f"foundation_score_profiled_requests_total {float(2 * n)}" in metrics
    seconds, requests = scorer.profile.snapshot()
    assert requests == 2 * n and all(seconds[stage] > 0 for stage in ("features", "model", "head"))
    assert 'foundation_score_stage_seconds_total{stage="model"}' in metrics
    batcher.stop()


def test_load_test_reports_percentiles_and_the_profile(world):
    """The load test's score phase against a real uvicorn server: p99.9 and the stage profile per request."""
    import threading

    import uvicorn

    from foundation.serving.loadtest import measure_scores, profile_table
    from tests.serving.conftest import free_port

    tmp, raw, rows, expected, store = world
    scorer = served_scorer(tmp)
    app = create_app(EventParser(scorer.schema), store, scorer, ServiceSettings(warm_on_ingest=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        report = measure_scores(f"http://127.0.0.1:{port}", [attempt(raw, row) for row in rows[:10]], clients=4,
                                requests=20, max_seconds=60)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.batcher.stop()
    assert report.requests == 20 and report.errors == 0
    assert report.p50_ms <= report.p99_ms <= report.p999_ms
    assert set(report.profile_ms) == {"http", "features", "model", "head"}
    assert sum(report.profile_ms.values()) == pytest.approx(report.mean_ms, rel=1e-6)
    table = profile_table([report]).splitlines()
    assert len(table) == 3 and table[2].startswith("| 4 |") and table[2].endswith("% |")


def test_commit_requests_in_one_batch_see_each_other(world, tmp_path):
    """Two ?commit=true attempts of one customer in one micro-batch: the second is scored after the first was
    applied, as one by one (a pass scoring both before either is applied would not see it)."""
    import threading

    tmp, raw, rows, expected, _ = world
    parser = EventParser(served_scorer(tmp).schema)
    history = [json_event(raw, i) for i in range(raw.num_rows)]
    customer = history[-1]["card_id"]
    new = [dict(history[-1], event_id=500_000 + j, ts=f"2024-06-0{j + 1}T00:00:00") for j in range(2)]

    def fresh_store(name):
        store = SqliteStateStore(tmp_path / name, max_events=400, buckets={"issuer": 3_600_000})
        store.apply(parser.parse_batch(history, 1000))
        return store

    one_by_one, store = served_scorer(tmp), fresh_store("sequential.sqlite")
    sequential = []
    for body in new:
        record = parser.parse_attempt(body, commit=True)
        sequential.append(one_by_one.score(record, store))
        store.apply([record.record])
    alone = one_by_one.score(parser.parse_attempt(new[1], commit=True), fresh_store("alone.sqlite"))
    assert alone["fraud_probability"] != sequential[1]["fraud_probability"]  # the first attempt matters
    scorer, store = served_scorer(tmp), fresh_store("batched.sqlite")
    app = create_app(parser, store, scorer, ServiceSettings(warm_on_ingest=False))
    batcher, entered, release = app.state.batcher, threading.Event(), threading.Event()
    score_many = scorer.score_many

    def held(attempts, *args, **kwargs):
        entered.set()
        release.wait(20)  # the first pass waits until both commits are queued behind it
        return score_many(attempts, *args, **kwargs)

    scorer.score_many = held
    blocker = batcher.submit((attempt(raw, rows[0]), False))  # the batcher's items: (request body, commit)
    assert entered.wait(20)  # the worker is inside the first pass
    futures = [batcher.submit((body, True)) for body in new]
    release.set()
    blocker.result(20)
    results = [f.result(20) for f in futures]
    assert batcher.batches == 2 and batcher.largest == 2  # the two commits shared one batch
    assert [r["committed"] for r in results] == [True, True]
    assert store.history("customer", str(customer)).n_events == sum(
        1 for event in history if event["card_id"] == customer) + 2
    for got, want in zip(results, sequential):
        assert got["fraud_probability"] == pytest.approx(want["fraud_probability"], rel=1e-6, abs=1e-9)
    batcher.stop()
    store.close()


def test_score_fast_path_answers_as_the_framework_route(world):
    """POST /v1/score through the fast path (micro-batching on) and through the FastAPI route (batching off):
    the same scores, the same errors (token, commit flag, JSON, size), and the same HTTP metrics."""
    tmp, raw, rows, expected, store = world
    apps = {size: create_app(EventParser(served_scorer(tmp).schema), store, served_scorer(tmp), ServiceSettings(
        warm_on_ingest=False, batch_max_size=size, api_token="s3cret", max_body_bytes=4096)) for size in (64, 0)}
    fast, plain = (TestClient(apps[size], headers={"Authorization": "Bearer s3cret"}) for size in (64, 0))
    body = attempt(raw, rows[0])
    answers = {name: client.post("/v1/score", json=body).json() for name, client in (("fast", fast), ("plain", plain))}
    assert answers["fast"].keys() == answers["plain"].keys()
    for key in ("fraud_probability", "approval_probability"):
        assert answers["fast"][key] == pytest.approx(answers["plain"][key], rel=1e-5, abs=1e-7)
    assert answers["fast"]["fraud_probability"] == pytest.approx(expected["mlp"][0], rel=1e-4, abs=1e-6)
    cases = [({"params": {"commit": "maybe"}, "json": body}, 422), ({"content": b"{not json"}, 400),
             ({"content": b"[" + b" " * 5000 + b"]"}, 413), ({"json": body, "headers": {"Authorization": "Bearer x"}}, 401)]
    for kwargs, status in cases:
        got = [client.post("/v1/score", **kwargs) for client in (fast, plain)]
        assert [r.status_code for r in got] == [status, status], kwargs
        assert got[0].json() == got[1].json()
        assert got[0].headers.get("www-authenticate") == got[1].headers.get("www-authenticate")
    assert fast.post("/v1/score", params={"commit": "no"}, json=body).json()["committed"] is False
    metrics = fast.get("/metrics").text
    for status in ("200", "401", "422"):
        assert f'foundation_http_requests_total{{handler="/v1/score",method="POST",status="{status}"}}' in metrics
    assert 'foundation_http_request_duration_seconds_count{handler="/v1/score",method="POST"} 6.0' in metrics
    apps[64].state.batcher.stop()
