"""`run_suite(cfg)`: every benchmark section on this machine -> benchmarks/results.json and results.md.

Sections (conf/benchmark.yaml `sections`):
1. `data`: generation, read, validation, sequences, tokenizer fit/encode events/s on a fresh synthetic world.
2. `training`: pretraining events/s, MFU and data share of each preset x encoder.
3. `lifestream`: pytorch-lifestream CoLES against ours (contrastive): events/s and downstream fraud PR-AUC.
4. `embeddings`: entity embedding export, entities/s.
5. `serving`: /v1/score p50/p99 at 1 and 16 clients, /v1/events events/s, of the real service.

Each section records its own date, wall time, load average before and after, and its error (with the end of
the traceback) instead of numbers when it fails; the others still run. results.json also holds the machine
facts and the resolved config.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from foundation.benchmark.context import BenchContext
from foundation.benchmark.report import error_entry, render_markdown

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_probe_ms(iterations: int = 2_000_000) -> float:
    """Milliseconds of a fixed single-threaded pure-Python loop: the CPU's speed right now.

    On a shared or throttled VM the same code runs at different speeds from minute to minute (on this project's
    2-core machine the same loop took 0.66-1.24 s in back-to-back runs), so each section records it at its
    start and end: sections whose probes differ ran on CPUs of different speed and are not comparable as is.
    """
    start, total = time.perf_counter(), 0
    for i in range(iterations):
        total += i
    return round((time.perf_counter() - start) * 1000, 1)


def machine_facts() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, memory, library versions, torch threads, commit."""
    import lightgbm
    import numpy
    import pyarrow

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next((line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), None)
        memory_gb = round(int(total.split()[1]) / 2**20, 1) if total else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu_model": cpu, "cores": os.cpu_count(),
            "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory_gb": memory_gb, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "lightgbm": lightgbm.__version__, "git_commit": commit,
            "load_avg": load_average()}


# ---------------------------------------------------------------- sections


def section_data(ctx: BenchContext) -> dict[str, Any]:
    from foundation.benchmark.data import bench_data_stages

    d = ctx.cfg.data
    work = ctx.work_dir / f"data-{int(d.n_events)}"
    if work.exists():
        shutil.rmtree(work)  # a fresh world: generation is one of the measured stages
    try:
        out = bench_data_stages(int(d.n_events), int(d.n_customers), work, seed=int(d.seed))
    finally:
        if not d.keep and work.exists():
            shutil.rmtree(work)
    return {"settings": {"n_events": int(d.n_events), "n_customers": int(d.n_customers)}, **out}


def section_training(ctx: BenchContext) -> dict[str, Any]:
    from foundation.benchmark.training import bench_training, matmul_peak_flops

    t = ctx.cfg.training
    tokenizer = ctx.prepared.tokenizer
    encoded = ctx.encoded(str(t.entity_type))
    peak = matmul_peak_flops()
    runs = []
    for preset in t.presets:
        for encoder in t.encoders:
            started = load_average()
            try:
                run = bench_training(encoded, tokenizer.field_specs(), list(tokenizer.entity_types), str(preset),
                                     str(encoder), batch_size=int(t.batch_size), max_len=int(t.max_len),
                                     steps=int(t.steps), warmup=int(t.warmup), peak_flops=peak)
                runs.append({**run, "load_avg": [started[0], load_average()[0]]})
            except Exception as err:  # one configuration failing does not hide the others
                runs.append({"preset": str(preset), "encoder": str(encoder), **error_entry(err)})
            print(f"training {preset}/{encoder}: {runs[-1].get('events_per_s', runs[-1].get('error'))} events/s",
                  flush=True)
    settings = {"entity_type": str(t.entity_type), "batch_size": int(t.batch_size), "max_len": int(t.max_len),
                "steps": int(t.steps), "warmup": int(t.warmup), "peak_gflops": round(peak / 1e9, 1),
                "entities": encoded.num_rows, "prepared": str(ctx.prepared.root)}
    return {"settings": settings, "runs": runs}


def section_lifestream(ctx: BenchContext) -> dict[str, Any]:
    from foundation.benchmark.comparison import bench_comparison

    lcfg = OmegaConf.to_container(ctx.cfg.lifestream, resolve=True)
    return bench_comparison(ctx.prepared, lcfg, ctx.work_dir / "lifestream", load=lambda: load_average()[0])


def section_embeddings(ctx: BenchContext) -> dict[str, Any]:
    from foundation.benchmark.export import bench_export

    ecfg = OmegaConf.to_container(ctx.cfg.embeddings, resolve=True)
    return {"preset": str(ctx.cfg.checkpoint.preset), **bench_export(ctx.pretrained_run, ecfg, ctx.work_dir / "embeddings")}


