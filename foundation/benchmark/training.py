"""Pretraining throughput: events/s, model FLOP utilisation against the measured matmul peak, and the share
of a step spent outside the model (batch selection + collation)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.flop_counter import FlopCounterMode

from foundation.data.collate import EventCollator
from foundation.model import FoundationForPretraining, build_config


def matmul_peak_flops(size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """Measured dense matmul throughput of this machine (FLOP/s) with the current torch thread count."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    elapsed = time.perf_counter() - start
    return 2 * size**3 * repeats / elapsed


def step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward pass, counted by torch's FlopCounterMode (matmuls and attention)."""
    with FlopCounterMode(display=False) as counter:
        model(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


@dataclass
class StepTimes:
    """Totals over the timed (post warm-up) steps of `timed_steps`.

    Attributes:
        data_s: wall seconds drawing and collating batches; model_s: forward + backward + optimizer step.
        cpu_s: this process's CPU seconds of whole steps; events: real (unpadded) events seen.
        flops: model FLOPs (forward + backward); final_loss: loss of the last step.
    """

    data_s: float = 0.0
    model_s: float = 0.0
    cpu_s: float = 0.0
    events: int = 0
    flops: float = 0.0
    final_loss: float = float("nan")


def timed_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                draw: Callable[[], dict[str, torch.Tensor]], steps: int, warmup: int) -> StepTimes:
    """Run `warmup` untimed then `steps` timed optimizer steps on batches from `draw`.

    FLOPs scale with padded positions (B*T): they are counted once and scaled per step (the counter itself
    is slow). The first untimed warm-up step doubles as the count; without warm-up, one extra pass counts.
    """
    flops_per_position = None
    if warmup == 0:
        probe = draw()
        flops_per_position = step_flops(model, probe) / probe["attention_mask"].numel()
    out = StepTimes()
    for step in range(warmup + steps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        batch = draw()
        t1 = time.perf_counter()
        if flops_per_position is None:
            with FlopCounterMode(display=False) as counter:
                loss = model(batch).loss
                loss.backward()
            flops_per_position = counter.get_total_flops() / batch["attention_mask"].numel()
        else:
            loss = model(batch).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if step >= warmup:
            out.data_s += t1 - t0
            out.model_s += t2 - t1
            out.cpu_s += time.process_time() - c0
            out.events += int(batch["attention_mask"].sum())
            out.flops += flops_per_position * batch["attention_mask"].numel()
    out.final_loss = float(loss.detach())
    return out


def bench_training(
    encoded: pa.Table,
    field_specs: Sequence[dict],
    entity_types: Sequence[str],
    preset: str,
    encoder_type: str = "transformer",
    batch_size: int = 32,
    max_len: int = 128,
    steps: int = 10,
    warmup: int = 2,
    peak_flops: float | None = None,
    objectives: dict[str, float] | None = None,
    seed: int = 0,
    views: int = 1,
    min_len: int = 16,
    lr: float = 1e-4,
    model_overrides: Mapping[str, Any] | None = None,
    return_model: bool = False,
) -> dict | tuple[dict, FoundationForPretraining]:
    """Train `steps` AdamW steps of a preset on batches drawn from `encoded`; time data and model separately.

    Args:
        encoded: encoded sequences of one entity type (EventTokenizer.encode output).
        preset: model size preset ("small", "base", ...); encoder_type: "transformer" | "gru".
        batch_size: entities per step (each gives `views` rows); max_len: longest window / view.
        peak_flops: the machine's matmul peak (FLOP/s); measured when None.
        objectives: name -> weight (default next_event only); {"contrastive": 1.0} with views=2 is CoLES-style.
        views: random sub-sequences per entity (> 1 for the contrastive objective), of length in
            [min_len, max_len].
        lr: AdamW learning rate.
        model_overrides: other FoundationConfig fields (e.g. {"num_layers": 1}).
        return_model: also return the trained model (to embed with it afterwards).
    Returns:
        dict with events_per_s (real events / wall time incl. data), events_per_cpu_s (per second of this
        process's CPU time, steadier when other jobs share the cores), model_flops_per_s, mfu, data_share
        (fraction of a step spent selecting + collating), params, step_ms, final_loss; with
        `return_model`, (that dict, the FoundationForPretraining).
    """
    torch.manual_seed(seed)
    objectives = objectives or {"next_event": 1.0}
    config = build_config(preset, list(field_specs), list(entity_types), encoder_type=encoder_type,
                          max_position=max_len, objectives=objectives, **dict(model_overrides or {}))
    model = FoundationForPretraining(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    # min_len only shapes contrastive views; one view per entity keeps the collator's own default.
    view_args = {"views": views, "min_len": min(min_len, max_len)} if views > 1 else {}
    collate = EventCollator(field_specs, max_len=max_len, window="random", seed=seed, **view_args)
    rng = np.random.default_rng(seed)
    peak = peak_flops or matmul_peak_flops()

    def draw() -> dict[str, torch.Tensor]:
        idx = np.sort(rng.choice(encoded.num_rows, size=min(batch_size, encoded.num_rows), replace=False))
        return collate(encoded.take(pa.array(idx)))

    timed = timed_steps(model, optimizer, draw, steps, warmup)
    total = timed.data_s + timed.model_s
    result = {
        "preset": preset,
        "encoder": encoder_type,
        "params": sum(p.numel() for p in model.foundation.parameters()),
        "batch_size": batch_size,
        "max_len": max_len,
        "views": views,
        "steps": steps,
        "objectives": dict(objectives),
        "events_per_s": round(timed.events / total, 1),
        "events_per_cpu_s": round(timed.events / timed.cpu_s, 1) if timed.cpu_s > 0 else None,
        "step_ms": round(1000 * total / steps, 1),
        "model_flops_per_s": timed.flops / timed.model_s,
        "peak_flops_per_s": peak,
        "mfu": round(timed.flops / timed.model_s / peak, 4),
        "data_share": round(timed.data_s / total, 4),
        "final_loss": round(timed.final_loss, 4),
    }
    return (result, model) if return_model else result
