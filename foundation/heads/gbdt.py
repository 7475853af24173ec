"""A LightGBM binary head: the GBDT a fraud team already runs, on velocity features or on embeddings + raw.

Class imbalance is handled by `scale_pos_weight` (default: negatives / positives of the training labels),
the number of trees by early stopping on the validation set (average precision), and the decision threshold
is chosen on the validation set (the one maximising F1) and stored with the model, never tuned on test.

On disk: `<dir>/model.txt` (LightGBM text model at the best iteration) and `<dir>/head.json` (foundation.heads.base:
head type, threshold, feature layout, parameters, metrics and whatever the caller adds: task, entity types).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm.auto import tqdm

from foundation.heads.base import Head, best_f1_threshold, check_train_validation, check_xy

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "scale_pos_weight": "auto",
    "num_threads": 2,
    "seed": 0,
}


class GBDTHead(Head):
    """LightGBM binary classifier with early stopping and a validation-chosen threshold.

    Args:
        params: LightGBM parameters over DEFAULT_PARAMS; `scale_pos_weight: auto` becomes
            n_negative / n_positive of the training labels (null/1 disables the reweighting).
        num_boost_round: maximum number of trees.
        early_stopping_rounds: stop when validation average precision has not improved for this many trees.

    Example:
        >>> head = GBDTHead({"num_threads": 2}).fit(X_train, y_train, X_val, y_val)  # doctest: +SKIP
        >>> p = head.predict_proba(X_test)  # (N,)  # doctest: +SKIP
    """

    head_type = "gbdt"
    file_format = "lightgbm"
    weight_files = ("model.txt",)
    own_keys = ("feature_names", "categorical_features", "params", "num_boost_round", "early_stopping_rounds")

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 1000,
        early_stopping_rounds: int = 50,
    ):
        super().__init__()
        self.params = {**DEFAULT_PARAMS, **dict(params or {})}
        self.num_boost_round = int(num_boost_round)
        self.early_stopping_rounds = int(early_stopping_rounds)
        self.booster: lgb.Booster | None = None
        self.feature_names: list[str] | None = None
        self.categorical_features: list[str] = []

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> GBDTHead:
        """Build from the `gbdt` block of a task config: {params, num_boost_round, early_stopping_rounds}."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"params", "num_boost_round", "early_stopping_rounds"})
        if unknown:
            raise ValueError(f"gbdt config: unknown keys {unknown}")
        return cls(cfg.get("params"), cfg.get("num_boost_round", 1000), cfg.get("early_stopping_rounds", 50))

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> GBDTHead:
        """The task's `gbdt` block (conf/task/<task>.yaml) with `overrides` on top: keys replace the task's,
        `params` are merged key by key (e.g. fewer, faster trees on the ~400 columns of embeddings + raw)."""
        settings = {**dict(task.gbdt or {})}
        overrides = dict(overrides)
        settings["params"] = {**dict(settings.get("params") or {}), **dict(overrides.pop("params", None) or {})}
        settings.update(overrides)
        return cls.from_config(settings)

    def result_extra(self) -> dict[str, Any]:
        return {f"gbdt_{k}": v for k, v in self.info.items()}

    @property
    def n_features(self) -> int:
        if self.booster is None:
            raise RuntimeError("GBDTHead is not fitted")
        return self.booster.num_feature()

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        feature_names: Sequence[str] | None = None,
        categorical_features: Sequence[str] | Sequence[int] | None = None,
    ) -> GBDTHead:
        """Train with early stopping on the validation set, then pick the F1-optimal threshold on it.

        Args:
            X_train: (N, D) features (NaN = missing).
            y_train: (N,) 0/1 labels.
            X_val: (M, D) validation features.
            y_val: (M,) validation labels.
            feature_names: D names (default f0..f{D-1}).
            categorical_features: names or column indices holding integer category codes.

        Returns:
            self.
        """
        X_train, y_train, X_val, y_val = check_train_validation(X_train, y_train, X_val, y_val)
        names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(X_train.shape[1])]
        if len(names) != X_train.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X_train.shape[1]} feature columns")
        categorical = [names[c] if isinstance(c, (int, np.integer)) else str(c) for c in categorical_features or []]
        unknown = [c for c in categorical if c not in names]
        if unknown:
            raise ValueError(f"categorical features {unknown} are not feature names")

        params = dict(self.params)
        n_pos = float(y_train.sum())
        if params.get("scale_pos_weight") == "auto":
            params["scale_pos_weight"] = (len(y_train) - n_pos) / n_pos
        elif params.get("scale_pos_weight") is None:
            params.pop("scale_pos_weight")
        params.update({"metric": ["average_precision", "auc"], "verbosity": -1, "deterministic": True})
        train_set = lgb.Dataset(X_train, y_train, feature_name=names, categorical_feature=categorical or "auto",
                                free_raw_data=True)
        val_set = lgb.Dataset(X_val, y_val, reference=train_set)
        evals: dict[str, Any] = {}
        with tqdm(total=self.num_boost_round, desc="gbdt trees", disable=len(X_train) < 50_000) as bar:
            self.booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.num_boost_round,
                valid_sets=[val_set],
                valid_names=["validation"],
                callbacks=[
                    lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False),
                    lgb.record_evaluation(evals),
                    lambda env: bar.update(1),
                ],
            )
        self.feature_names = names
        self.categorical_features = categorical
        val_scores = self.predict_proba(X_val)
        self.threshold, val_f1 = best_f1_threshold(y_val, val_scores)
        best = self.booster.best_iteration or self.booster.current_iteration()
        self.info = {
            "best_iteration": int(best),
            "validation_average_precision": float(evals["validation"]["average_precision"][best - 1]),
            "validation_auc": float(evals["validation"]["auc"][best - 1]),
            "validation_f1_at_threshold": val_f1,
            "n_train": int(len(y_train)),
            "n_train_positive": int(n_pos),
            "n_validation": int(len(y_val)),
            "scale_pos_weight": params.get("scale_pos_weight"),
        }
        log.info("gbdt head: %d trees, validation AP %.4f, threshold %.4f (F1 %.4f)",
                 best, self.info["validation_average_precision"], self.threshold, val_f1)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class scores (N,) for features X (N, D) (probabilities, distorted by scale_pos_weight)."""
        if self.booster is None:
            raise RuntimeError("GBDTHead is not fitted; call fit() or GBDTHead.load()")
        X, _ = check_xy(X, None, "predict")
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} feature columns, got {X.shape[1]}")
        best = self.booster.best_iteration or None
        return np.asarray(self.booster.predict(X, num_iteration=best), dtype=np.float64)

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        if self.booster is None:
            raise RuntimeError("GBDTHead is not fitted")
        self.booster.save_model(str(directory / "model.txt"), num_iteration=self.booster.best_iteration or None)
        return {"feature_names": self.feature_names, "categorical_features": self.categorical_features,
                "params": {k: v for k, v in self.params.items() if k not in ("metric", "verbosity")},
                "num_boost_round": self.num_boost_round, "early_stopping_rounds": self.early_stopping_rounds}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> GBDTHead:
        model = cls(meta.get("params"), meta.get("num_boost_round", 1000), meta.get("early_stopping_rounds", 50))
        model.booster = lgb.Booster(model_file=str(directory / "model.txt"))
        model.feature_names = meta.get("feature_names")
        model.categorical_features = meta.get("categorical_features", [])
        return model
