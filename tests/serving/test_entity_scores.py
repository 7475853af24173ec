"""GET /v1/entities/{type}/{id}/scores: entity task heads on the live state, equal to the batch path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from foundation.entitytasks.embedding import entity_embeddings
from foundation.entitytasks.heads import build_head
from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.entity_scores import load_entity_heads
from foundation.serving.schemas import EventParser
from foundation.serving.scorer import Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, write_events


def _save_heads(folder, hidden: int) -> None:
    """An entity run's heads as `train_models` saves them: binary (merchants), multiclass (customers)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, hidden + 2)).astype(np.float32)
    binary = build_head("probe", "binary", 2, {"max_epochs": 3}).fit(X, (X[:, 0] > 0).astype(int), X,
                                                                     (X[:, 0] > 0).astype(int))
    binary.save(folder / "heads" / "merchant_risk" / "probe", kind="entity", task="merchant_risk",
                entity_type="merchant", entity_types=["merchant"], problem="binary", classes=[])
    y = np.digitize(X[:, 1], [-0.5, 0.5])
    multi = build_head("gbdt", "multiclass", 3, {"num_boost_round": 5, "params": {"min_data_in_leaf": 5}})
    multi.fit(X, y, X, y)
    multi.save(folder / "heads" / "customer_trend" / "gbdt", kind="entity", task="customer_trend",
               entity_type="customer", entity_types=["customer"], problem="multiclass", classes=["down", "flat", "up"])


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("entity-scores")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=120, n_customers=4, n_merchants=2, n_issuers=2)
    schema, seq_dir = build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=8)
    scorer = Scorer.from_pretrained(tmp / "run")
    _save_heads(tmp / "ft", scorer.model.config.hidden_size)
    heads = load_entity_heads({"merchant_risk": None, "customer_trend": {"head": "gbdt"}, "absent_task": None},
                              tmp / "ft")
    store = SqliteStateStore(tmp / "state.sqlite", max_events=scorer.max_events,
                             buckets={"issuer": schema.entities["issuer"].bucket_ms})
    app = create_app(EventParser(schema), store, scorer, ServiceSettings())
    app.state.entity_heads = heads
    with TestClient(app) as client:
        assert client.post("/v1/events", json=[json_event(raw, i) for i in range(raw.num_rows)]).status_code == 200
        yield client, scorer, store, raw, heads, seq_dir


def test_scores_come_from_the_live_state(service):
    client, scorer, store, raw, heads, _ = service
    assert sorted(h.task for h in heads) == ["customer_trend", "merchant_risk"]  # absent_task: no heads, skipped
    merchant = str(raw["merchant_id"][0])
    body = client.get(f"/v1/entities/merchant/{merchant}/scores")
    assert body.status_code == 200, body.text
    body = body.json()
    state = scorer.entity_states([("merchant", merchant)], store)[0]
    as_of = state.last_time + 2 * 86_400_000  # two days after its last event
    body = client.get(f"/v1/entities/merchant/{merchant}/scores",
                      params={"as_of": np.datetime64(as_of, "ms").astype(str)}).json()
    features = np.r_[state.hidden, 1.0, np.log1p(2.0)][None, :].astype(np.float32)
    head = next(h for h in heads if h.task == "merchant_risk")
    assert body["has_history"] and set(body["scores"]) == {"merchant_risk"}
    assert body["scores"]["merchant_risk"]["probability"] == pytest.approx(float(head.model.predict_proba(features)[0]))
    customer = client.get(f"/v1/entities/customer/{raw['card_id'][0]}/scores").json()["scores"]["customer_trend"]
    assert set(customer["probabilities"]) == {"down", "flat", "up"} and customer["problem"] == "multiclass"
    assert sum(customer["probabilities"].values()) == pytest.approx(1.0)
    assert customer["class"] == max(customer["probabilities"], key=customer["probabilities"].get)


