"""Replay and load test clients against a real uvicorn server in a thread: bounds, loopback, prefixes."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from foundation.serving.app import ServiceSettings, create_app
from foundation.serving.loadtest import attempts_from_file, measure_ingest
from foundation.serving.replay import check_loopback, replay
from foundation.serving.schemas import EventParser
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.conftest import free_port
from tests.serving.fixtures import synthetic_schema, write_events


@pytest.fixture
def server(tmp_path):
    """An ingest-only service on a free loopback port; yields (url, schema, store, raw events)."""
    raw = write_events(tmp_path / "events" / "part-00000.parquet", n=300, n_customers=5)
    schema = synthetic_schema(tmp_path / "events", tmp_path / "data")
    store = SqliteStateStore(tmp_path / "state.sqlite", buckets={"issuer": 3_600_000})
    app = create_app(EventParser(schema), store, None, ServiceSettings())
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", schema, store, raw
    uv.should_exit = True
    thread.join(timeout=10)


def test_loopback_only():
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:8000")
    assert check_loopback("http://[::1]:8000")
    for url in ("http://10.1.2.3:8000", "http://8.8.8.8", "ftp://127.0.0.1", "127.0.0.1:8000"):
        with pytest.raises(ValueError):
            check_loopback(url)


def test_replay_respects_rate_and_bounds(server):
    url, schema, store, _ = server
    acked: list[str] = []
    start = time.monotonic()
    stats = replay(url, schema, rate=500, batch_size=25, max_events=150, max_seconds=30, on_ack=acked.extend,
                   progress=False)
    elapsed = time.monotonic() - start
    assert (stats.sent, stats.applied, stats.duplicates, stats.failed_requests) == (150, 150, 0, 0)
    assert elapsed >= (150 - 25) / 500  # the first batch goes at once, the rest at <= 500 events/s
    assert len(acked) == 150 and all(store.applied(acked))
    # Bounded in time: a slow rate stops at max_seconds, well before max_events.
    slow = replay(url, schema, rate=50, batch_size=10, max_events=300, max_seconds=0.5, progress=False)
    assert slow.sent < 300 and "max_seconds" in slow.errors[-1]
    # Replaying again is idempotent.
    again = replay(url, schema, rate=10_000, batch_size=100, max_events=150, max_seconds=30, progress=False)
    assert (again.applied, again.duplicates) == (0, 150)


def test_replay_refuses_remote_hosts(tmp_path):
    write_events(tmp_path / "events" / "part-00000.parquet", n=10)
    schema = synthetic_schema(tmp_path / "events", tmp_path / "data")
    with pytest.raises(ValueError, match="loopback"):
        replay("http://10.0.0.1:8000", schema, max_events=10, progress=False)


def test_loadtest_ingest_uses_fresh_entities(server):
    url, schema, store, raw = server
    result = measure_ingest(url, schema, None, n_events=200, batch_size=50, max_seconds=30)
    assert result["events"] == result["applied"] == 200 and result["events_per_second"] > 0
    real_customer = str(raw["card_id"][0])
    assert store.history("customer", real_customer).n_events == 0  # real entities untouched
    body = httpx.get(f"{url}/metrics").text
    assert "foundation_state_events_applied 200.0" in body
    attempts = attempts_from_file(schema, None, 20)
    assert len(attempts) == 20 and not {"event_type", "decline_code", "event_id", "is_fraud"} & set(attempts[0])
