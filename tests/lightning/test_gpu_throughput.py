"""scripts/gpu_throughput.py: exits cleanly without a GPU, knows the bf16 peaks, and its wiring runs on CPU."""

import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from tests.lightning.conftest import ROOT, script_env
from tests.model.batches import make_batch, tiny_config
from tests.scripts import load_script

SCRIPT = ROOT / "scripts" / "gpu_throughput.py"
# The world of the `tiny_project` fixture (conftest.TINY), so the prepared data is reused.
TINY_WORLD = ["synthetic.n_customers=200", "synthetic.n_merchants=60", "synthetic.n_issuers=4",
              "synthetic.n_events=15000", "data.source.path=${paths.data_dir}/synthetic-smoke/events",
              "model=tiny", "++model.max_position=32", "datamodule.batch_size=8", "datamodule.num_workers=0"]


def _script():
    return load_script("gpu_throughput")


def test_peak_table():
    script = _script()
    assert script.bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert script.bf16_peak("NVIDIA H200") == 989e12
    assert script.bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert script.bf16_peak("NVIDIA GeForce RTX 4090") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_it_prints_one_line_and_exits_cleanly():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines() == [
        "no GPU: torch sees no CUDA device, so there is no GPU throughput to measure (nothing was run)"]


def test_bad_step_count_is_a_clear_error():
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "0"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--steps must be >= 1" in result.stderr


def test_optimizer_fused_builds_adamw_with_the_fused_kernel():
    from foundation.lightning.pretraining import PretrainingModule

    torch.manual_seed(0)
    module = PretrainingModule(model_config=tiny_config().to_dict(), optimizer={"lr": 1e-3, "fused": True},
                               scheduler={"warmup_ratio": 0.0})
    before = [param.detach().clone() for param in module.parameters()]
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader([make_batch(seed=0)], batch_size=None))
    optimizer = trainer.optimizers[0]
    assert all(group["fused"] for group in optimizer.param_groups)
    assert any(not torch.equal(old, new) for old, new in zip(before, module.parameters()))


@pytest.mark.slow
def test_cpu_smoke_run_reports_events_per_second(tiny_project):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--steps", "3", "--warmup", "1", *TINY_WORLD],
        cwd=ROOT, env=script_env(tiny_project), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("timed: 3 steps after 1 warm-up steps") for line in lines)
    events_per_s = next(line for line in lines if line.startswith("events/s: "))
    assert float(events_per_s.split(": ")[1].replace(",", "")) > 0
    assert lines[-1].startswith("| CPU | transformer H=32 L=2 | 32-true |") and lines[-1].endswith("| peak unknown |")