def test_online_scores_as_of_a_date_equal_the_batch_path(service):
    client, scorer, store, raw, heads, seq_dir = service
    from foundation.pointintime import PointInTimeEncoder, SequenceStore

    merchant = str(raw["merchant_id"][0])
    times = raw.filter(pa.compute.equal(raw["merchant_id"], raw["merchant_id"][0]))["ts"].cast(pa.int64()).to_numpy()
    as_of = int(times[-1])  # the last event: exactly at as_of, it is in the state (the batch rule)
    iso = np.datetime64(as_of, "ms").astype(str)
    online = client.get(f"/v1/entities/merchant/{merchant}/scores", params={"as_of": iso})
    assert online.status_code == 200, online.text
    encoder = PointInTimeEncoder(scorer.model, scorer.field_specs, 4096, "cpu")
    batch = entity_embeddings(SequenceStore(seq_dir, scorer.tokenizer), encoder, "merchant", pa.array([merchant]),
                              np.array([as_of]))
    head = next(h for h in heads if h.task == "merchant_risk")
    assert online.json()["scores"]["merchant_risk"]["probability"] == pytest.approx(
        float(head.model.predict_proba(batch)[0]), abs=1e-5)


def test_unserved_types_unknown_entities_and_bad_heads(service, tmp_path):
    client, *_ = service
    assert client.get("/v1/entities/issuer/900/scores").status_code == 404
    unknown = client.get("/v1/entities/merchant/no-such-merchant/scores").json()
    assert unknown["has_history"] is False and "probability" in unknown["scores"]["merchant_risk"]
    assert client.get("/v1/entities/planet/1/scores").status_code in (404, 422)
    # an event task head is not an entity head
    build_head("probe", "binary", 2, {"max_epochs": 1}).fit(np.eye(4), np.array([0, 1, 0, 1]), np.eye(4),
                                                           np.array([0, 1, 0, 1])).save(tmp_path / "heads" / "t" / "p")
    with pytest.raises(ValueError, match="not an entity task head"):
        load_entity_heads({"t": None}, tmp_path)
    # a full fine-tune carries its own encoder: batch scoring only, the error names the servable heads
    from foundation.entitytasks.full import EntityFullHead

    scorer = service[1]
    EntityFullHead(scorer.model, scorer.model.config.fields, "binary").save(
        tmp_path / "heads" / "u" / "full", kind="entity", task="u", entity_type="merchant", problem="binary")
    _save_heads(tmp_path, scorer.model.config.hidden_size)
    (tmp_path / "heads" / "merchant_risk" / "probe").rename(tmp_path / "heads" / "u" / "probe")
    with pytest.raises(ValueError, match=r"batch only.*entity_tasks\.u\.head=\['probe'\]"):
        load_entity_heads({"u": {"head": "full"}}, tmp_path)


