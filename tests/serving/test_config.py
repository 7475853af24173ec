"""conf/serve.yaml composes, and build_app turns it into a working service (with and without a model)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir

from foundation.serving.app import build_app
from tests.serving.fixtures import REPO, build_checkpoint, json_event, write_events


def serve_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="serve", overrides=overrides)


@pytest.fixture
def events(tmp_path):
    return write_events(tmp_path / "events" / "part-00000.parquet", n=80, n_customers=3)


def test_ingest_only_service_from_config(tmp_path, events, monkeypatch):
    monkeypatch.setenv("FOUNDATION_API_TOKEN", "t0ken")
    cfg = serve_config([f"state.path={tmp_path}/state.sqlite", f"data.source.path={tmp_path}/events",
                        f"paths.data_dir={tmp_path}"])
    with TestClient(build_app(cfg)) as client:
        assert client.get("/healthz").json()["scoring"] is False
        assert client.post("/v1/events", json=json_event(events, 0)).status_code == 401
        ok = client.post("/v1/events", json=json_event(events, 0), headers={"Authorization": "Bearer t0ken"})
        assert ok.json()["applied"] == 1


def test_service_with_a_checkpoint_from_config(tmp_path, events):
    build_checkpoint(tmp_path / "run", tmp_path / "events", tmp_path / "data", max_position=8)
    base = [f"checkpoint={tmp_path}/run", f"paths.data_dir={tmp_path}"]
    with pytest.raises(ValueError, match="max_position"):  # a bound that would cut windows is refused
        build_app(serve_config(base + [f"state.path={tmp_path}/small.sqlite", "state.max_events=5"]))
    cfg = serve_config(base + [f"state.path={tmp_path}/state.sqlite", "state.max_events=12", "scorer.live_state_mb=0.5",
                               "scorer.batching.max_size=8"])
    app = build_app(cfg)
    assert app.state.store.max_events == 12 and app.state.store.buckets == {"issuer": 3_600_000}
    live = app.state.scorer.engine.live  # scorer.incremental and its memory bound reach the engine
    assert live is not None and live.max_bytes == 2**19 and app.state.batcher.max_size == 8
    off = build_app(serve_config(base + [f"state.path={tmp_path}/off.sqlite", "scorer.incremental=false",
                                         "scorer.batching.max_size=0"]))
    assert off.state.scorer.engine.live is None and off.state.batcher is None
    with TestClient(app) as client:
        health = client.get("/healthz").json()
        assert health["scoring"] is True and health["model_version"].startswith("run@")
        client.post("/v1/events", json=[json_event(events, i) for i in range(events.num_rows)])
        body = client.get(f"/v1/entities/customer/{events['card_id'][0]}/embedding").json()
        assert body["has_history"] and len(body["embedding"]) == 32
