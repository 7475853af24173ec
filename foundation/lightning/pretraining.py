"""LightningModule for self-supervised pretraining. It owns no architecture: the model comes from
FoundationConfig, the losses from foundation.objectives; this class only wires optimisation and logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from foundation.model import FoundationConfig, FoundationForPretraining

log = logging.getLogger(__name__)


class CompiledOrEager:
    """`torch.compile(module)` that falls back to the eager module, with one warning line, when compiling fails.

    torch.compile is lazy: tracing and code generation happen on the first call (and on a recompile for a new
    shape), so a missing C++ compiler, an unsupported op or an unsupported platform surfaces there, not here.
    The first failure switches to eager for good and reruns the call eagerly; an error that is not about
    compiling then recurs in eager and is raised as usual.

    Not an `nn.Module` on purpose: the compiled wrapper must not appear in the owner's `state_dict`.

    Args:
        module: the module to run.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.compiled: Callable | None = None
        try:
            self.compiled = torch.compile(module)
        except Exception as error:  # torch.compile itself refuses (e.g. an unsupported Python)
            self._fall_back(error)

    def _fall_back(self, error: Exception) -> None:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        log.warning("compile: torch.compile failed (%s: %s); training continues without compile",
                    type(error).__name__, reason)
        self.compiled = None

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:
                self._fall_back(error)
        return self.module(*args, **kwargs)


def present_field_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`metrics` without the per-field `<field>_loss` / `<field>_acc` of fields that have no target in the
    batch (an issuer aggregate in a customer batch): the field heads report exactly 0 for them, and logging
    that would draw every per-field curve down to zero. Costs one host sync for all fields."""
    loss_keys = [key for key in metrics if key.endswith("_loss")]
    if not loss_keys:
        return metrics
    values = torch.stack([metrics[key].detach().float() for key in loss_keys]).tolist()
    absent = {key[: -len("_loss")] for key, value in zip(loss_keys, values) if value == 0.0}
    return {key: value for key, value in metrics.items() if key.rsplit("_", 1)[0] not in absent}


class PretrainingModule(pl.LightningModule):
    """Train `FoundationForPretraining` with AdamW and a warmup + cosine schedule.

    Args:
        model_config: FoundationConfig as a dict (saved in the checkpoint's hyperparameters, so a
            checkpoint alone rebuilds the model; no pickled modules).
        optimizer: {"lr", "weight_decay", "betas", optional "fused" (AdamW's fused GPU kernel)}.
        scheduler: {"warmup_ratio"}.
        seed: base of the per-epoch torch seed (dropout, masking).
        compile: run the model's forward (and so its backward) through `torch.compile`, falling back to eager
            with one warning when compiling fails (`CompiledOrEager`). Compiled on the first step, not here.
    """

    _compiled: CompiledOrEager | None = None  # built in `setup` when compile is on; not a submodule

    def __init__(
        self, model_config: dict[str, Any], optimizer: dict[str, Any], scheduler: dict[str, Any], seed: int = 0,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = FoundationForPretraining(FoundationConfig.from_dict(model_config))

    @property
    def config(self) -> FoundationConfig:
        return self.model.config

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(batch)

    def setup(self, stage: str) -> None:
        if self.hparams.get("compile") and self._compiled is None:
            self._compiled = CompiledOrEager(self.model)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = (self._compiled or self.model)(batch)
        batch_size = int(batch["lengths"].shape[0])
        self.log(f"{stage}/loss", out.loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        for name, value in out.losses.items():
            self.log(f"{stage}/loss_{name}", value, batch_size=batch_size, sync_dist=stage != "train")
        metrics = out.metrics or {}
        if stage == "train" and not self.trainer._logger_connector.should_update_logs:
            return out.loss  # Lightning drops the step metrics of a step it does not log: skip the sync
        present = present_field_metrics(metrics)
        for name, value in metrics.items():  # per-field losses and accuracies, masked rate, ...
            if name in present:
                self.log(f"{stage}/{name}", value, batch_size=batch_size, sync_dist=stage != "train")
            elif stage != "train":
                # Weight 0 keeps the key on every rank (DDP syncs validation means key by key) without
                # pulling the epoch mean towards 0; a field absent all epoch reads NaN, not 0.
                self.log(f"{stage}/{name}", value, batch_size=0, sync_dist=True)
        return out.loss

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Checkpoints do not carry the torch RNG, and Lightning draws from it at different moments in a
        # resumed run; seeding every step from (seed, global step) makes dropout and masking identical
        # whether a run was interrupted and resumed or not.
        torch.manual_seed(int(self.hparams.seed) * 1_000_003 + self.global_step)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        opt_cfg = self.hparams.optimizer
        # No weight decay on biases, norms and embeddings' padding rows would be too fine-grained; the
        # common split (matrices decay, vectors do not) is what transformers' Trainer does.
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(opt_cfg.get("weight_decay", 0.0))},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(opt_cfg["lr"]),
            betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
            fused=bool(opt_cfg["fused"]) if opt_cfg.get("fused") is not None else None,  # one kernel (GPU)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(self.hparams.scheduler.get("warmup_ratio", 0.0)) * total)
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
