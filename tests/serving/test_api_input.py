"""Bad input the service used to let through: implausible event times, blank keys, lone surrogates; entity ids
holding "/"; the OpenAPI document (request fields listed, behind the token)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.schemas import EventParser, RequestError
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import START_MS, json_event, synthetic_schema, write_events

NOW_MS = START_MS + 30 * 86_400_000  # the service clock of these tests: 2024-05-31


@pytest.fixture
def events(tmp_path):
    return write_events(tmp_path / "events" / "part-00000.parquet", n=20)


@pytest.fixture
def schema(tmp_path, events):
    return synthetic_schema(tmp_path / "events", tmp_path / "data")


@pytest.fixture
def make_client(tmp_path, schema):
    def factory(**settings):
        store = SqliteStateStore(tmp_path / "state.sqlite", max_events=16,
                                 buckets={"issuer": schema.entities["issuer"].bucket_ms})
        app = create_app(EventParser(schema, clock=lambda: NOW_MS), store, None, ServiceSettings(**settings))
        return TestClient(app), store

    return factory


def first_problem(response) -> dict:
    return response.json()["error"]["problems"][0]


@pytest.mark.parametrize("ts,reason", [
    ("0001-01-01T00:00:00", "implausible_event_time"),
    ("1989-12-31T23:59:59", "implausible_event_time"),
    ("2099-01-01T00:00:00", "future_event_time"),
    ("9999-12-31T23:59:59", "future_event_time"),
    ("2024-05-31T00:06:00", "future_event_time"),  # 6 minutes ahead of the clock; the skew allows 5
])
def test_event_times_outside_the_bounds_are_refused(make_client, events, ts, reason):
    client, store = make_client()
    response = client.post("/v1/events", json=[json_event(events, 0), dict(json_event(events, 1), ts=ts)])
    assert response.status_code == 422, response.text
    assert {"index": 1, "field": "ts", "key": "timestamp.column", "reason": reason}.items() <= first_problem(
        response).items()
    assert ts[:4] in first_problem(response)["problem"]
    assert store.stats().n_events_applied == 0


def test_event_time_bounds_are_configurable(make_client, events):
    client, _ = make_client()
    ahead = dict(json_event(events, 0), ts="2024-05-31T00:04:00")  # within the default 5 minutes
    assert client.post("/v1/events", json=ahead).status_code == 200
    loose, _ = make_client(min_event_ms=None, max_future_skew_ms=None)
    assert loose.post("/v1/events", json=dict(json_event(events, 1), ts="2099-01-01T00:00:00")).status_code == 200


def test_a_future_attempt_is_refused_before_scoring(schema, events):
    parser = EventParser(schema, max_future_skew_ms=60_000, clock=lambda: NOW_MS)
    attempt = {k: v for k, v in json_event(events, 0).items() if k not in ("event_type", "decline_code")}
    assert parser.parse_attempt(attempt, commit=False).record.event_time < NOW_MS
    with pytest.raises(RequestError) as err:
        parser.parse_attempt(dict(attempt, ts="2099-01-01T00:00:00"), commit=False)
    assert err.value.status == 422 and err.value.problems[0]["reason"] == "future_event_time"


def test_a_batch_of_attempts_parses_as_each_alone(schema, events):
    """One validator pass for a micro-batch: the same attempts as one at a time; a bad request gets its own
    error and its neighbours still parse; a repeated event id falls back to one at a time."""
    parser = EventParser(schema, max_future_skew_ms=60_000, clock=lambda: NOW_MS)
    plain = [{k: v for k, v in json_event(events, i).items() if k not in ("event_type", "decline_code")}
             for i in range(4)]
    plain[1].pop("event_id")  # an attempt without its id
    plain[3]["amount"] = 12  # an int where a float is usual
    full = json_event(events, 5)
    items = [(body, False) for body in plain] + [(full, True), (plain[0], False)]
    alone = [parser.parse_attempt(body, commit) for body, commit in items]
    batched = parser.parse_attempts(items)
    assert [(a.record, a.has_event_id) for a in batched] == [(a.record, a.has_event_id) for a in alone]
    assert batched[1].record.event_id == batched[1].record.payload["event_id"] == "__attempt__"
    bad = dict(plain[2], ts="2099-01-01T00:00:00")
    mixed = parser.parse_attempts([(plain[0], False), (bad, False), ("not an object", False), (plain[3], False)])
    assert mixed[0].record == alone[0].record and mixed[3].record == alone[3].record
    assert isinstance(mixed[1], RequestError) and mixed[1].problems[0]["reason"] == "future_event_time"
    assert mixed[1].problems[0]["index"] == 0  # its own request's index, as when parsed alone
    assert isinstance(mixed[2], RequestError) and mixed[2].status == 422


@pytest.mark.parametrize("column,value,reason", [
    ("card_id", "   ", "null_entity_key.customer"),
    ("merchant_id", "\t", "null_entity_key.merchant"),
    ("event_id", " ", "null_event_id"),
])
def test_blank_keys_are_refused(make_client, events, column, value, reason):
    client, store = make_client()
    response = client.post("/v1/events", json=dict(json_event(events, 0), **{column: value}))
    assert response.status_code == 422, response.text
    assert {"field": column, "reason": reason}.items() <= first_problem(response).items()
    assert "blank" in first_problem(response)["problem"]
    assert store.stats().n_events_applied == 0


@pytest.mark.parametrize("column", ["card_id", "mcc", "event_id", "ts"])
def test_a_lone_surrogate_is_a_422_naming_the_field(make_client, events, column):
    client, store = make_client()
    # The escape is valid JSON (json.loads accepts it) but the string it makes cannot be encoded as UTF-8.
    body = json.dumps(dict(json_event(events, 0), **{column: "PLACEHOLDER"})).replace('"PLACEHOLDER"', '"a\\ud800"')
    response = client.post("/v1/events", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert {"field": column, "reason": "invalid_unicode"}.items() <= first_problem(response).items()
    assert store.stats().n_events_applied == 0


def test_entity_ids_with_a_slash_read_back(make_client, events):
    client, _ = make_client()
    event = dict(json_event(events, 0), card_id="bank/7/card")
    assert client.post("/v1/events", json=event).json()["applied"] == 1
    body = client.get("/v1/entities/customer/bank/7/card").json()
    assert body["entity_id"] == "bank/7/card" and body["n_events"] == 1
    assert body["event_ids"] == [str(event["event_id"])]
    # the embedding route still wins for ".../embedding" (no model here: 503, not 404 or an entity read)
    embedding = client.get("/v1/entities/customer/bank/7/card/embedding")
    assert embedding.status_code == 503 and "no model" in embedding.json()["error"]["message"]


def test_openapi_lists_the_request_fields(make_client, schema):
    client, _ = make_client()
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]

    def body_schema(path: str) -> dict:
        return spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    score_ref = body_schema("/v1/score")["$ref"].rsplit("/", 1)[-1]
    score = components[score_ref]
    assert set(schema.raw_columns) <= set(score["properties"])
    assert "amount" in score["required"] and "event_id" not in score["required"]
    assert "decline_code" not in score["required"]  # an outcome field: unknown when scoring
    assert score["properties"]["amount"]["minimum"] == 0
    events_refs = [s.get("$ref") or s["items"]["$ref"] for s in body_schema("/v1/events")["anyOf"]]
    event = components[events_refs[0].rsplit("/", 1)[-1]]
    assert len(set(events_refs)) == 1 and {"event_id", "ts", "card_id", "amount"} <= set(event["required"])
    assert "is_fraud" not in event["required"]  # labels are optional
    assert client.get("/docs").status_code == 200


def test_docs_are_behind_the_token(make_client):
    client, _ = make_client(api_token="s3cret")
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
    assert client.get("/healthz").status_code == 200
