"""The scale run (scripts/scale_run.py, foundation/benchmark/scale.py): peak memory of a process tree, config
checks, and a tiny end-to-end run of every stage through the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from foundation.benchmark.process_memory import GIB, run_measured
from foundation.benchmark.scale import STAGES, run_scale, stage_commands, world_size

ROOT = Path(__file__).resolve().parents[1]

# A child that starts a grandchild holding ~300 MB, then holds ~100 MB itself while the grandchild lives.
_TREE = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "b = b'x' * (300 * 2**20); import time; time.sleep(1.5)"])
mine = b'x' * (100 * 2**20)  # written, so resident (a zeroed buffer may not be)
grandchild.wait()
"""


def compose_scale(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("scale", overrides=overrides)


def test_peak_rss_sums_the_whole_process_tree(tmp_path):
    run = run_measured([sys.executable, "-c", _TREE], tmp_path / "tree.log", interval=0.05)
    assert run.returncode == 0 and run.samples > 5
    # The largest single process is the grandchild (its VmHWM, sampled while it lives); the sampled sum holds
    # child and grandchild together.
    assert 0.29 * GIB < run.max_process_rss_bytes < 0.45 * GIB
    assert run.peak_tree_rss_bytes > run.max_process_rss_bytes + 0.08 * GIB
    assert run.peak_tree_anon_bytes > 0.38 * GIB  # the two buffers are heap, not file pages
    assert run.seconds >= 1.5


def test_a_large_parent_does_not_inflate_the_child_peak(tmp_path):
    # fork/vfork children inherit the parent's peak RSS until exec (wait4's ru_maxrss would report it): with a
    # ~600 MB parent (a test runner late in a suite), a small child must still measure small
    ballast = bytearray(600 * 2**20)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touched, so resident
    run = run_measured([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path / "small.log",
                       interval=0.05)
    assert run.returncode == 0 and 0 < run.max_process_rss_bytes < 0.2 * GIB
    del ballast


def test_failed_command_is_a_return_code(tmp_path):
    run = run_measured([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "x.log")
    assert run.returncode == 3
    assert (tmp_path / "x.log").read_text().strip() == "boom"


def test_world_size_and_stage_commands(tmp_path):
    cfg = compose_scale([f"paths.root_dir={tmp_path}", "n_events=50000000"])
    assert world_size(cfg) == {"n_events": 50_000_000, "n_customers": 500_000, "n_merchants": 50_000,
                               "n_issuers": 30}
    commands = stage_commands(cfg, tmp_path)
    assert list(commands) == list(STAGES) == list(cfg.stages)
    for argv in commands.values():  # every stage reads and writes the same world under the scratch root
        assert f"paths.root_dir={tmp_path}" in argv and "synthetic.n_customers=500000" in argv
    assert "trainer=ddp" in commands["pretrain_ddp"] and "trainer=ddp" not in commands["pretrain"]
    assert "backend=pyarrow" in commands["sequences_all"]
    spark = stage_commands(compose_scale([f"paths.root_dir={tmp_path}", "sequences_backend=spark"]), tmp_path)
    assert {"backend=spark", "spark.master='local[2]'", "prepared=true"} <= set(spark["sequences_pretrain"])
    assert {"backend=spark", "spark.master='local[2]'"} <= set(spark["validate"])


def test_bad_stage_or_a_root_inside_the_repository_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown \['train'\]"):
        run_scale(compose_scale([f"paths.root_dir={tmp_path}", "stages=[generate,train]"]))
    with pytest.raises(ValueError, match="outside the repository"):
        run_scale(compose_scale([f"paths.root_dir={ROOT}"]))


@pytest.mark.slow
def test_tiny_scale_run_measures_every_stage(tmp_path):
    """Every stage through scripts/scale_run.py on a 20k-event world, 2 pretraining steps, DDP included."""
    out = tmp_path / "bench"
    overrides = [f"paths.root_dir={tmp_path / 'scratch'}", "n_events=20000", "pretrain.steps=2",
                 "pretrain.batch_size=8", "pretrain.max_len=32", f"out_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package, also from a git worktree
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "scale_run.py"), *overrides], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert Path(done.stdout.rstrip().splitlines()[-1]) == out / "scale.md"
    result = json.loads((out / "scale.json").read_text())
    assert list(result["stages"]) == list(STAGES)
    for name, row in result["stages"].items():
        assert row["status"] == "ok", name
        assert row["seconds"] > 0 and row["events"] > 0 and row["events_per_s"] > 0, name
        assert row["peak_rss_gib"] > 0.05 and row["peak_tree_rss_gib"] > 0, name
    world = result["stages"]["generate"]["events"]
    assert 15_000 < world < 25_000 and result["stages"]["validate"]["events"] == world
    assert result["stages"]["pretrain"]["steps"] == 2
    # Two DDP processes hold two copies of torch: the tree sum sees both.
    assert result["stages"]["pretrain_ddp"]["peak_tree_rss_gib"] > result["stages"]["pretrain"]["max_process_rss_gib"]
    assert {"cpu", "cores", "ram_gib", "torch", "commit"} <= set(result["machine"])
    table = (out / "scale.md").read_text()
    assert "| stage | events | seconds | events/s | peak RSS GiB | of which anonymous | note |" in table
    assert all(f"| {name} |" in table for name in STAGES)
    assert any((tmp_path / "scratch" / "data" / "synthetic" / "events").glob("*.parquet"))  # the scratch root
