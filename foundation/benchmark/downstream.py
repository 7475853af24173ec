"""Downstream side of the comparison: each framework's point-in-time customer embedding of the examples, and
the same LightGBM head fitted on [embedding, has_history, raw fields] and scored with bootstrap intervals."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from foundation.benchmark.examples import SPLITS
from foundation.evaluation.metrics import evaluate_scores
from foundation.evaluation.splits import TaskSpec
from foundation.heads.gbdt import GBDTHead
from foundation.pointintime import PointInTimeEncoder, PointInTimeStates, SequenceStore


def our_embeddings(model: torch.nn.Module, field_specs: Sequence[Mapping], store: SequenceStore,
                   keys: pa.Table) -> tuple[np.ndarray, np.ndarray, float]:
    """Customer states strictly before each example with our trained model (the block windows of foundation.pointintime).

    Returns:
        (embedding (N, H) float32, has_history (N,) bool, seconds).
    """
    start = time.perf_counter()
    encoder = PointInTimeEncoder(model, field_specs, progress=False)
    times = pc.cast(keys.column("event_time"), pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    found = PointInTimeStates(store, encoder).as_of("customer", keys.column("customer_id"), times,
                                                     keys.column("event_id"))
    return found.hidden, found.has_history, time.perf_counter() - start


def their_embeddings(pit_path: str | Path, keys: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """ptls point-in-time embeddings (state strictly before each event) in the order of `keys`.

    Raises:
        KeyError: examples without an embedding (the embedded shard or its filters missed them).
    """
    table = pq.read_table(pit_path, columns=["event_id", "has_history", "embedding"])
    index = pc.index_in(pc.cast(keys.column("event_id"), pa.string()), value_set=table.column("event_id"))
    if index.null_count:
        raise KeyError(f"{index.null_count} of {keys.num_rows} examples have no ptls embedding in {pit_path}")
    rows = index.to_numpy(zero_copy_only=False).astype(np.int64)
    embedding = table.column("embedding").combine_chunks()
    width = embedding.type.list_size
    vectors = embedding.flatten().to_numpy().reshape(-1, width)[rows].astype(np.float32)
    return vectors, table.column("has_history").to_numpy()[rows].astype(bool)


def gbdt_head(task: TaskSpec, overrides: Mapping[str, Any] | None) -> GBDTHead:
    """The task's LightGBM settings with `overrides` ({num_boost_round, early_stopping_rounds, params})."""
    settings = {**task.gbdt}
    extra = dict(overrides or {})
    settings["params"] = {**settings.get("params", {}), **dict(extra.pop("params", {}) or {})}
    settings.update(extra)
    return GBDTHead.from_config(settings)


def score_features(name: str, features: np.ndarray, keys: pa.Table, raw: np.ndarray, raw_names: list[str],
                   categorical: list[str], task: TaskSpec, head: Mapping[str, Any] | None,
                   n_bootstrap: int) -> dict[str, Any]:
    """Fit the head on train (early stopping on validation) and score the test examples.

    Args:
        features: (N, D) model features of every example (D = 0 for the raw-only reference).
        keys: example_keys (split and label per row).
        raw: (N, R) raw fields of the examples.
    Returns:
        pr_auc / roc_auc / recall_at_1pct_fpr {value, ci_low, ci_high}, n_test, n_test_positive, trees.
    """
    split = keys.column("split").to_numpy(zero_copy_only=False)
    labels = keys.column("label").to_numpy().astype(np.int64)
    X = np.hstack([features, raw]).astype(np.float32)
    names = [f"{name}_{i}" for i in range(features.shape[1])] + raw_names
    tr, va, te = (split == s for s in SPLITS)
    model = gbdt_head(task, head).fit(X[tr], labels[tr], X[va], labels[va], feature_names=names,
                                      categorical_features=categorical)
    metrics = evaluate_scores(labels[te], model.predict_proba(X[te]), n_bootstrap=n_bootstrap)
    return {**{k: v for k, v in metrics.items() if isinstance(v, dict)}, "n_test": metrics["n"],
            "n_test_positive": metrics["n_positive"], "n_train": int(tr.sum()),
            "trees": model.info.get("best_iteration")}
