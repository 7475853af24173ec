"""Serving benchmark: the real service (`scripts/serve.py`) in a subprocess on a free loopback port, loaded with
the histories of the busiest customers, then /v1/score latency (p50/p99/p99.9) and throughput at each client count
of `serving.clients`, with the share of a request spent in HTTP, feature building, model and head (the service's
own profile, see foundation.serving.profile), and /v1/events throughput, measured by `foundation.serving.loadtest`. Every phase is bounded in requests and seconds; the service is
stopped by its PID (SIGTERM, then SIGKILL after a grace period) whatever happens.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foundation.data.events import open_dataset
from foundation.data.schema import DataSchema
from foundation.serving.loadtest import attempts_from_file, measure_ingest, measure_scores, profile_table
from foundation.serving.replay import replay

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def busiest_customers_file(schema: DataSchema, n_customers: int, out_path: Path) -> dict[str, Any]:
    """The raw events of the `n_customers` customers with the most events, time-ordered, as one parquet file.

    Returns:
        {"path", "customers", "events", "min_events", "max_events"} (events per customer).
    """
    dataset = open_dataset(schema.source)
    key = schema.entities["customer"].column
    counts = pc.value_counts(dataset.to_table(columns=[key]).column(key).combine_chunks().drop_null())
    values, n = counts.field("values"), counts.field("counts").to_numpy()
    top = (-n).argsort(kind="stable")[:n_customers]
    chosen = values.take(pa.array(top))
    table = dataset.to_table(columns=schema.raw_columns, filter=pc.field(key).isin(chosen))
    table = table.sort_by([(schema.timestamp.column, "ascending")])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_path)
    return {"path": str(out_path), "customers": len(chosen), "events": table.num_rows,
            "min_events": int(n[top].min()), "max_events": int(n[top].max())}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(pid: int, max_seconds: float, busy_share: float = 0.1, window: float = 1.0) -> float:
    """Wait until the process uses under `busy_share` of one core over `window` seconds (its background state
    warmer has caught up with the ingested entities), at most `max_seconds`. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_seconds:
        before = _cpu_seconds(pid)
        time.sleep(window)
        if (_cpu_seconds(pid) - before) / window < busy_share:
            break
    return time.monotonic() - start


@contextmanager
def running_service(overrides: Sequence[str], port: int, log_path: Path, startup_timeout: float
                    ) -> Iterator[tuple[str, int]]:
    """Start scripts/serve.py with Hydra `overrides` on 127.0.0.1:`port`; yield (url, pid) once /healthz answers.

    Raises:
        RuntimeError: the service exited or did not answer within `startup_timeout` (with its log tail).
    """
    cmd = [sys.executable, str(ROOT / "scripts" / "serve.py"), *overrides, "server.host=127.0.0.1",
           f"server.port={port}"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {proc.returncode} during start-up; log "
                                   f"{log_path}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not answer /healthz within {startup_timeout:.0f} s; log "
                                   f"{log_path}:\n{_tail(log_path)}")
            time.sleep(1.0)
        yield url, proc.pid
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process by its PID (uvicorn shuts down gracefully), SIGKILL it after `grace` seconds."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:]) if path.exists() else ""


def bench_serving(checkpoint: Path, finetune_run: Path, root: Path, scfg: Mapping[str, Any], work_dir: Path
                  ) -> dict[str, Any]:
    """Section 5: start the service on a scratch state, load histories, measure scores and ingestion.

    Args:
        checkpoint: the pretraining run to serve; finetune_run: the run holding its heads.
        root: the project root (`paths.root_dir` of the service).
        scfg: the `serving` block of conf/benchmark.yaml.
        work_dir: state, history file and service log go here.
    Returns:
        {"history": ..., "history_ingest": ..., "score": [per clients], "ingest": [per batch size], ...}.
    """
    from foundation.pointintime import PretrainedRun

    run = PretrainedRun.load(checkpoint)
    schema = DataSchema.from_config(run.data_config().data)
    state = work_dir / f"state-{os.getpid()}-{int(time.time())}.sqlite"
    history = busiest_customers_file(schema, int(scfg["customers"]), work_dir / "history.parquet")
    port = free_port()
    overrides = [f"checkpoint={checkpoint}", f"finetune_run={finetune_run}", f"paths.root_dir={root}",
                 f"state.path={state}", f"hydra.run.dir={work_dir / 'hydra'}", "server.log_level=warning",
                 *[str(o) for o in scfg.get("overrides") or []]]
    max_s = float(scfg["max_seconds"])
    out: dict[str, Any] = {"history": history, "model_max_position": int(run.model.config.max_position),
                           "hidden_size": int(run.model.config.hidden_size), "port": port}
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        with running_service(overrides, port, work_dir / "service.log", float(scfg["startup_timeout_s"])) as (url, pid):
            out["startup_s"] = round(time.perf_counter() - started, 1)
            stats = replay(url, schema, path=history["path"], rate=1e9, batch_size=int(scfg["history_batch"]),
                           max_events=history["events"], max_seconds=max_s * 4, progress=False)
            if stats.failed_requests or stats.rejected:
                raise RuntimeError(f"loading the histories failed: {stats.errors[:3]}")
            out["history_ingest"] = {"events": stats.sent, "applied": stats.applied, "seconds": round(stats.seconds, 2),
                                     "events_per_second": round(stats.events_per_second, 1),
                                     "batch_size": int(scfg["history_batch"])}
            out["settle_s"] = round(wait_until_quiet(pid, max_s), 1)
            attempts = attempts_from_file(schema, history["path"], int(scfg["attempts"]))
            measure_scores(url, attempts, 1, min(len(attempts), int(scfg["warmup"])), max_s)  # fills caches
            out["score"], reports = [], []
            for clients in scfg["clients"]:
                report = measure_scores(url, attempts, int(clients), int(scfg["requests"]), max_s)
                reports.append(report)
                out["score"].append({k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(report).items()})
            out["score_table"] = profile_table(reports)  # markdown: percentiles, req/s, share per stage
            log.info("serving profile:\n%s", out["score_table"])
            out["ingest"] = []
            for batch in scfg["ingest_batches"]:
                settle = wait_until_quiet(pid, max_s)  # the warmer of the previous phase has caught up
                found = measure_ingest(url, schema, history["path"], int(scfg["ingest_events"]), int(batch), max_s)
                out["ingest"].append({"batch_size": int(batch), "settle_s": round(settle, 1),
                                      **{k: round(v, 1) for k, v in found.items()}})
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
    return out
