"""The scale run behind scripts/scale_run.py: the whole data path and a short pretraining on a synthetic world of
a chosen size, each stage in its own process through the real entry points, timed with the peak RSS of the
stage's process tree (`process_memory.run_measured`). Writes `<out_dir>/scale.json` and `scale.md`.

Stages, in order (each needs the ones before it):
    generate            scripts/generate_data.py: the synthetic world
    validate            read + validate the whole world (scripts/scale_stage.py validate)
    sequences_pretrain  scripts/build_sequences.py period=pretrain prepared=true (read, validate, build)
    sequences_all       scripts/build_sequences.py period=all prepared=true
    tokenizer           fit the tokenizer + encode the pretraining period (scripts/scale_stage.py tokenizer)
    pretrain            scripts/pretrain.py model=small for `pretrain.steps` steps
    pretrain_ddp        the same with trainer=ddp over 2 CPU processes
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from foundation.benchmark.process_memory import GIB, run_measured

REPO = Path(__file__).resolve().parents[2]
STAGES = ("generate", "validate", "sequences_pretrain", "sequences_all", "tokenizer", "pretrain", "pretrain_ddp")


def world_size(cfg: DictConfig) -> dict[str, int]:
    """Customers, merchants and issuers of a world of `cfg.n_events` events."""
    customers = max(int(cfg.n_events) // int(cfg.events_per_customer), 20)
    merchants = max(int(customers * float(cfg.merchants_per_customer)), 120)
    return {"n_events": int(cfg.n_events), "n_customers": customers, "n_merchants": merchants,
            "n_issuers": int(cfg.n_issuers)}


def world_overrides(cfg: DictConfig, root: Path) -> list[str]:
    """The overrides every stage gets, so all of them read and write the same world under `root`."""
    sizes = [f"synthetic.{key}={value}" for key, value in world_size(cfg).items()]
    return [f"paths.root_dir={root}", *sizes, *[str(o) for o in cfg.world_overrides]]


def stage_commands(cfg: DictConfig, root: Path) -> dict[str, list[str]]:
    """argv of every stage (run from the repository root)."""
    world, py = world_overrides(cfg, root), sys.executable
    results = root / "scale_logs"
    backend = [f"backend={cfg.sequences_backend}"]
    if str(cfg.sequences_backend) == "spark":
        backend.append(f"spark.master='{cfg.spark_master}'")  # quoted: Hydra reads `[` as a list
    p = cfg.pretrain
    train = ["model=small", "objective=next_event", "logger=csv", "trainer.max_epochs=1",
             f"datamodule.batches_per_epoch={int(p.steps)}", f"datamodule.batch_size={int(p.batch_size)}",
             "datamodule.val_batches=2", f"datamodule.max_len={int(p.max_len)}", "trainer.log_every_n_steps=1",
             "trainer.enable_progress_bar=false", *[str(o) for o in p.overrides]]
    return {
        "generate": [py, "scripts/generate_data.py", *world],
        "validate": [py, "scripts/scale_stage.py", "validate", str(results / "validate.json"), *world,
                     *backend],
        "sequences_pretrain": [py, "scripts/build_sequences.py", *world, "period=pretrain", "prepared=true",
                               f"entities_per_shard={int(cfg.entities_per_shard)}", *backend],
        "sequences_all": [py, "scripts/build_sequences.py", *world, "period=all", "prepared=true",
                          f"entities_per_shard={int(cfg.entities_per_shard)}", *backend],
        "tokenizer": [py, "scripts/scale_stage.py", "tokenizer", str(results / "tokenizer.json"),
                      *world],
        "pretrain": [py, "scripts/pretrain.py", *world, *train, "run_name=scale-1proc"],
        "pretrain_ddp": [py, "scripts/pretrain.py", *world, *train, "trainer=ddp", "trainer.devices=2",
                         "run_name=scale-ddp"],
    }


def machine_facts() -> dict[str, Any]:
    """CPU, cores, RAM, torch version and the commit (with `-dirty` when the tree has changes)."""
    cpu = platform.processor() or platform.machine()
    ram = 0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram = int(line.split()[1]) * 1024
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram / GIB, 1), "torch": version("torch"),
            "python": platform.python_version(), "commit": commit + ("-dirty" if dirty else "")}


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _median_step_rate(metrics_csv: Path) -> tuple[float, int]:
    """Median `train/events_per_s` over the logged training steps, and how many steps were logged."""
    if not metrics_csv.exists():
        return 0.0, 0
    with open(metrics_csv, newline="") as f:
        rates = [float(row["train/events_per_s"]) for row in csv.DictReader(f) if row.get("train/events_per_s")]
    return (statistics.median(rates) if rates else 0.0), len(rates)


def stage_counts(stage: str, cfg: DictConfig, root: Path) -> dict[str, Any]:
    """events (and a note) of a finished stage, read from what it wrote."""
    from foundation.data.synthetic import read_manifest

    logs, size = root / "scale_logs", world_size(cfg)
    manifest = read_manifest(root / "data" / "synthetic" / "events") or {}
    world = int(manifest.get("summary", {}).get("n_events", 0))
    if stage == "generate":
        return {"events": world, "note": f"{size['n_customers']:,} customers, {size['n_merchants']:,} merchants, "
                                         f"{size['n_issuers']} issuers"}
    if stage == "validate":
        counts = json.loads((logs / "validate.json").read_text())
        return {"events": counts["input_rows"], "note": f"{cfg.sequences_backend}: read + validate the whole world, "
                                                        f"{counts['quarantined']:,} quarantined"}
    if stage.startswith("sequences_"):
        period = stage.split("_", 1)[1]
        return {"events": world, "note": f"{cfg.sequences_backend}: read + validate + sequences of period {period}, "
                                         "every entity type"}
    tokenizer = json.loads((logs / "tokenizer.json").read_text())
    if stage == "tokenizer":
        return {"events": tokenizer["elements"], "note": "fit + encode the pretrain period (events: sequence "
                                                         "elements, all entity types)"}
    p = cfg.pretrain
    run = "scale-ddp" if stage == "pretrain_ddp" else "scale-1proc"
    rate, steps = _median_step_rate(root / "checkpoints" / run / "csv" / "metrics.csv")
    procs = "trainer=ddp, 2 CPU processes; " if stage == "pretrain_ddp" else ""
    return {"events": tokenizer["elements"], "events_per_s": round(rate), "steps": steps,
            "note": f"{procs}small, {int(p.steps)} steps x batch {int(p.batch_size)}, windows of {int(p.max_len)}; "
                    f"events: the pretrain period's elements, events/s: median step throughput"}


def render_markdown(result: dict[str, Any]) -> str:
    """scale.md: the machine line and one table row per stage."""
    m, s = result["machine"], result["settings"]
    lines = [f"## Scale run: {s['n_events']:,}-event synthetic world", "",
             f"{result['date']}; {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, torch {m['torch']}, "
             f"commit {m['commit']}; load average {_load(result['load_avg_start'])} at the start, "
             f"{_load(result['load_avg_end'])} at the end; {result['wall_s']:.0f} s in all, "
             f"{result['disk_gib']:.2f} GiB on disk under the scratch root.", "",
             "| stage | events | seconds | events/s | peak RSS GiB | of which anonymous | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, row in result["stages"].items():
        if row["status"] != "ok":
            lines.append(f"| {name} | | {row['seconds']:.1f} | | {row['peak_rss_gib']:.2f} | | "
                         f"failed (exit {row['returncode']}), see {row['log']} |")
            continue
        lines.append(f"| {name} | {row['events']:,} | {row['seconds']:.1f} | {row['events_per_s']:,} | "
                     f"{row['peak_rss_gib']:.2f} | {row['peak_tree_anon_gib']:.2f} | {row['note']} |")
    lines += ["", "Peak RSS: the largest sum of RSS over the stage's process and its children, sampled every "
              f"{s['sample_interval']} s (pages shared between processes counted in each), or the kernel's peak of "
              "its largest single process when that is higher. Anonymous: the largest sampled sum of RSS less file-backed "
              "pages (memory-mapped Arrow files, libraries), which the kernel can drop under pressure. Each stage is a separate process: its seconds "
              "include the interpreter and imports.", ""]
    return "\n".join(lines)


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _scratch_root(cfg: DictConfig) -> Path:
    root = Path(str(cfg.paths.root_dir)).resolve()
    if root == REPO or REPO in root.parents:
        raise ValueError(f"paths.root_dir={root}: pass a scratch root outside the repository "
                         "(e.g. paths.root_dir=/tmp/scale1m); the run writes a whole world there")
    return root


def _fresh_outputs(root: Path) -> None:
    """Before a new world is generated: drop the prepared data and runs of an earlier scale run under `root`,
    so every stage does its full work and the disk figure is this run's."""
    shutil.rmtree(root / "data" / "synthetic" / "prepared", ignore_errors=True)
    for run in ("scale-1proc", "scale-ddp"):
        shutil.rmtree(root / "checkpoints" / run, ignore_errors=True)


