"""A saved model folder works as a Hugging Face folder: re-saving keeps the next-event heads, files are
readable by others, and `trust_remote_code=True` loads it without importing foundation.model first."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from foundation.model import FoundationConfig, FoundationModel
from foundation.model.hub import HEADS_FILE

ROOT = Path(__file__).resolve().parents[2]
FIELDS = [{"name": "mcc", "kind": "categorical", "vocab_size": 12}, {"name": "time", "kind": "time", "num_bins": 10}]


def saved_model(directory: Path) -> FoundationModel:
    torch.manual_seed(0)
    config = FoundationConfig(fields=FIELDS, entity_types=["customer"], hidden_size=8, num_layers=1, num_heads=2,
                              intermediate_size=16)
    model = FoundationModel(config)
    model.save_pretrained(directory)
    return model


def test_save_pretrained_round_trip_keeps_the_heads_file(tmp_path):
    original = saved_model(tmp_path / "a")
    heads = {"heads.fields.mcc.weight": torch.randn(12, 8)}
    save_file(heads, str(tmp_path / "a" / HEADS_FILE))  # as the HFExport callback writes it

    loaded = FoundationModel.from_pretrained(tmp_path / "a")
    loaded.save_pretrained(tmp_path / "b")
    again = FoundationModel.from_pretrained(tmp_path / "b")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in original.state_dict().items())
    copied = load_file(str(tmp_path / "b" / HEADS_FILE))
    assert torch.equal(copied["heads.fields.mcc.weight"], heads["heads.fields.mcc.weight"])


def test_saved_files_are_readable_by_others(tmp_path):
    saved_model(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_config_carries_auto_map(tmp_path):
    saved_model(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "foundation_hf.FoundationModel"
    assert (tmp_path / "foundation_hf.py").exists()


@pytest.mark.slow
def test_automodel_with_trust_remote_code_needs_no_foundation_import(tmp_path):
    model = saved_model(tmp_path / "hf")
    expected = sum(float(p.detach().sum()) for p in model.parameters())
    code = ("import sys; from transformers import AutoModel\n"
            f"m = AutoModel.from_pretrained({str(tmp_path / 'hf')!r}, trust_remote_code=True)\n"
            "assert 'foundation.model' not in sys.modules or type(m).__name__ == 'FoundationModel'\n"
            "print(type(m).__name__, sum(float(p.sum()) for p in m.parameters()))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    name, total = result.stdout.split()[-2:]
    assert name == "FoundationModel" and abs(float(total) - expected) < 1e-4
