"""The throughput callback: what `train/events_per_s` counts and how it is logged (no Trainer needed)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from foundation.lightning.callbacks import ThroughputMonitor


class _Module:
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.logged: list[tuple[str, float, dict]] = []

    def log(self, name: str, value: float, **kwargs) -> None:
        self.logged.append((name, value, kwargs))


def test_events_per_s_counts_real_events_over_the_step_summed_over_devices(monkeypatch):
    clock = iter([10.0, 10.5])  # batch start, batch end: a 0.5 s step
    monkeypatch.setattr("foundation.lightning.callbacks.time.perf_counter", lambda: next(clock))
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}  # 5 real events, 3 padding
    module, callback = _Module(), ThroughputMonitor()
    trainer = SimpleNamespace(world_size=2)
    callback.on_train_batch_start(trainer, module, batch, 0)
    callback.on_train_batch_end(trainer, module, None, batch, 0)
    [(name, value, kwargs)] = module.logged
    assert name == "train/events_per_s"
    assert value == 5 / 0.5 * 2
    assert kwargs["on_step"] and not kwargs["on_epoch"]
