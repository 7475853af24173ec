"""The pieces of a run's bookkeeping, without training: checkpoint and folder checks, the resume config
rules, the appending CSV log, the wandb logger's arguments and the per-field metrics a step logs."""

import os
from types import SimpleNamespace

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from foundation.lightning.loggers import CSVLogger, WandbLogger
from foundation.lightning.pretraining import PretrainingModule, present_field_metrics
from foundation.resume import ConfigError, check_checkpoint, check_writable, resume_config


def test_truncated_checkpoint_names_the_newest_intact_one(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(3)}}, tmp_path / "epoch000.ckpt")
    torch.save({"state_dict": {"w": torch.ones(3)}}, tmp_path / "epoch001.ckpt")
    os.utime(tmp_path / "epoch000.ckpt", (1, 1))  # epoch001 is the newer one
    data = (tmp_path / "epoch001.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])
    check_checkpoint(tmp_path / "epoch001.ckpt")  # intact: no error
    with pytest.raises(ConfigError, match=r"last\.ckpt is corrupt or truncated .*is epoch001\.ckpt"):
        check_checkpoint(tmp_path / "last.ckpt")


def test_empty_checkpoint_without_an_intact_one(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"last\.ckpt is corrupt or truncated \(0 bytes\); there is no intact"):
        check_checkpoint(tmp_path / "last.ckpt")


def test_unwritable_run_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="run_dir: cannot write .* is not a folder"):
        check_writable(tmp_path / "file" / "run")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="run_dir: cannot write .* is not writable"):
        check_writable(tmp_path / "new" / "run")


def saved_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = OmegaConf.create({"run_name": "run", "run_dir": str(run_dir), "ckpt_path": None, "seed": 1,
                            "model": {"encoder_type": "gru"}, "trainer": {"max_epochs": 1},
                            "logger": {"wandb": {"id": "abc"}}})
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return cfg


def test_resume_outside_hydra_refuses_a_different_model(tmp_path):
    cfg = saved_run(tmp_path)
    cfg.ckpt_path = "last"
    cfg.model.encoder_type = "transformer"
    with pytest.raises(ConfigError, match=r"would change the run \(model.encoder_type: 'gru' -> 'transformer'\)"):
        resume_config(cfg)


def test_resume_takes_more_epochs_and_keeps_the_wandb_id(tmp_path):
    cfg = saved_run(tmp_path)
    cfg.ckpt_path = "last"
    cfg.trainer.max_epochs = 3
    cfg.logger.wandb.id = None
    resumed = resume_config(cfg)
    assert resumed.trainer.max_epochs == 3 and resumed.logger.wandb.id == "abc"
    assert resumed.ckpt_path == "last" and resumed.model.encoder_type == "gru"


def test_new_run_config_is_unchanged(tmp_path):
    cfg = saved_run(tmp_path)
    cfg.model.encoder_type = "transformer"  # no ckpt_path: a new run in a reused folder is not a resume
    assert resume_config(cfg) is cfg


def test_csv_logger_appends_to_the_runs_history(tmp_path):
    first = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    first.log_metrics({"train/loss": 2.0, "train/mcc_loss": 3.0}, step=0)
    first.save()
    resumed = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    resumed.log_metrics({"train/loss": 1.5, "val/loss": 1.7}, step=1)
    resumed.save()
    rows = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert rows["step"].tolist() == [0, 1]
    assert rows["train/loss"].tolist() == [2.0, 1.5] and rows["train/mcc_loss"].tolist()[0] == 3.0
    assert rows["val/loss"].tolist()[1] == 1.7


def test_wandb_logger_passes_no_anonymous_setting(tmp_path):
    logger = WandbLogger(project="p", name="n", save_dir=str(tmp_path), offline=True, id="abc")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["id"] == "abc"


def test_fields_without_targets_are_not_logged():
    metrics = {"next_event/mcc_loss": torch.tensor(2.5), "next_event/mcc_acc": torch.tensor(0.1),
               "next_event/agg_count_loss": torch.tensor(0.0), "next_event/agg_count_acc": torch.tensor(0.0),
               "masked/rate": torch.tensor(0.0)}
    assert sorted(present_field_metrics(metrics)) == ["masked/rate", "next_event/mcc_acc", "next_event/mcc_loss"]


class FixedOutput(torch.nn.Module):
    def forward(self, batch):
        metrics = {"next_event/mcc_loss": torch.tensor(2.5), "next_event/issuer_loss": torch.tensor(0.0)}
        return SimpleNamespace(loss=torch.tensor(2.5), losses={"next_event": torch.tensor(2.5)}, metrics=metrics)


@pytest.mark.parametrize("stage", ["train", "val"])
def test_step_logs_no_zero_for_absent_fields(stage):
    module = PretrainingModule.__new__(PretrainingModule)
    pl.LightningModule.__init__(module)
    module.model = FixedOutput()
    module._trainer = SimpleNamespace(_logger_connector=SimpleNamespace(should_update_logs=True))
    logged = {}
    module.log = lambda name, value, batch_size, **kw: logged.__setitem__(name, batch_size)
    module._step({"lengths": torch.tensor([3, 2])}, stage)
    assert logged[f"{stage}/next_event/mcc_loss"] == 2
    # train: not logged at all; validation: weight 0 (the key stays for DDP's sync, the mean is unchanged)
    assert logged.get(f"{stage}/next_event/issuer_loss") == (None if stage == "train" else 0)


def test_resume_outside_hydra_drops_a_removed_callback(tmp_path):
    cfg = saved_run(tmp_path)
    OmegaConf.save(OmegaConf.merge(cfg, {"callbacks": {"kill": {"epoch": 1}, "keep": {"a": 1}}}),
                   tmp_path / "run" / "config.yaml")
    cfg.ckpt_path = "last"
    cfg.callbacks = {"keep": {"a": 1}}
    assert OmegaConf.to_container(resume_config(cfg).callbacks) == {"keep": {"a": 1}}
