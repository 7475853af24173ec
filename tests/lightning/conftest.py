"""A tiny synthetic world prepared once per session, shared by the pretraining tests (they run the real
scripts in subprocesses with PROJECT_ROOT pointing at it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A smaller world than experiment=smoke: the tests check mechanics (resume, DDP), not learning.
TINY = [
    "experiment=smoke",
    "logger=csv",
    "synthetic.n_customers=200",
    "synthetic.n_merchants=60",
    "synthetic.n_issuers=4",
    "synthetic.n_events=15000",
    "model=tiny",
    "++model.max_position=32",
    "datamodule.batch_size=8",
    "datamodule.batches_per_epoch=4",
    "datamodule.val_batches=2",
    "trainer.log_every_n_steps=1",
]


def script_env(project_root: Path) -> dict[str, str]:
    return {**os.environ, "PROJECT_ROOT": str(project_root), "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}


def run_pretrain(project_root: Path, overrides: list[str], timeout: int = 600, tiny: bool = True
                 ) -> subprocess.CompletedProcess:
    """scripts/pretrain.py with the TINY overrides (or, `tiny=False`, only `overrides`: a bare resume)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pretrain.py"), *(TINY if tiny else []), *overrides],
        cwd=ROOT, env=script_env(project_root), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A project root whose data folder already holds the prepared tiny world (first run prepares it)."""
    root = tmp_path_factory.mktemp("project")
    result = run_pretrain(root, ["run_name=warmup", "trainer.max_epochs=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    return root
