"""Which examples a fine-tune run trains and scores on: bounds, seeded subsamples, class checks.

Every draw has its own seeded generator, so the examples do not depend on the order heads train in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema
from foundation.evaluation.splits import TaskSpec, schema_period, subsample_labels

SPLITS = ("train", "validation", "test")


def bound_examples(table: pa.Table, split: str, schema: DataSchema, bounds: Any, customers: pa.Array | None) -> pa.Table:
    """Keep the examples of the chosen customers and of the first/last `days` of the period.

    Train keeps its last days (the labels closest to the test period), validation and test their first days.
    """
    if customers is not None:
        table = table.filter(pc.fill_null(pc.is_in(table.column("customer_id"), value_set=customers), False))
    days = (bounds.get("days") or {}).get(split) if bounds is not None else None
    if days:
        period = schema_period(schema, split)
        span = np.timedelta64(int(round(float(days) * 86_400_000)), "ms")
        edge = period.end - span if split == "train" else period.start + span
        edge = pa.scalar(edge.astype(dt.datetime), pa.timestamp("ms"))
        keep = (pc.greater_equal if split == "train" else pc.less)(table.column("event_time"), edge)
        table = table.filter(keep)
    limit = (bounds.get("max") or {}).get(split) if bounds is not None else None
    if limit and table.num_rows > int(limit):
        rows = np.sort(np.random.default_rng(0).choice(table.num_rows, int(limit), replace=False))
        table = table.take(pa.array(rows))
    return table


def chosen_customers(events: pa.Table, share: float | None, seed: int) -> pa.Array | None:
    """A seeded share of the customers (None = all): examples of the others are left out."""
    if share is None or float(share) >= 1.0:
        return None
    ids = pc.unique(events.column("customer_id").drop_null()).sort()
    keep = np.random.default_rng(seed).permutation(len(ids))[: max(1, int(round(float(share) * len(ids))))]
    return ids.take(pa.array(np.sort(keep)))


def labels_of(table: pa.Table) -> np.ndarray:
    """(N,) int64 0/1 labels of some examples."""
    return table.column("label").to_numpy().astype(np.int64)


def check_classes(task: str, split: str, table: pa.Table, fix: str) -> None:
    """Raise when a split holds a single class, with `fix`: the overrides that widen the examples."""
    labels = labels_of(table)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError(f"task {task}: the {split} examples ({len(labels)}, {int(labels.sum())} positive) hold a "
                         f"single class; {fix}")


def widening_hint(experiment_overrides: Sequence[str] | None) -> str:
    """What to pass when a split holds one class: the pretraining experiment's own fine-tune overrides
    (`finetune_overrides` of its config, what the quickstart applies), else the generic widening."""
    if experiment_overrides:
        return ("the pretraining run's experiment fine-tunes with `" + " ".join(map(str, experiment_overrides))
                + "` (its finetune_overrides): add these overrides to the command")
    return ("widen `examples`, e.g. examples.customers=null examples.days=null (every customer, whole "
            "periods), or check the splits")


def stratified(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Row indices of a stratified subsample of at most `size` rows (all rows when size is None)."""
    if size is None or len(labels) <= int(size):
        return np.arange(len(labels))
    rng, keep = np.random.default_rng(seed), []
    for value in (0, 1):
        rows = np.flatnonzero(labels == value)
        n = max(1, int(round(int(size) * len(rows) / len(labels))))
        keep.append(rng.choice(rows, min(n, len(rows)), replace=False))
    return np.sort(np.concatenate(keep))


def training_pool(labels: np.ndarray, size: int, positive_share: float, seed: int) -> np.ndarray:
    """The training examples a bounded fine-tune can visit: all positives up to their share, then negatives."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(positives), max(1, int(size * positive_share)))
    n_neg = min(len(negatives), max(1, size - n_pos))
    return np.sort(np.r_[rng.choice(positives, n_pos, replace=False), rng.choice(negatives, n_neg, replace=False)])


def label_fractions(cfg: Any, own: Sequence[float] | None, task: TaskSpec) -> list[float]:
    """A head's own label fractions, else the run's `label_fractions`, else the task's."""
    chosen = own if own is not None else (cfg.get("label_fractions") or task.label_fractions)
    return [float(f) for f in chosen]


def subsets(examples: dict[str, pa.Table], fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """Train and validation examples at a label fraction (nested; validation shrinks alike: a team with 1% of
    the labels has 1% to stop early and pick a threshold on too)."""
    return subsample_labels(examples["train"], fraction, seed), subsample_labels(examples["validation"], fraction, seed)
