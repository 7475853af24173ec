"""A callback that SIGKILLs its own process mid-epoch: a real crash for the resume test (no mocks)."""

import os
import signal

import pytorch_lightning as pl


class KillMidEpoch(pl.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
