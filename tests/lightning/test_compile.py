"""The `compile` switch of pretraining: torch.compile when it works, eager with one warning line when it fails."""

import logging

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from foundation.lightning.pretraining import CompiledOrEager, PretrainingModule
from foundation.model import FoundationForPretraining
from tests.model.batches import make_batch, tiny_config

OPTIMIZER = {"lr": 1e-3, "weight_decay": 0.0}
SCHEDULER = {"warmup_ratio": 0.0}


def _module(compile: bool) -> PretrainingModule:
    torch.manual_seed(0)
    return PretrainingModule(tiny_config().to_dict(), OPTIMIZER, SCHEDULER, seed=0, compile=compile)


def _broken_compile(error: Exception):
    def compile_(module, *args, **kwargs):
        def run(*call_args, **call_kwargs):
            raise error
        return run
    return compile_


def test_compile_failure_on_first_call_falls_back_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(torch, "compile", _broken_compile(RuntimeError("CppCompileError: no C++ compiler\ndetails")))
    model = FoundationForPretraining(tiny_config()).eval()
    batch = make_batch(seed=1)
    runner = CompiledOrEager(model)
    with caplog.at_level(logging.WARNING, logger="foundation.lightning.pretraining"):
        first, second = runner(batch), runner(batch)
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == ["compile: torch.compile failed (RuntimeError: CppCompileError: no C++ compiler); "
                        "training continues without compile"]
    assert not runner.is_compiled
    torch.testing.assert_close(first.loss, model(batch).loss)
    torch.testing.assert_close(second.loss, first.loss)


def test_compile_refused_up_front_falls_back(monkeypatch, caplog):
    def refuse(module, *args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")
    monkeypatch.setattr(torch, "compile", refuse)
    model = FoundationForPretraining(tiny_config()).eval()
    with caplog.at_level(logging.WARNING, logger="foundation.lightning.pretraining"):
        runner = CompiledOrEager(model)
    assert not runner.is_compiled and len(caplog.records) == 1
    batch = make_batch(seed=2)
    torch.testing.assert_close(runner(batch).loss, model(batch).loss)


def test_an_error_that_is_not_about_compiling_is_still_raised(monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile(KeyError("hour")))
    runner = CompiledOrEager(FoundationForPretraining(tiny_config()))
    batch = {key: value for key, value in make_batch().items() if key != "hour"}
    with pytest.raises(KeyError, match="batch is missing"):
        runner(batch)


def test_switch_is_off_by_default_and_leaves_the_checkpoint_keys_alone():
    assert PretrainingModule(tiny_config().to_dict(), OPTIMIZER, SCHEDULER).hparams.compile is False
    plain, compiled = _module(compile=False), _module(compile=True)
    compiled.setup("fit")
    assert isinstance(compiled._compiled, CompiledOrEager) and plain._compiled is None
    assert list(compiled.state_dict()) == list(plain.state_dict())


def _fit(module: PretrainingModule, steps: int) -> None:
    batches = [make_batch(batch_size=4, seq_len=8, seed=seed) for seed in range(steps)]
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def test_fit_with_a_failing_compile_trains_eagerly(monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile(RuntimeError("backend failed")))
    module = _module(compile=True)
    before = [param.detach().clone() for param in module.parameters()]
    _fit(module, steps=2)
    assert module.global_step == 2 and not module._compiled.is_compiled
    assert any(not torch.equal(old, new) for old, new in zip(before, module.parameters()))


@pytest.mark.slow
def test_real_compile_trains_or_falls_back_without_crashing():
    module = _module(compile=True)
    _fit(module, steps=2)
    assert module.global_step == 2
    batch = make_batch(batch_size=4, seq_len=8, seed=0)
    module.eval()
    # Compiled or not, the model computes the same loss as the eager model.
    torch.testing.assert_close(module._compiled(batch).loss, module.model(batch).loss, rtol=1e-4, atol=1e-5)
