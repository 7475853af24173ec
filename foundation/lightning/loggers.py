"""Loggers of a pretraining run that keep its history: a resumed run appends to its `metrics.csv` and
continues its wandb run (same id), and a sweep job finishes its wandb run before the next job starts."""

from __future__ import annotations

import csv
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing `metrics.csv` when it starts; this one keeps its rows and
    its header, and adds the rows of the resumed run after them (new columns widen the header)."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def _check_log_dir_exists(self) -> None:
        """Nothing to delete and nothing to warn about: earlier rows are the run's history."""


class CSVLogger(pl.loggers.CSVLogger):
    """`pytorch_lightning.loggers.CSVLogger` that appends to the run's `metrics.csv` instead of replacing it."""

    @property
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class WandbLogger(pl.loggers.WandbLogger):
    """`pytorch_lightning.loggers.WandbLogger` without the deprecated `anonymous` argument (wandb warns on any
    value Lightning passes) and with `finish()`, so each run of a process ends its own wandb run.

    Args: those of `pytorch_lightning.loggers.WandbLogger`; `id` with `resume="allow"` continues a run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)

    def finish(self) -> None:
        """End this logger's wandb run (flushes it; its exit summary is printed now, not at process exit)."""
        if self._experiment is not None:
            self._experiment.finish()
            self._experiment = None


def finish_loggers(loggers: list[Any]) -> None:
    """Finish every logger that holds an open run (wandb); a no-op for the others."""
    for logger in loggers:
        finish = getattr(logger, "finish", None)
        if callable(finish):
            finish()
