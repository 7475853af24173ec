"""End-to-end pretraining through scripts/pretrain.py: output contract, exact resume after SIGKILL, DDP."""

import pytest
import torch
from safetensors.torch import load_file

from foundation.model import FoundationModel
from tests.lightning.conftest import run_pretrain

pytestmark = pytest.mark.slow


def digest(run_dir):
    return (run_dir / "params-rank0.txt").read_text().split()[0]


DIGEST = ["+callbacks.digest._target_=foundation.lightning.callbacks.ParameterDigest",
          "+callbacks.digest.dirpath=${run_dir}"]


def test_script_prints_run_dir_and_exports_hf(tiny_project):
    result = run_pretrain(tiny_project, ["run_name=contract", "trainer.max_epochs=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tiny_project / "checkpoints" / "contract"
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)
    assert (run_dir / "last.ckpt").exists()
    model = FoundationModel.from_pretrained(run_dir / "hf")
    saved = load_file(run_dir / "hf" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k in saved)
    assert (run_dir / "hf" / "tokenizer_config.json").exists()
    # the next-event heads travel with the model: the event surprise features of fine-tuning and serving
    checkpoint = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    heads = load_file(run_dir / "hf" / "next_event_heads.safetensors")
    assert heads and all(torch.equal(v, checkpoint[f"model.objectives.next_event.{k}"]) for k, v in heads.items())


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_project):
    full = run_pretrain(tiny_project, ["run_name=full", "trainer.max_epochs=3", *DIGEST])
    assert full.returncode == 0, full.stderr[-3000:]

    killer = ["+callbacks.kill._target_=tests.lightning.killer.KillMidEpoch",
              "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2"]
    crashed = run_pretrain(tiny_project, ["run_name=crash", "trainer.max_epochs=3", *killer])
    assert crashed.returncode == -9, "the run should have been killed by SIGKILL"
    crash_dir = tiny_project / "checkpoints" / "crash"
    assert (crash_dir / "last.ckpt").exists() and not (crash_dir / "params-rank0.txt").exists()

    # A resume continues with the run's saved config, killer included, unless an override switches it off.
    resumed = run_pretrain(tiny_project, ["run_name=crash", "trainer.max_epochs=3", "ckpt_path=last",
                                          "++callbacks.kill=null", *DIGEST])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full_state = torch.load(tiny_project / "checkpoints" / "full" / "last.ckpt", weights_only=True)
    resumed_state = torch.load(crash_dir / "last.ckpt", weights_only=True)
    assert full_state["global_step"] == resumed_state["global_step"] == 12
    # Same batches, same dropout, same optimizer state: equal up to float summation order in CPU kernels.
    for name, tensor in full_state["state_dict"].items():
        assert torch.allclose(tensor, resumed_state["state_dict"][name], rtol=0, atol=1e-6), name


def test_resume_of_missing_run_is_a_clear_error(tiny_project):
    result = run_pretrain(tiny_project, ["run_name=never-ran", "ckpt_path=last"])
    assert result.returncode == 2
    assert "ckpt_path" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_preset_is_a_clear_error(tiny_project):
    result = run_pretrain(tiny_project, ["run_name=bad", "model._target_=foundation.model.presets.huge"])
    assert result.returncode == 2
    assert "unknown size preset 'huge'" in result.stderr and "Traceback" not in result.stderr


def test_ddp_two_cpu_processes_agree(tiny_project):
    result = run_pretrain(tiny_project, ["run_name=ddp", "trainer=ddp", "trainer.max_epochs=1", *DIGEST])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tiny_project / "checkpoints" / "ddp"
    ranks = [(run_dir / f"params-rank{r}.txt").read_text().split() for r in (0, 1)]
    assert ranks[0][0] == ranks[1][0], "DDP replicas ended with different parameters"
    assert int(ranks[0][1]) == int(ranks[1][1]) == 4
