"""The HTTP app without a model: ingestion, idempotency, every bad-input class, auth, metrics."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.schemas import EventParser
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import json_event, synthetic_schema, write_events


@pytest.fixture
def events(tmp_path):
    return write_events(tmp_path / "events" / "part-00000.parquet", n=60)


@pytest.fixture
def make_client(tmp_path, events):
    """make_client(token=None, max_body_bytes=..., max_batch_events=...) -> (TestClient, store)."""
    schema = synthetic_schema(tmp_path / "events", tmp_path / "data")

    def factory(**settings):
        store = SqliteStateStore(tmp_path / "state.sqlite", max_events=16,
                                 buckets={"issuer": schema.entities["issuer"].bucket_ms})
        app = create_app(EventParser(schema), store, None, ServiceSettings(**settings))
        return TestClient(app), store

    return factory


def problems(response) -> list[dict]:
    return response.json()["error"]["problems"]


def test_ingest_is_idempotent(make_client, events):
    client, store = make_client()
    batch = [json_event(events, i) for i in range(10)]
    first = client.post("/v1/events", json=batch)
    assert first.status_code == 200 and first.json()["applied"] == 10
    again = client.post("/v1/events", json=batch[5:] + [json_event(events, 10)])
    assert again.status_code == 200
    assert (again.json()["applied"], again.json()["duplicates"]) == (1, 5)
    assert [r["status"] for r in again.json()["results"]][-2:] == ["duplicate", "applied"]
    # One event as a bare object; the same id twice inside one batch counts once.
    single = client.post("/v1/events", json=json_event(events, 11))
    assert single.json()["results"] == [{"event_id": str(events["event_id"][11]), "status": "applied"}]
    twice = client.post("/v1/events", json=[json_event(events, 12), json_event(events, 12)])
    assert [r["status"] for r in twice.json()["results"]] == ["applied", "duplicate"]
    assert store.stats().n_events_applied == 13
    customer = str(events["card_id"][0])
    expected = sum(1 for c in events["card_id"].to_pylist()[:13] if str(c) == customer)
    body = client.get(f"/v1/entities/customer/{customer}").json()
    assert body["n_events"] == expected and len(body["event_ids"]) == expected


BAD = [
    # (mutation of one valid event, status, raw column, reason)
    (lambda e: e.pop("amount"), 422, "amount", "missing"),
    (lambda e: e.update(amount="twelve"), 422, "amount", "wrong_type.amount"),
    (lambda e: e.update(amount=True), 422, "amount", "wrong_type"),
    (lambda e: e.update(mcc={"code": 1}), 422, "mcc", "wrong_type"),
    (lambda e: e.update(amount=float("nan")), 422, "amount", "nan_value.amount"),
    (lambda e: e.update(amount=float("inf")), 422, "amount", "nan_value.amount"),
    (lambda e: e.update(amount=-5), 422, "amount", "negative_value.amount"),
    (lambda e: e.update(amount=None), 422, "amount", "null_value.amount"),
    (lambda e: e.update(ts="not a time"), 422, "ts", "unparsable_timestamp"),
    (lambda e: e.update(ts=float("nan")), 422, "ts", "wrong_type"),
    (lambda e: e.update(card_id=None), 422, "card_id", "null_entity_key.customer"),
    (lambda e: e.update(event_id=None), 422, "event_id", "null_event_id"),
]


@pytest.mark.parametrize("mutate,status,field,reason", BAD, ids=[b[3] + "-" + b[2] for b in BAD])
def test_bad_events_are_refused_with_field_and_reason(make_client, events, mutate, status, field, reason):
    client, store = make_client()
    good, bad = json_event(events, 0), json_event(events, 1)
    mutate(bad)
    # json.dumps writes NaN/Infinity literals, which Python clients do send.
    response = client.post("/v1/events", content=json.dumps([good, bad]), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    found = problems(response)
    assert {"index": 1, "field": field, "reason": reason}.items() <= found[0].items(), found
    assert found[0]["problem"]
    # All or nothing: the valid event of the batch was not applied either.
    assert store.stats().n_events_applied == 0


def test_request_shape_and_size_limits(make_client, events):
    client, store = make_client(max_body_bytes=4000, max_batch_events=3)
    batch = [json_event(events, i) for i in range(4)]
    too_many = client.post("/v1/events", json=batch)
    assert too_many.status_code == 413 and "max_batch_events" in too_many.json()["error"]["message"]
    big = json.dumps([json_event(events, 0)] * 20).encode()
    assert len(big) > 4000
    declared = client.post("/v1/events", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "max_body_bytes" in declared.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/v1/events", content=b"{not json").status_code == 400
    assert client.post("/v1/events", content=b"").status_code == 400
    scalar = client.post("/v1/events", json=42)
    assert scalar.status_code == 422 and problems(scalar)[0]["reason"] == "wrong_type"
    items = client.post("/v1/events", json=[json_event(events, 0), "x"])
    assert items.status_code == 422 and problems(items)[0]["index"] == 1
    assert client.post("/v1/events", json=[]).status_code == 422
    unknown = client.get("/v1/entities/planet/1/embedding")
    assert unknown.status_code == 404 and problems(unknown)[0]["reason"] == "unknown_entity_type"
    assert client.get("/v1/entities/planet/1").status_code == 404
    bad_param = client.post("/v1/score?commit=maybe", json=json_event(events, 0))
    assert bad_param.status_code in (422, 503)
    assert store.stats().n_events_applied == 0


def test_without_a_model_scoring_answers_503(make_client, events):
    client, _ = make_client()
    response = client.post("/v1/score", json=json_event(events, 0))
    assert response.status_code == 503 and "no model" in response.json()["error"]["message"]
    assert client.get("/healthz").json() == {"status": "ok", "model_version": None, "scoring": False,
                                             "state_backend": "SqliteStateStore"}


def test_bearer_token(make_client, events):
    client, store = make_client(api_token="s3cret")
    event = json_event(events, 0)
    missing = client.post("/v1/events", json=event)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/events", json=event, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/entities/customer/1", headers={"Authorization": "Basic s3cret"}).status_code == 401
    assert store.stats().n_events_applied == 0
    ok = client.post("/v1/events", json=event, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["applied"] == 1
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_metrics_text(make_client, events):
    client, _ = make_client()
    client.post("/v1/events", json=[json_event(events, i) for i in range(5)])
    client.post("/v1/events", json=[json_event(events, 0)])
    client.post("/v1/events", json={"nope": 1})
    client.get("/v1/entities/customer/1")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    lines = set(text.splitlines())
    # HTTP metrics (prometheus-fastapi-instrumentator): handler = route template, "none" when unmatched
    assert 'foundation_http_requests_total{handler="/v1/events",method="POST",status="200"} 2.0' in lines
    assert 'foundation_http_requests_total{handler="/v1/events",method="POST",status="422"} 1.0' in lines
    assert ('foundation_http_requests_total{handler="/v1/entities/{entity_type}/{entity_id:path}",method="GET",'
            'status="200"} 1.0') in lines
    assert 'foundation_http_requests_total{handler="none",method="GET",status="404"} 1.0' in lines
    assert 'foundation_http_request_duration_seconds_count{handler="/v1/events",method="POST"} 3.0' in lines
    assert 'foundation_events_total{result="applied"} 5.0' in lines
    assert 'foundation_events_total{result="duplicate"} 1.0' in lines
    assert "foundation_state_events_applied 5.0" in lines
    n_entities = len({("c", c) for c in events["card_id"].to_pylist()[:5]}
                     | {("m", m) for m in events["merchant_id"].to_pylist()[:5]}
                     | {("i", i) for i in events["issuer_id"].to_pylist()[:5]})
    assert f"foundation_state_entities {float(n_entities)}" in lines
    assert 'foundation_model_info{version="none"} 0.0' in lines
