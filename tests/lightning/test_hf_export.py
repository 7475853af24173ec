"""The HFExport callback writes the model folder without transformers' progress bars, and leaves them on."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers.utils import logging as hf_logging

from foundation.lightning.callbacks import HFExport
from foundation.model import FoundationConfig, FoundationModel

FIELDS = [{"name": "mcc", "kind": "categorical", "vocab_size": 12}, {"name": "time", "kind": "time", "num_bins": 10}]


def test_export_draws_no_progress_bar_and_restores_the_setting(tmp_path, capsys):
    torch.manual_seed(0)
    model = FoundationModel(FoundationConfig(fields=FIELDS, entity_types=["customer"], hidden_size=8, num_layers=1,
                                             num_heads=2, intermediate_size=16))
    hf_logging.enable_progress_bar()
    model.save_pretrained(tmp_path / "plain")
    assert "Writing model shards" in capsys.readouterr().err  # what an export printed every epoch

    module = SimpleNamespace(model=SimpleNamespace(foundation=model, objectives={}))
    HFExport(str(tmp_path / "hf"))._export(SimpleNamespace(is_global_zero=True, datamodule=None), module)
    assert "Writing model shards" not in capsys.readouterr().err
    assert (tmp_path / "hf" / "model.safetensors").exists()
    assert hf_logging.is_progress_bar_enabled()
