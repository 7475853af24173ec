"""kill -9 the real service mid-replay: every acknowledged event survives, and nothing is applied twice."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pyarrow as pa
import pytest

from foundation.serving.replay import replay
from foundation.serving.state import DEFAULT_MAX_EVENTS
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.fixtures import synthetic_schema, write_events
from tests.serving.service import ServiceProcess

N_EVENTS = 1200


@pytest.mark.slow
def test_acknowledged_events_survive_kill_9(tmp_path):
    events = write_events(tmp_path / "events" / "part-00000.parquet", n=N_EVENTS, n_customers=20)
    schema = synthetic_schema(tmp_path / "events", tmp_path / "data")
    state = tmp_path / "state" / "state.sqlite"
    overrides = [f"state.path={state}", f"data.source.path={tmp_path / 'events'}", f"paths.data_dir={tmp_path}"]

    service = ServiceProcess(overrides, tmp_path / "run")
    try:
        service.wait_healthy()
        acked: list[str] = []
        result = {}

        def run() -> None:
            result["stats"] = replay(service.url, schema, rate=800, batch_size=20, max_events=N_EVENTS,
                                     max_seconds=60, on_ack=acked.extend, progress=False)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        service.kill()
        thread.join(timeout=60)
    finally:
        service.stop()
    stats = result["stats"]
    assert 300 <= len(acked) < N_EVENTS and stats.failed_requests == 1, (len(acked), stats)

    buckets = {"issuer": schema.entities["issuer"].bucket_ms}
    store = SqliteStateStore(state, max_events=DEFAULT_MAX_EVENTS, buckets=buckets)
    assert all(store.applied(acked)), "an acknowledged event was lost"
    survived = store.stats().n_events_applied
    assert survived >= len(acked)
    store.close()

    # Restart on the same file and replay everything: what survived comes back as duplicates.
    service = ServiceProcess(overrides, tmp_path / "run")
    try:
        service.wait_healthy()
        again = replay(service.url, schema, rate=5000, batch_size=100, max_events=N_EVENTS, max_seconds=60,
                       progress=False)
    finally:
        service.stop()
    assert again.failed_requests == 0 and again.rejected == 0
    assert (again.applied, again.duplicates) == (N_EVENTS - survived, survived)

    store = SqliteStateStore(state, max_events=DEFAULT_MAX_EVENTS, buckets=buckets)
    try:
        assert store.stats().n_events_applied == N_EVENTS
        per_customer = Counter(str(c) for c in events["card_id"].to_pylist())
        for customer, count in per_customer.items():
            hist = store.history("customer", customer)
            ids = [e["event_id"] for e in hist.events]
            assert hist.n_events == count and len(ids) == len(set(ids)) == min(count, DEFAULT_MAX_EVENTS)
        ms = events["ts"].cast(pa.int64()).to_pylist()
        hours = Counter(issuer for issuer, _ in {(str(i), t // 3_600_000)
                                                 for i, t in zip(events["issuer_id"].to_pylist(), ms)})
        for issuer, n_buckets in hours.items():
            assert store.history("issuer", issuer).n_events == n_buckets
    finally:
        store.close()
