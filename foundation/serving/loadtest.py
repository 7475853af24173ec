"""Load test of a running service on this machine: /v1/score latency and /v1/events throughput.

    python scripts/loadtest.py loadtest.requests=500     (Hydra, conf/serve.yaml)

- Scoring: charge attempts built from the events file (outcome fields and event ids removed, so nothing is
  committed; time set to now, so they follow every ingested event: the live case), sent by 1, 4 and 16
  concurrent clients; client-side p50 / p99 / p99.9 / mean latency and requests/s, and where the mean goes
  (a profile from the service's /metrics scraped before and after the phase: feature building, model passes,
  heads; the rest of the client's latency is HTTP, JSON and the micro-batch queue).
- Ingestion: batches of events whose event and entity ids get a unique `loadtest-<run>-` prefix, so they
  form new entities and never touch the history of real ones (they do add rows to the state: point the
  service at a scratch state). Reports sustained events/s.

Loopback targets only (see `replay.check_loopback`); every phase is bounded in requests and seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from foundation.data.schema import DataSchema
from foundation.serving.replay import auth_headers, check_loopback, raw_batches
from foundation.serving.schemas import EventParser


@dataclass
class LatencyReport:
    """Client-side latency of one phase, in milliseconds."""

    clients: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_second: float
    p999_ms: float = float("nan")
    profile_ms: dict[str, float] | None = None  # mean ms per request: http, features, model, head (None: no
    # profile in the service's /metrics)


def score_profile(client: httpx.Client) -> tuple[dict[str, float], float] | None:
    """The service's cumulative scoring seconds per stage and requests scored (foundation.serving.profile)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    if response.status_code != 200:
        return None
    seconds: dict[str, float] = {}
    requests = None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "foundation_score_stage_seconds_total":
                seconds[sample.labels["stage"]] = sample.value
            elif sample.name == "foundation_score_profiled_requests_total":
                requests = sample.value
    return (seconds, requests) if seconds and requests is not None else None


def profile_ms(before: tuple[dict[str, float], float] | None, after: tuple[dict[str, float], float] | None,
               mean_ms: float) -> dict[str, float] | None:
    """Mean ms per request in each stage between two `score_profile` scrapes; `http` is the rest of the
    client's mean latency (HTTP, JSON, queueing)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    n = after[1] - before[1]
    stages = {stage: 1000.0 * (after[0][stage] - before[0].get(stage, 0.0)) / n for stage in after[0]}
    return {"http": max(mean_ms - sum(stages.values()), 0.0), **stages}


def profile_table(reports: list[LatencyReport]) -> str:
    """Markdown: latency percentiles, throughput, and the share of a request in each stage, per client count."""
    lines = ["| clients | p50 ms | p99 ms | p99.9 ms | req/s | HTTP+queue | features | model | head |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        shares = ["n/a"] * 4
        if r.profile_ms:
            total = sum(r.profile_ms.values()) or 1.0
            shares = [f"{100 * r.profile_ms.get(k, 0.0) / total:.0f}%" for k in ("http", "features", "model", "head")]
        lines.append(f"| {r.clients} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p999_ms:.2f} | "
                     f"{r.requests_per_second:.0f} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


def attempts_from_file(schema: DataSchema, path: str | None, n: int, at_ms: int | None = None) -> list[dict[str, Any]]:
    """Up to n charge attempts (raw JSON) from the events file: outcome fields, labels and event id dropped,
    and the time set to `at_ms` (default: now), after every ingested event: the live case, in which each
    entity's state is the cached one after its last event."""
    drop = {f.column for f in schema.fields.values() if f.outcome} | set(schema.label_columns)
    drop.add(schema.event_id or "event_id")
    ts = schema.timestamp
    at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    stamp: Any = EventParser.format_time(at_ms)
    if ts.unit is not None:  # a numeric epoch in the schema's unit
        stamp = at_ms * {"s": 1e-3, "ms": 1, "us": 1_000, "ns": 1_000_000}[ts.unit]
    out: list[dict[str, Any]] = []
    for rows in raw_batches(schema, path, batch_size=min(n, 1000), limit=n):
        out.extend({**{k: v for k, v in row.items() if k not in drop}, ts.column: stamp} for row in rows)
    if not out:
        raise ValueError("the events file has no rows to build score requests from")
    return out


