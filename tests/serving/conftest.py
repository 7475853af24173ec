"""Shared fixtures for the serving tests: a real redis-server on a free loopback port, event makers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.serving.state import EventRecord


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_event(event_id: str, t: int, customer: str = "c1", merchant: str = "m1", amount: float = 1.0,
               issuer: str | None = None) -> EventRecord:
    """A canonical event that joins a customer's and a merchant's history (and an issuer's when given)."""
    payload = {"event_id": event_id, "event_time": t, "customer_id": customer, "merchant_id": merchant,
               "issuer_id": issuer, "amount": amount}
    refs = [("customer", customer), ("merchant", merchant)] + ([("issuer", issuer)] if issuer else [])
    return EventRecord(event_id, t, tuple(refs), payload)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server (AOF fsync on every write) on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found (apt-get install -y redis-server); Redis tests skipped")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
