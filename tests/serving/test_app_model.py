"""The app with a real tiny model: embeddings over HTTP equal the scorer's states, as_of, unknown
entities, 409 for unreproducible cut-offs, background warm-up after ingestion, cache metrics."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.schemas import EventParser
from foundation.serving.scorer import Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, write_events


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app-model")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=120, n_customers=4, n_merchants=2, n_issuers=2)
    schema, _ = build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=8)
    scorer = Scorer.from_pretrained(tmp / "run")
    store = SqliteStateStore(tmp / "state.sqlite", max_events=scorer.max_events,
                             buckets={"issuer": schema.entities["issuer"].bucket_ms})
    app = create_app(EventParser(schema), store, scorer, ServiceSettings())
    with TestClient(app) as client:
        body = client.post("/v1/events", json=[json_event(raw, i) for i in range(raw.num_rows - 1)])
        assert body.status_code == 200 and body.json()["applied"] == raw.num_rows - 1
        yield client, scorer, store, raw


def test_embedding_endpoint(service):
    client, scorer, store, raw = service
    customer = str(raw["card_id"][0])
    body = client.get(f"/v1/entities/customer/{customer}/embedding").json()
    state = scorer.entity_states([("customer", customer)], store)[0]
    assert body["has_history"] and body["index"] == state.index and body["model_version"] == scorer.model_version
    np.testing.assert_allclose(body["embedding"], state.hidden, rtol=1e-6)
    assert len(body["embedding"]) == scorer.model.config.hidden_size

    unknown = client.get("/v1/entities/merchant/nobody/embedding").json()
    assert unknown["has_history"] is False and not any(unknown["embedding"]) and unknown["index"] == -1

    # as_of before the retained tail cannot be reproduced exactly: 409, never an approximation.
    old = client.get(f"/v1/entities/customer/{customer}/embedding", params={"as_of": "2024-05-01T00:30:00"})
    assert old.status_code == 409
    bad = client.get(f"/v1/entities/customer/{customer}/embedding", params={"as_of": "soon"})
    assert bad.status_code == 422 and bad.json()["error"]["problems"][0]["field"] == "as_of"


def test_ingest_warms_the_cache(service):
    client, scorer, store, raw = service
    last = json_event(raw, raw.num_rows - 1)
    assert client.post("/v1/events", json=last).json()["applied"] == 1
    assert client.app.state.warmer.idle(timeout=30)
    misses = scorer.cache_misses
    body = client.get(f"/v1/entities/customer/{last['card_id']}/embedding").json()
    assert scorer.cache_misses == misses  # the warmer computed it already
    assert body["last_event_time"] == last["ts"]
    metrics = client.get("/metrics").text
    assert 'foundation_scorer_cache_total{result="hit"}' in metrics
    live = scorer.engine.live
    assert live.steps + live.prefills > 0 and len(live) > 0  # the warmer advanced the live states
    assert f'foundation_live_state_updates_total{{kind="step"}} {float(live.steps)}' in metrics
    assert live.nbytes > 0 and f"foundation_live_state_bytes {float(live.nbytes)}" in metrics
    assert f'foundation_model_info{{version="{scorer.model_version}"}} 1.0' in metrics


def test_score_without_heads_is_503(service):
    client, _, _, raw = service
    attempt = {k: v for k, v in json_event(raw, 3).items() if k not in ("event_type", "decline_code", "event_id")}
    response = client.post("/v1/score", json=attempt)
    assert response.status_code == 503 and "heads" in response.json()["error"]["message"]
    missing = client.post("/v1/score", json={k: v for k, v in attempt.items() if k != "amount"})
    assert missing.status_code == 422 and missing.json()["error"]["problems"][0]["field"] == "amount"
