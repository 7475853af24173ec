"""Two real service processes on one real redis-server share the state: dedup and counts hold across them."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pyarrow.parquet as pq
import pytest

from foundation.serving.replay import replay
from tests.serving.fixtures import synthetic_schema, write_events
from tests.serving.service import ServiceProcess

N_EVENTS = 600


@pytest.mark.redis
@pytest.mark.slow
def test_two_replicas_share_state(tmp_path, redis_url):
    events = write_events(tmp_path / "all" / "part-00000.parquet", n=N_EVENTS, n_customers=10)
    # Overlapping halves: events 200..399 reach both replicas, concurrently.
    for name, part in (("a", events.slice(0, 400)), ("b", events.slice(200))):
        (tmp_path / name).mkdir()
        pq.write_table(part, tmp_path / name / "part-00000.parquet")
    schema_a = synthetic_schema(tmp_path / "a", tmp_path / "data")
    schema_b = synthetic_schema(tmp_path / "b", tmp_path / "data")
    common = ["state.backend=redis", f"state.redis_url={redis_url}", "state.key_prefix=replicas",
              f"data.source.path={tmp_path / 'all'}", f"paths.data_dir={tmp_path}"]
    replicas = [ServiceProcess(common, tmp_path / "run-a"), ServiceProcess(common, tmp_path / "run-b")]
    try:
        for replica in replicas:
            replica.wait_healthy()
        results = {}

        def send(name, replica, schema):
            results[name] = replay(replica.url, schema, rate=4000, batch_size=10, max_events=N_EVENTS,
                                   max_seconds=60, progress=False)

        threads = [threading.Thread(target=send, args=("a", replicas[0], schema_a)),
                   threading.Thread(target=send, args=("b", replicas[1], schema_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a, b = results["a"], results["b"]
        assert a.failed_requests == b.failed_requests == 0 and a.rejected == b.rejected == 0
        assert a.applied + b.applied == N_EVENTS  # each event applied exactly once overall
        assert a.duplicates + b.duplicates == 200

        expected = Counter(str(c) for c in events["card_id"].to_pylist())
        for customer, count in expected.items():
            views = [httpx.get(f"{r.url}/v1/entities/customer/{customer}").json() for r in replicas]
            assert views[0] == views[1]
            assert views[0]["n_events"] == count and len(set(views[0]["event_ids"])) == count
        metrics = httpx.get(f"{replicas[1].url}/metrics").text
        assert f"foundation_state_events_applied {float(N_EVENTS)}" in metrics.splitlines()
    finally:
        for replica in replicas:
            replica.stop()
