"""Runs as a user drives them from the shell: resume keeps the history and refuses overrides that would
change the run, corrupt checkpoints and unwritable folders are one-line errors, a --multirun sweep gives
each job its own wandb run, and the last line of stdout is the run folder even with the wandb logger."""

import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.lightning.conftest import ROOT, TINY, run_pretrain, script_env

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_last_line_is_the_run_folder_with_wandb(tiny_project):
    """`RUN=$(python scripts/pretrain.py ... | tail -n1)`: wandb's exit summary must come before it."""
    args = [sys.executable, str(ROOT / "scripts" / "pretrain.py"), *TINY, "logger=wandb", "run_name=lastline",
            "trainer.max_epochs=1"]
    shell = f'RUN=$({shlex.join(args)} 2>/dev/null | tail -n1); printf "%s" "$RUN"'
    result = subprocess.run(["bash", "-c", shell], cwd=ROOT, env=script_env(tiny_project), capture_output=True,
                            text=True, timeout=600)
    run_dir = tiny_project / "checkpoints" / "lastline"
    assert result.stdout == str(run_dir)
    assert len(offline_runs(run_dir)) == 1
    card = (run_dir / "hf" / "README.md").read_text()  # the model card written at export
    for part in ("## Data", "| pretrain | 2024-01-01", "| next_event | weight 1.0 |", "val/loss", "## Intended use"):
        assert part in card, part


def test_resume_keeps_history_and_refuses_a_conflicting_override(tiny_project):
    run_dir = tiny_project / "checkpoints" / "history"
    first = run_pretrain(tiny_project, ["model=gru", "logger=wandb", "run_name=history", "trainer.max_epochs=1"])
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr  # a new run prints none of the libraries' noise
    for noise in ("anonymous setting", "litlogger", "exists and is not empty", "FLOPs", "LeafSpec"):
        assert noise not in output, noise
    assert "parameters (gru, hidden 32" in first.stdout
    rows_before = pd.read_csv(run_dir / "csv" / "metrics.csv")
    wandb_id = OmegaConf.load(run_dir / "config.yaml").logger.wandb.id
    assert wandb_id

    # A resume that forgets nothing but adds model=tiny would load a GRU checkpoint into a transformer.
    before = snapshot(run_dir)
    refused = run_pretrain(tiny_project, ["run_name=history", "ckpt_path=last", "model=tiny"], tiny=False)
    assert refused.returncode == 2
    assert "would change the run" in refused.stderr and "model." in refused.stderr
    assert "Traceback" not in refused.stderr and "Missing key" not in refused.stderr
    assert snapshot(run_dir) == before, "a refused resume must not write into the run folder"

    # No override but the run and more epochs: the run's own config (model=gru) is used.
    resumed = run_pretrain(tiny_project, ["run_name=history", "ckpt_path=last", "trainer.max_epochs=2"],
                           tiny=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows_after = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert len(rows_after) > len(rows_before)
    pd.testing.assert_frame_equal(rows_after.iloc[: len(rows_before)][rows_before.columns], rows_before)
    assert set(rows_after["epoch"].dropna()) == {0.0, 1.0}
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.model.encoder_type == "gru" and saved.trainer.max_epochs == 2
    assert saved.logger.wandb.id == wandb_id
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and all(r.name.endswith(f"-{wandb_id}") for r in runs), "wandb resumes by id"
    assert len(list((run_dir / "hydra").iterdir())) == 2, "each invocation keeps its own Hydra record"


def test_corrupt_last_checkpoint_names_the_newest_intact_one(tiny_project):
    run_dir = tiny_project / "checkpoints" / "warmup"
    last = run_dir / "last.ckpt"
    intact = last.read_bytes()
    try:
        last.write_bytes(intact[: len(intact) // 2])
        result = run_pretrain(tiny_project, ["run_name=warmup", "ckpt_path=last"], tiny=False)
    finally:
        last.write_bytes(intact)
    assert result.returncode == 2
    assert f"{last} is corrupt or truncated" in result.stderr
    assert "epoch000.ckpt" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_run_folder_is_a_one_line_error(tiny_project, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the run folder's parent should be")
    result = run_pretrain(tiny_project, [f"run_dir={blocker}/run", "trainer.max_epochs=1"])
    assert result.returncode == 2
    assert "run_dir: cannot write" in result.stderr and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr


def test_multirun_gives_each_job_its_own_wandb_run(tiny_project):
    args = [sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--multirun", *TINY, "logger=wandb",
            "run_name=sweep", "trainer.max_epochs=1", "optimizer.lr=0.001,0.002"]
    result = subprocess.run(args, cwd=ROOT, env=script_env(tiny_project), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already in progress" not in result.stdout + result.stderr
    sweep = tiny_project / "checkpoints" / "sweep"
    ids = []
    for job, lr in ((0, "0.001"), (1, "0.002")):
        run_dir = sweep / str(job)
        assert (run_dir / "last.ckpt").exists() and any((run_dir / "hydra").iterdir())
        config = OmegaConf.load(run_dir / "config.yaml")
        assert config.optimizer.lr == float(lr)
        assert config.logger.wandb.name == f"sweep/{job} optimizer.lr={lr}"
        assert config.logger.wandb.group == "sweep"
        runs = offline_runs(run_dir)
        assert len(runs) == 1, f"job {job} must log into its own wandb run"
        ids.append(runs[0].name.rsplit("-", 1)[-1])
    assert ids[0] != ids[1]


def test_generate_data_accepts_an_experiment(tmp_path):
    """`generate_data.py experiment=smoke` writes where `pretrain.py experiment=smoke` reads."""
    args = [sys.executable, str(ROOT / "scripts" / "generate_data.py"), "experiment=smoke",
            "synthetic.n_customers=40", "synthetic.n_merchants=60", "synthetic.n_issuers=2", "synthetic.n_events=800"]
    result = subprocess.run(args, cwd=ROOT, env=script_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = tmp_path / "data" / "synthetic-smoke" / "events"
    assert result.stdout.strip().splitlines()[-1] == str(events) and any(events.glob("*.parquet"))
    refused = subprocess.run([*args[:2], "data=sparkov"], cwd=ROOT, env=script_env(tmp_path), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "data=synthetic" in refused.stderr