def section_serving(ctx: BenchContext) -> dict[str, Any]:
    from foundation.benchmark.service import bench_serving

    scfg = OmegaConf.to_container(ctx.cfg.serving, resolve=True)
    return {"checkpoint": str(ctx.pretrained_run), "finetune_run": str(ctx.finetune_run),
            **bench_serving(ctx.pretrained_run, ctx.finetune_run, ctx.root, scfg, ctx.work_dir / "serving")}


SECTIONS: dict[str, Callable[[BenchContext], dict[str, Any]]] = {
    "data": section_data, "training": section_training, "lifestream": section_lifestream,
    "embeddings": section_embeddings, "serving": section_serving,
}


# ---------------------------------------------------------------- the suite


def has_error(node: Any) -> bool:
    """Whether any nested entry of a section's results records an error."""
    if isinstance(node, dict):
        return "error" in node or any(has_error(v) for v in node.values())
    if isinstance(node, list):
        return any(has_error(v) for v in node)
    return False


NEEDS_PREPARED = ("training", "lifestream", "embeddings", "serving")


def prepare_data(ctx: BenchContext) -> dict[str, Any]:
    """Prepare (or find cached) the default world before the sections that read it, so its time is not
    charged to the first of them."""
    start = time.perf_counter()
    try:
        root = str(ctx.prepared.root)
    except Exception as err:  # the sections that need it record the error again themselves
        return {"seconds": round(time.perf_counter() - start, 1), **error_entry(err)}
    return {"root": root, "seconds": round(time.perf_counter() - start, 1)}


def run_section(name: str, ctx: BenchContext, busy_load_per_core: float) -> dict[str, Any]:
    """Run one section; its results, or its error, with date, wall time and load averages."""
    entry: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "load_avg_start": load_average(), "cpu_probe_ms": [cpu_probe_ms()]}
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"\n=== benchmark section: {name} ===", flush=True)
    try:
        entry["results"] = SECTIONS[name](ctx)
        entry["status"] = "partial" if has_error(entry["results"]) else "ok"
    except Exception as err:  # recorded, and the next section runs
        log.exception("benchmark section %s failed", name)
        entry.update(status="error", **error_entry(err))
    entry["wall_s"] = round(time.perf_counter() - start, 1)
    # CPU seconds of this process (all its threads; not its subprocesses): wall >> cpu / cores means the
    # section waited for cores other jobs held.
    entry["cpu_s"] = round(time.process_time() - cpu_start, 1)
    entry["load_avg_end"] = load_average()
    entry["cpu_probe_ms"].append(cpu_probe_ms())
    cores = os.cpu_count() or 1
    # The 5-minute average covers a typical section; either average above the bar marks it as distorted.
    entry["distorted"] = max(entry["load_avg_start"][1], entry["load_avg_end"][1]) / cores > busy_load_per_core
    print(f"=== {name}: {entry['status']} in {entry['wall_s']} s (load {entry['load_avg_end'][0]}) ===", flush=True)
    return entry


def run_suite(cfg: DictConfig) -> Path:
    """Run the configured sections, write `<out_dir>/results.json` and `results.md`, print the table.

    Args:
        cfg: the composed conf/benchmark.yaml.
    Returns:
        The path of results.md (printed last by scripts/benchmark.py).
    """
    unknown = [s for s in cfg.sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; valid: {list(SECTIONS)}")
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    out_dir = Path(str(cfg.out_dir)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    results: dict[str, Any] = {"sections": {}}
    if cfg.get("merge") and json_path.exists():
        results = json.loads(json_path.read_text())
        results.setdefault("sections", {})
    ctx = BenchContext(cfg)
    started = time.perf_counter()
    results.update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), machine=machine_facts(),
                   config=OmegaConf.to_container(cfg, resolve=True))
    if any(name in NEEDS_PREPARED for name in cfg.sections):
        results["prepared"] = prepare_data(ctx)
    for name in cfg.sections:
        results["sections"][name] = run_section(str(name), ctx, float(cfg.busy_load_per_core))
        results["sections"] = {k: results["sections"][k] for k in SECTIONS if k in results["sections"]}
        # Written after every section: a later crash or interrupt keeps what was measured.
        json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        md_path.write_text(render_markdown(results))
    results["suite_wall_s"] = round(time.perf_counter() - started, 1)
    results["last_run"] = [str(name) for name in cfg.sections]
    results["machine"]["load_avg_end"] = load_average()
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(render_markdown(results))
    print("\n" + md_path.read_text(), flush=True)
    print(f"results: {json_path} (suite {results['suite_wall_s']} s)", flush=True)
    return md_path
