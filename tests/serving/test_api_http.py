"""Over real HTTP (uvicorn on loopback): a stalled upload is cut with a 408, an oversized body gets a 413 the
client can read (not a connection reset); the warning for a public bind without a token; uvicorn's settings."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from foundation.serving import app as app_module
from foundation.serving.app import ServiceSettings, create_app, exposure_warning
from foundation.serving.schemas import EventParser
from foundation.serving.state.sqlite import SqliteStateStore
from tests.serving.conftest import free_port
from tests.serving.fixtures import synthetic_schema, write_events


@contextmanager
def serving(tmp_path, http: str = "httptools", **settings) -> Iterator[int]:
    """The ingest-only app under a real uvicorn server (`http` protocol) in a thread; yields its loopback port."""
    write_events(tmp_path / "events" / "part-00000.parquet", n=5)
    schema = synthetic_schema(tmp_path / "events", tmp_path / "data")
    store = SqliteStateStore(tmp_path / "state.sqlite", max_events=16, buckets={"issuer": 3_600_000})
    app = create_app(EventParser(schema), store, None, ServiceSettings(**settings))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http,
                            loop="uvloop" if http == "httptools" else "asyncio", timeout_keep_alive=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def read_answer(sock: socket.socket) -> str:
    """One HTTP response (head and its Content-Length body) from the socket."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
            answer.lower().partition(b"content-length: ")[2].split(b"\r\n")[0] or 0):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer.decode()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_stalled_upload_is_cut_with_408(tmp_path, http):
    with serving(tmp_path, http, body_timeout_s=0.5) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n[{\"event_id\": 1")  # ... and nothing more
        start = time.monotonic()
        answer = read_answer(sock)
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "server.body_timeout" in answer and time.monotonic() - start < 5
        # and the connection is closed (after the keep-alive timeout), not held open by the silent client
        assert sock.recv(65536) == b"" and time.monotonic() - start < 8


def post_raw(port: int, head: bytes, body: bytes) -> str:
    """Send the whole request, then read the answer: what a plain client does (no early read while sending)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        sock.sendall(head + body)
        return read_answer(sock)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_an_oversized_body_gets_a_readable_413(tmp_path, http):
    body = b"[" + b" " * (50 * 1024 * 1024) + b"]"  # 50 MB, 50x the default limit
    with serving(tmp_path, http) as port:
        head = (b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        answer = post_raw(port, head, body)
        assert answer.startswith("HTTP/1.1 413") and "server.max_body_bytes" in answer, answer[:300]
        # chunked (no Content-Length): refused while streaming, drained as well
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1 << 20]), body[i:i + 1 << 20])
                           for i in range(0, 8 << 20, 1 << 20)) + b"0\r\n\r\n"
        head = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer = post_raw(port, head, chunked)
        assert answer.startswith("HTTP/1.1 413") and "server.max_body_bytes" in answer, answer[:300]
        # httpx reads the answer too, and the server still serves new connections
        response = httpx.post(f"http://127.0.0.1:{port}/v1/events", content=body, timeout=60)
        assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]["message"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("host,token,warns", [
    ("0.0.0.0", None, True), ("10.1.2.3", None, True), ("::", None, True), ("example.org", None, True),
    ("0.0.0.0", "s3cret", False), ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False),
])
def test_exposure_warning(host, token, warns):
    warning = exposure_warning(host, token)
    assert (warning is not None) == warns
    if warns:
        assert host in warning and "FOUNDATION_API_TOKEN" in warning


def test_serve_warns_and_sets_uvicorn_timeouts(tmp_path, monkeypatch, caplog):
    from tests.serving.test_config import serve_config

    monkeypatch.delenv("FOUNDATION_API_TOKEN", raising=False)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    cfg = serve_config([f"state.path={tmp_path}/state.sqlite", f"paths.data_dir={tmp_path}", "server.host=0.0.0.0",
                        "server.keep_alive_timeout=7s", "server.body_timeout=12s"])
    with caplog.at_level(logging.WARNING, logger=app_module.__name__):
        app_module.serve(cfg)
    assert any("without a token" in r.getMessage() for r in caplog.records)
    assert calls[0]["timeout_keep_alive"] == 7 and calls[0]["host"] == "0.0.0.0" and calls[0]["http"] == "httptools"
    assert calls[0]["loop"] == "uvloop"
    settings = app_module.service_settings(cfg)
    assert settings.body_timeout_s == 12 and settings.max_future_skew_ms == 300_000
    assert settings.min_event_ms == 631_152_000_000  # 1990-01-01
