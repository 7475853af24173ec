"""The live states are a cache of the durable log: a service killed with -9 rebuilds them on restart, and two
replicas on one Redis compute the same states, each from the shared log (real service processes, tiny model)."""

from __future__ import annotations

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from foundation.serving.replay import replay
from foundation.serving.scorer import Scorer
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import build_checkpoint, json_event, synthetic_schema, write_events
from tests.serving.service import ServiceProcess

N_EVENTS = 240


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live-restart")
    raw = write_events(tmp / "events" / "part-00000.parquet", n=N_EVENTS, n_customers=6, n_merchants=3)
    build_checkpoint(tmp / "run", tmp / "events", tmp / "data", max_position=8, encoder_type="gru")
    return tmp, raw, synthetic_schema(tmp / "events", tmp / "data")


def embeddings(url: str, customers: list[str]) -> dict[str, list[float]]:
    out = {}
    for customer in customers:
        body = httpx.get(f"{url}/v1/entities/customer/{customer}/embedding", timeout=30).json()
        out[customer] = body["embedding"]
    return out


def live_updates(url: str) -> dict[str, float]:
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return {kind: float(line.rsplit(" ", 1)[1]) for line in lines for kind in ("step", "window")
            if line.startswith(f'foundation_live_state_updates_total{{kind="{kind}"}}')}


@pytest.mark.slow
def test_live_states_rebuild_from_the_log_after_kill_9(checkpoint, tmp_path):
    tmp, raw, schema = checkpoint
    state = tmp_path / "state.sqlite"
    overrides = [f"checkpoint={tmp / 'run'}", f"state.path={state}", f"paths.data_dir={tmp}"]
    customers = sorted({str(c) for c in raw["card_id"].to_pylist()})
    service = ServiceProcess(overrides, tmp_path / "run")
    try:
        service.wait_healthy()
        with httpx.Client(base_url=service.url, timeout=30) as client:
            for i in range(N_EVENTS // 2):  # one event, then its customer's embedding: at most one event behind
                assert client.post("/v1/events", json=json_event(raw, i)).json()["applied"] == 1
                client.get(f"/v1/entities/customer/{raw['card_id'][i]}/embedding").raise_for_status()
        before = embeddings(service.url, customers)
        assert live_updates(service.url)["step"] > 0  # ingestion advanced live states by steps
        service.kill()  # no shutdown hook: the live states are gone with the process
    finally:
        service.stop()
    service = ServiceProcess(overrides, tmp_path / "run")
    try:
        service.wait_healthy()
        assert live_updates(service.url) == {"step": 0.0, "window": 0.0}
        after = embeddings(service.url, customers)
        assert live_updates(service.url)["window"] == len(customers)  # rebuilt from the log, once each
        for customer in customers:
            np.testing.assert_allclose(after[customer], before[customer], rtol=1e-6, atol=1e-6)
        # and the rebuilt states advance with the rest of the events, as a window pass computes them
        replay(service.url, schema, rate=1e9, batch_size=7, max_events=N_EVENTS, max_seconds=60, progress=False)
        final = embeddings(service.url, customers)
    finally:
        service.stop()
    reference = Scorer.from_pretrained(tmp / "run", incremental=False)
    store = SqliteStateStore(state, max_events=reference.max_events, buckets={"issuer": 3_600_000})
    try:
        for customer in customers:
            expected = reference.entity_states([("customer", customer)], store)[0]
            assert expected.index == sum(1 for c in raw["card_id"].to_pylist() if str(c) == customer) - 1
            np.testing.assert_allclose(final[customer], expected.hidden, rtol=1e-5, atol=1e-5)
    finally:
        store.close()


@pytest.mark.redis
@pytest.mark.slow
def test_replicas_on_redis_compute_the_same_live_states(checkpoint, tmp_path, redis_url):
    tmp, raw, schema = checkpoint
    common = [f"checkpoint={tmp / 'run'}", "state.backend=redis", f"state.redis_url={redis_url}",
              "state.key_prefix=live-replicas", f"paths.data_dir={tmp}"]
    replicas = [ServiceProcess(common, tmp_path / "run-a"), ServiceProcess(common, tmp_path / "run-b")]
    customers = sorted({str(c) for c in raw["card_id"].to_pylist()})
    try:
        for replica in replicas:
            replica.wait_healthy()
        # the first half through replica a, the second through b: each advances its own cache from the log
        replay(replicas[0].url, schema, rate=1e9, batch_size=10, max_events=N_EVENTS // 2, max_seconds=60,
               progress=False)
        first = [embeddings(r.url, customers) for r in replicas]
        half = raw.slice(N_EVENTS // 2)
        (tmp_path / "rest").mkdir()
        pq.write_table(half, tmp_path / "rest" / "part-00000.parquet")
        replay(replicas[1].url, synthetic_schema(tmp_path / "rest", tmp), rate=1e9, batch_size=10,
               max_events=N_EVENTS, max_seconds=60, progress=False)
        second = [embeddings(r.url, customers) for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    for views in (first, second):
        for customer in customers:
            np.testing.assert_allclose(views[0][customer], views[1][customer], rtol=1e-5, atol=1e-5)
    assert any(not np.allclose(first[0][c], second[0][c]) for c in customers)  # the states moved on