def measure_scores(url: str, attempts: list[dict[str, Any]], clients: int, requests: int, max_seconds: float,
                   token: str | None = None) -> LatencyReport:
    """`requests` POST /v1/score calls spread over `clients` threads (each its own keep-alive connection)."""
    base = check_loopback(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        own: list[float] = []
        with httpx.Client(base_url=base, headers=auth_headers(token), timeout=30.0) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                start = time.perf_counter()
                response = client.post("/v1/score", json=attempts[i % len(attempts)])
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    with lock:
                        errors[0] += 1
                    continue
                own.append(elapsed)
        with lock:
            latencies.extend(own)

    with httpx.Client(base_url=base, headers=auth_headers(token), timeout=30.0) as probe:
        before = score_profile(probe)
    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000.0
    if ms.size == 0:
        return LatencyReport(clients, 0, errors[0], float("nan"), float("nan"), float("nan"), 0.0)
    with httpx.Client(base_url=base, headers=auth_headers(token), timeout=30.0) as probe:
        profile = profile_ms(before, score_profile(probe), float(ms.mean()))
    return LatencyReport(clients, int(ms.size), errors[0], float(np.percentile(ms, 50)),
                         float(np.percentile(ms, 99)), float(ms.mean()), ms.size / wall,
                         float(np.percentile(ms, 99.9)), profile)


def measure_ingest(url: str, schema: DataSchema, path: str | None, n_events: int, batch_size: int,
                   max_seconds: float, token: str | None = None) -> dict[str, float]:
    """Sustained events/s of POST /v1/events with one client, on prefixed (new) event and entity ids."""
    base = check_loopback(url)
    prefix = f"loadtest-{uuid.uuid4().hex[:8]}-"
    renamed = [schema.event_id or "event_id"] + [e.column for e in schema.entities.values()]
    sent = applied = 0
    deadline = time.monotonic() + max_seconds
    start = time.perf_counter()
    with httpx.Client(base_url=base, headers=auth_headers(token), timeout=60.0) as client:
        for rows in raw_batches(schema, path, batch_size=batch_size, limit=n_events):
            if time.monotonic() >= deadline:
                break
            for row in rows:
                for column in renamed:
                    row[column] = f"{prefix}{row[column]}"
            response = client.post("/v1/events", json=rows)
            if response.status_code != 200:
                raise RuntimeError(f"/v1/events answered {response.status_code}: {response.text[:500]}")
            sent += len(rows)
            applied += response.json()["applied"]
    wall = time.perf_counter() - start
    return {"events": sent, "applied": applied, "seconds": wall, "events_per_second": sent / wall if wall else 0.0}


def run_loadtest(cfg: Any) -> dict[str, Any]:
    """The full load test from the `loadtest` section of conf/serve.yaml; prints and returns the report."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    lt = cfg.loadtest
    schema = DataSchema.from_config(cfg.data)
    url = str(lt.url)
    attempts = attempts_from_file(schema, lt.get("path"), int(lt.attempts))
    report: dict[str, Any] = {"url": url, "score": []}
    # Warm-up: the first requests fill the hidden-state cache and torch's allocator; not measured.
    measure_scores(url, attempts, 1, min(len(attempts), int(lt.warmup)), float(lt.max_seconds))
    for clients in lt.clients:
        result = measure_scores(url, attempts, int(clients), int(lt.requests), float(lt.max_seconds))
        report["score"].append(asdict(result))
        print(f"/v1/score  clients={clients:>2}  n={result.requests}  errors={result.errors}  "
              f"p50={result.p50_ms:.2f} ms  p99={result.p99_ms:.2f} ms  p99.9={result.p999_ms:.2f} ms  "
              f"mean={result.mean_ms:.2f} ms  {result.requests_per_second:.0f} req/s", flush=True)
    if report["score"]:
        print(profile_table([LatencyReport(**r) for r in report["score"]]), flush=True)
    if lt.ingest_events:
        ingest = measure_ingest(url, schema, lt.get("path"), int(lt.ingest_events), int(lt.batch_size),
                                float(lt.max_seconds))
        report["ingest"] = ingest
        print(f"/v1/events batch={lt.batch_size}  n={ingest['events']}  {ingest['events_per_second']:.0f} events/s",
              flush=True)
    if lt.get("out"):
        Path(str(lt.out)).parent.mkdir(parents=True, exist_ok=True)
        Path(str(lt.out)).write_text(json.dumps(report, indent=2, default=float))
        print(f"report: {lt.out}", flush=True)
    return report

