"""Callbacks: training throughput in events/s, and the Hugging Face export of the encoder + tokenizer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch

from foundation.pointintime import save_next_event_heads


class ThroughputMonitor(pl.Callback):
    """Logs `train/events_per_s`: real (non-padding) events processed per second of training step,
    measured from batch start to batch end on the main process and summed over devices.

    Not Lightning's `pytorch_lightning.callbacks.ThroughputMonitor` (2.6), which cannot give this figure:
    it times batch end to batch end (data loading included), averages over a window of batches (100 by
    default: nothing logged before the window fills, so never in a short run), logs under
    `train/device/items_per_sec` at `log_every_n_steps`, and warns on every run that our module has no
    `flops_per_batch`. Its one piece this figure needs, a CUDA sync before reading the clock, is done here.
    """

    def __init__(self) -> None:
        self._start = 0.0
        self._events = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self._events = int(batch["attention_mask"].sum())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":  # kernels run asynchronously: wait for this step's to finish
            torch.cuda.synchronize(pl_module.device)
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = self._events / elapsed * trainer.world_size
        pl_module.log("train/events_per_s", rate, on_step=True, on_epoch=False, batch_size=1)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers' (and huggingface_hub's) progress bars off inside, as they were after: an export every
    epoch would otherwise print a "Writing model shards" bar each time."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
    from transformers.utils import logging as hf_logging

    was_on, hub_was_off = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
            if hub_was_off:
                disable_progress_bars()


class HFExport(pl.Callback):
    """At each epoch end and at fit end, write the base encoder as `config.json` + `model.safetensors`
    with the tokenizer files next to it, so `FoundationModel.from_pretrained(dirpath)` always works, and
    the next-event heads as `next_event_heads.safetensors` (event surprise features) when trained. Exports
    draw no progress bars (`quiet_progress`).

    Args:
        dirpath: export folder, usually `<run_dir>/hf`.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        with torch.no_grad(), quiet_progress():
            pl_module.model.foundation.save_pretrained(self.dirpath)
            if "next_event" in pl_module.model.objectives:  # event surprise features (embeddings/surprise.py)
                save_next_event_heads(pl_module.model.objectives["next_event"], self.dirpath)
        tokenizer = getattr(trainer.datamodule, "tokenizer", None) if trainer.datamodule else None
        if tokenizer is not None:
            tokenizer.save_pretrained(self.dirpath)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module)


class ParameterDigest(pl.Callback):
    """At fit end each process writes `<dirpath>/params-rank<r>.txt`: a SHA-256 of its parameters and the
    number of batches it trained on, so replicas can be checked to agree (DDP) and runs compared (resume)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        import hashlib

        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.dirpath.mkdir(parents=True, exist_ok=True)
        out = self.dirpath / f"params-rank{trainer.global_rank}.txt"
        out.write_text(f"{digest.hexdigest()} {self.batches}\n")