def run_scale(cfg: DictConfig) -> Path:
    """Run the stages of `cfg.stages` in order, each measured; write scale.json and scale.md.

    Args:
        cfg: composed conf/scale.yaml.
    Returns:
        The path of scale.md.
    Raises:
        ValueError: an unknown stage or a root inside the repository.
        RuntimeError: a stage failed (the files are written first, with the failure and its log).
    """
    stages = [str(s) for s in cfg.stages]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages: unknown {unknown}; valid: {list(STAGES)}")
    if not cfg.pretrain.ddp:
        stages = [s for s in stages if s != "pretrain_ddp"]
    root = _scratch_root(cfg)
    out_dir = Path(str(cfg.out_dir)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if "generate" in stages:
        _fresh_outputs(root)
    commands = stage_commands(cfg, root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROJECT_ROOT": str(root), "WANDB_MODE": "disabled"}
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_facts(),
        "settings": {**world_size(cfg), "sequences_backend": str(cfg.sequences_backend),
                     "entities_per_shard": int(cfg.entities_per_shard), **OmegaConf.to_container(cfg.pretrain, resolve=True),
                     "sample_interval": float(cfg.sample_interval), "root": str(root)},
        "load_avg_start": list(os.getloadavg()), "stages": {}}
    began, failed = time.perf_counter(), None
    for stage in stages:
        print(f"[scale] {stage}: {' '.join(commands[stage][1:])}", flush=True)
        load = list(os.getloadavg())
        log = root / "scale_logs" / f"{stage}.log"
        run = run_measured(commands[stage], log, cwd=REPO, env=env, interval=float(cfg.sample_interval))
        row: dict[str, Any] = {
            "status": "ok" if run.returncode == 0 else "failed", "returncode": run.returncode,
            "seconds": round(run.seconds, 2), "cpu_seconds": round(run.cpu_seconds, 1),
            "peak_rss_gib": round(max(run.peak_tree_rss_bytes, run.max_process_rss_bytes) / GIB, 3),
            "peak_tree_rss_gib": round(run.peak_tree_rss_bytes / GIB, 3),
            "peak_tree_anon_gib": round(run.peak_tree_anon_bytes / GIB, 3),
            "max_process_rss_gib": round(run.max_process_rss_bytes / GIB, 3), "rss_samples": run.samples,
            "load_avg_start": load, "load_avg_end": list(os.getloadavg()), "log": str(log),
            "command": commands[stage][1:]}
        if run.returncode == 0:
            row.update(stage_counts(stage, cfg, root))
            row.setdefault("events_per_s", round(row["events"] / max(run.seconds, 1e-9)))
        row["disk_gib_after"] = round(folder_bytes(root) / GIB, 3)
        result["stages"][stage] = row
        print(f"[scale] {stage}: {row['status']} in {run.seconds:.1f} s, peak RSS {row['peak_rss_gib']:.2f} GiB"
              + (f", {row['events']:,} events, {row['events_per_s']:,} events/s" if run.returncode == 0 else
                 f" (exit {run.returncode}, log {log})"), flush=True)
        if run.returncode != 0:
            failed = stage
            break
    result.update(wall_s=round(time.perf_counter() - began, 1), load_avg_end=list(os.getloadavg()),
                  disk_gib=round(folder_bytes(root) / GIB, 3))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    md = out_dir / "scale.md"
    md.write_text(render_markdown(result))
    if failed:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"stage {failed} failed (exit {result['stages'][failed]['returncode']}); results so far "
                           f"in {md}; last lines of {log}:\n" + "\n".join(tail))
    return md