def test_a_lookback_head_reads_the_earlier_state_as_the_batch_path_does(service, tmp_path):
    client, scorer, store, raw, heads, seq_dir = service
    from foundation.pointintime import PointInTimeEncoder, SequenceStore

    merchant = raw["merchant_id"][0]
    times = raw.filter(pa.compute.equal(raw["merchant_id"], merchant))["ts"].cast(pa.int64()).to_numpy()
    as_of, back = int(times[-1]), int(times[-1] - times[-3])  # the earlier state: before the last two events
    width = 2 * (scorer.model.config.hidden_size + 2)
    X = np.random.default_rng(1).normal(size=(300, width)).astype(np.float32)
    y = (X[:, 0] - X[:, width // 2] > 0).astype(int)  # reads the state now and the state `back` before
    build_head("probe", "binary", 2, {"max_epochs": 3}).fit(X, y, X, y).save(
        tmp_path / "heads" / "merchant_trend" / "probe", kind="entity", task="merchant_trend", entity_type="merchant",
        entity_types=["merchant"], problem="binary", classes=[], lookback_ms=[back])
    trend = load_entity_heads({"merchant_trend": None}, tmp_path)
    assert trend[0].lookback == (back,)
    params = {"as_of": np.datetime64(as_of, "ms").astype(str)}
    client.app.state.entity_heads = trend
    try:  # the state `back` earlier needs a model window older than the retained events: said so
        refused = client.get(f"/v1/entities/merchant/{merchant}/scores", params=params)
    finally:
        client.app.state.entity_heads = heads
    assert refused.status_code == 409 and "raise state.max_events" in refused.text
    # a store retaining the whole history answers it
    store = SqliteStateStore(tmp_path / "state.sqlite", max_events=10_000,
                             buckets={"issuer": scorer.schema.entities["issuer"].bucket_ms})
    app = create_app(EventParser(scorer.schema), store, scorer, ServiceSettings())
    app.state.entity_heads = trend
    with TestClient(app) as deep:
        assert deep.post("/v1/events", json=[json_event(raw, i) for i in range(raw.num_rows)]).status_code == 200
        online = deep.get(f"/v1/entities/merchant/{merchant}/scores", params=params)
    assert online.status_code == 200, online.text
    encoder = PointInTimeEncoder(scorer.model, scorer.field_specs, 4096, "cpu")
    batch = entity_embeddings(SequenceStore(seq_dir, scorer.tokenizer), encoder, "merchant", pa.array([str(merchant)]),
                              np.array([as_of]), (back,))
    assert batch.shape == (1, width) and not np.allclose(batch[0, :width // 2], batch[0, width // 2:])
    assert online.json()["scores"]["merchant_trend"]["probability"] == pytest.approx(
        float(trend[0].model.predict_proba(batch)[0]), abs=1e-5)


def test_a_hazard_head_gets_the_survival_columns_the_batch_path_builds(service, tmp_path):
    client, scorer, store, raw, heads, seq_dir = service
    from foundation.entitytasks.hazard import GapHazard
    from foundation.pointintime import PointInTimeEncoder, SequenceStore

    horizons = [86_400_000, 30 * 86_400_000]
    hazard = GapHazard.from_run(scorer.engine.surprise, scorer.tokenizer, horizons)
    width = scorer.model.config.hidden_size + 2 + len(hazard.names)
    X = np.random.default_rng(2).normal(size=(300, width)).astype(np.float32)
    y = (X[:, -1] > 0).astype(int)  # reads the 30-day survival column
    build_head("probe", "binary", 2, {"max_epochs": 3}).fit(X, y, X, y).save(
        tmp_path / "heads" / "merchant_quiet" / "probe", kind="entity", task="merchant_quiet", entity_type="merchant",
        entity_types=["merchant"], problem="binary", classes=[], hazard_ms=horizons)
    quiet = load_entity_heads({"merchant_quiet": None}, tmp_path)
    assert quiet[0].hazard == tuple(horizons)
    merchant = str(raw["merchant_id"][0])
    times = raw.filter(pa.compute.equal(raw["merchant_id"], raw["merchant_id"][0]))["ts"].cast(pa.int64()).to_numpy()
    as_of = int(times[-1]) + 3 * 86_400_000  # three silent days after its last event
    client.app.state.entity_heads = quiet
    try:
        online = client.get(f"/v1/entities/merchant/{merchant}/scores",
                            params={"as_of": np.datetime64(as_of, "ms").astype(str)})
    finally:
        client.app.state.entity_heads = heads
    assert online.status_code == 200, online.text
    encoder = PointInTimeEncoder(scorer.model, scorer.field_specs, 4096, "cpu")
    batch = entity_embeddings(SequenceStore(seq_dir, scorer.tokenizer), encoder, "merchant", pa.array([merchant]),
                              np.array([as_of]), (), hazard)
    assert batch.shape[1] == width and batch[0, -3] < 0  # three silent days: log S(e) below zero
    assert online.json()["scores"]["merchant_quiet"]["probability"] == pytest.approx(
        float(quiet[0].model.predict_proba(batch)[0]), abs=1e-5)
