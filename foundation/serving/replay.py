"""Stream a raw events file through a running service (POST /v1/events) at a bounded rate.

For backfills and drills on one machine: the target must be a loopback address (127.0.0.0/8, ::1,
localhost); anything else is refused, so a replay can never flood a shared or production host by
accident. Every run is bounded in events (`max_events`) and time (`max_seconds`).

Rows are sent in file order (files sorted by path, rows in order), or sorted by event time with
`sort=True`; the service applies events in (event_time, event_id) order per entity either way (late
events are placed in order, see foundation.serving.state.base).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from foundation.data.events import open_dataset
from foundation.data.schema import DataSchema

TOKEN_ENV = "FOUNDATION_API_TOKEN"


def check_loopback(url: str) -> str:
    """Return the URL if its host resolves only to loopback addresses; raise ValueError otherwise.

    Args:
        url: e.g. http://127.0.0.1:8000.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {url!r}: expected http://<loopback host>:<port>")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        raise ValueError(f"url {url!r}: cannot resolve host {parts.hostname!r} ({err})") from None
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    outside = sorted(str(a) for a in addresses if not a.is_loopback)
    if outside:
        raise ValueError(f"url {url!r}: host {parts.hostname!r} resolves to non-loopback {outside}; replay and "
                         "load tests only target a service on this machine (127.0.0.1, ::1, localhost)")
    return url.rstrip("/")


def auth_headers(token: str | None = None) -> dict[str, str]:
    """Bearer header from `token` or the FOUNDATION_API_TOKEN environment variable (none when unset)."""
    token = token or os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def json_value(value: Any) -> Any:
    """A raw arrow value as JSON: timestamps as ISO-8601 (UTC, naive), NaN as null, decimals as floats."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds") if value.tzinfo is None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value


def raw_batches(schema: DataSchema, path: str | None = None, batch_size: int = 100, sort: bool = False,
                limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Raw events as JSON-ready dicts (raw column names), `batch_size` at a time.

    Args:
        schema: the data schema (its source, or `path`, is read; only its raw columns are sent).
        path: events file/folder/glob overriding `schema.source.path`.
        batch_size: events per yielded list.
        sort: sort by the timestamp column first (reads the whole file into memory).
        limit: stop after this many events.
    """
    source = schema.source if path is None else type(schema.source)(path, schema.source.format,
                                                                      schema.source.delimiter,
                                                                      schema.source.null_values)
    dataset = open_dataset(source)
    schema.check_columns(dataset.schema.names)
    columns = schema.raw_columns
    if sort:
        table = dataset.to_table(columns=columns)
        table = table.take(pc.sort_indices(table, [(schema.timestamp.column, "ascending")]))
        batches: Iterator[pa.RecordBatch] = iter(table.to_batches(max_chunksize=batch_size))
    else:
        batches = dataset.to_batches(columns=columns, batch_size=batch_size)
    remaining = math.inf if limit is None else limit
    for batch in batches:
        for start in range(0, batch.num_rows, batch_size):
            part = batch.slice(start, int(min(batch_size, remaining)))
            if part.num_rows == 0:
                return
            remaining -= part.num_rows
            # JSON needs one dict per event; this is the client side of an HTTP API, not a data path.
            yield [{k: json_value(v) for k, v in row.items()} for row in part.to_pylist()]


@dataclass
class ReplayStats:
    """What a replay did: events sent, acknowledged (applied + duplicates), rejected (4xx), failed
    requests (connection errors, 5xx), and the wall time."""

    sent: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed_requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def replay(
    url: str,
    schema: DataSchema,
    path: str | None = None,
    rate: float = 1000.0,
    batch_size: int = 100,
    max_events: int = 100_000,
    max_seconds: float = 600.0,
    sort: bool = False,
    token: str | None = None,
    on_ack: Callable[[list[str]], None] | None = None,
    stop_on_error: bool = True,
    progress: bool = True,
) -> ReplayStats:
    """Send the events of a file to POST <url>/v1/events, at most `rate` events per second.

    Args:
        url: service base URL; must be loopback.
        schema: the data schema (raw columns and source).
        path: events file/folder/glob (default: the schema's source).
        rate: events per second (a token bucket of one batch).
        batch_size: events per request (<= the service's max_batch_events).
        max_events: stop after this many events.
        max_seconds: stop after this much time.
        sort: sort by event time before sending.
        token: bearer token (default: $FOUNDATION_API_TOKEN).
        on_ack: called with the event ids of each acknowledged batch (applied or duplicate), after the
            service answered 200: these events are durable in the service's state.
        stop_on_error: stop at the first failed request (connection error, 5xx) instead of counting it.
        progress: tqdm progress bar.
    Returns:
        ReplayStats.
    """
    base = check_loopback(url)
    if rate <= 0 or batch_size < 1 or max_events < 1 or max_seconds <= 0:
        raise ValueError("rate, batch_size, max_events and max_seconds must be positive")
    stats = ReplayStats()
    total = max_events
    if path is None and schema.source.format == "parquet":
        total = min(max_events, open_dataset(schema.source).count_rows())  # parquet footers: free
    start = time.monotonic()
    deadline = start + max_seconds
    next_send = start  # earliest time the next batch may go out (token bucket of one batch)
    with httpx.Client(base_url=base, headers=auth_headers(token), timeout=30.0) as client, \
            tqdm(total=total, unit="ev", desc="replay", disable=not progress) as bar:
        for rows in raw_batches(schema, path, batch_size, sort, max_events):
            now = time.monotonic()
            if max(now, next_send) >= deadline:
                stats.errors.append(f"stopped after max_seconds={max_seconds}")
                break
            if next_send > now:
                time.sleep(next_send - now)
            next_send = time.monotonic() + len(rows) / rate
            stats.sent += len(rows)
            try:
                response = client.post("/v1/events", json=rows)
            except httpx.HTTPError as err:
                stats.failed_requests += 1
                stats.errors.append(f"request failed: {type(err).__name__}: {err}")
                if stop_on_error:
                    break
                continue
            if response.status_code == 200:
                body = response.json()
                stats.applied += body["applied"]
                stats.duplicates += body["duplicates"]
                if on_ack is not None:
                    on_ack([r["event_id"] for r in body["results"]])
            elif 400 <= response.status_code < 500:
                stats.rejected += len(rows)
                stats.errors.append(f"HTTP {response.status_code}: {response.text[:500]}")
            else:
                stats.failed_requests += 1
                stats.errors.append(f"HTTP {response.status_code}: {response.text[:500]}")
                if stop_on_error:
                    break
            bar.update(len(rows))
    stats.seconds = time.monotonic() - start
    return stats


def replay_from_config(cfg: Any) -> ReplayStats:
    """scripts/replay.py: the `replay` section of conf/serve.yaml; prints a one-line summary."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    r = cfg.replay
    stats = replay(str(r.url), DataSchema.from_config(cfg.data), path=r.get("path"), rate=float(r.rate),
                   batch_size=int(r.batch_size), max_events=int(r.max_events), max_seconds=float(r.max_seconds),
                   sort=bool(r.sort))
    print(f"replay: sent {stats.sent} events in {stats.seconds:.1f} s ({stats.events_per_second:.0f}/s): "
          f"applied {stats.applied}, duplicates {stats.duplicates}, rejected {stats.rejected}, "
          f"failed requests {stats.failed_requests}", flush=True)
    for line in stats.errors[:10]:
        print(f"  {line}", flush=True)
    if stats.failed_requests:
        raise RuntimeError(f"{stats.failed_requests} request(s) failed; the first: {stats.errors[0]}")
    return stats
