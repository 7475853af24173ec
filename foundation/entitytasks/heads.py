"""Heads of entity tasks: binary, regression or multiclass outputs on frozen features (entity embeddings or
hand-crafted aggregates).

- `EntityNetHead`: standardised inputs -> linear (the probe, `hidden_sizes: []`) or an MLP; binary
  cross-entropy (positives weighted by negatives / positives), mean squared error on the standardised target, or
  cross-entropy; AdamW; the epoch with the best validation loss is kept.
- `EntityGBDTHead`: LightGBM with the problem's objective (binary / regression / multiclass), early stopping on
  the validation loss.

`predict_proba` returns (N,) positive-class probabilities, (N,) predicted values or (N, K) class probabilities.
Both save through `foundation.heads.Head` (head.json + weights) so the service loads them like event heads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from foundation.heads.base import Head
from foundation.heads.mlp import mlp_body
from foundation.heads.probe import Standardize, torch_threads

GBDT_OBJECTIVES = {"binary": "binary", "regression": "regression", "multiclass": "multiclass"}


def _outputs(problem: str, n_classes: int) -> int:
    return n_classes if problem == "multiclass" else 1


def entity_loss(problem: str, logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | float = 1.0,
                target_mean: float = 0.0, target_std: float = 1.0) -> torch.Tensor:
    """The training loss of an entity head's (N, K) logits: cross-entropy (multiclass), binary cross-entropy with
    the positives weighted by `pos_weight`, or mean squared error on the standardised target (regression)."""
    if problem == "multiclass":
        return nn.functional.cross_entropy(logits, y.long())
    if problem == "binary":
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y,
                                                              pos_weight=torch.as_tensor(pos_weight))
    return nn.functional.mse_loss(logits.squeeze(-1), (y - target_mean) / target_std)


def entity_outputs(problem: str, logits: torch.Tensor, target_mean: float = 0.0, target_std: float = 1.0
                   ) -> np.ndarray:
    """What an entity head predicts from its logits: (N,) probabilities or values, or (N, K) class probabilities."""
    if problem == "multiclass":
        return torch.softmax(logits, dim=-1).double().cpu().numpy()
    if problem == "binary":
        return torch.sigmoid(logits.squeeze(-1)).double().cpu().numpy()
    return (logits.squeeze(-1).double().cpu() * target_std + target_mean).numpy()


class EntityNetHead(Head):
    """Linear model (`hidden_sizes=[]`) or MLP on frozen features for a binary/regression/multiclass target.

    Args:
        problem: binary | regression | multiclass.
        n_classes: classes of a multiclass target.
        hidden_sizes: hidden widths ([] = linear probe).
        dropout, lr, weight_decay, batch_size, max_epochs, patience, seed: training settings.
    """

    head_type = "entity_net"
    file_format = "safetensors"
    weight_files = ("head.safetensors",)
    own_keys = ("settings",)

    def __init__(self, problem: str = "binary", n_classes: int = 2, hidden_sizes: Sequence[int] = (),
                 dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                 max_epochs: int = 40, patience: int = 4, seed: int = 0):
        super().__init__()
        self.problem, self.n_classes = str(problem), int(n_classes)
        self.hidden_sizes = [int(s) for s in hidden_sizes]
        self.dropout, self.lr, self.weight_decay = float(dropout), float(lr), float(weight_decay)
        self.batch_size, self.max_epochs, self.patience, self.seed = (int(batch_size), int(max_epochs),
                                                                      int(patience), int(seed))
        self.target_mean, self.target_std = 0.0, 1.0
        self.pos_weight = torch.tensor(1.0)
        self.network: nn.Module | None = None

    def settings(self) -> dict[str, Any]:
        return {"problem": self.problem, "n_classes": self.n_classes, "hidden_sizes": self.hidden_sizes,
                "dropout": self.dropout, "lr": self.lr, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size, "max_epochs": self.max_epochs, "patience": self.patience,
                "seed": self.seed}

    def _build(self, n_features: int) -> nn.Module:
        body = mlp_body(n_features, self.hidden_sizes, self.dropout)
        if _outputs(self.problem, self.n_classes) != 1:  # widen the last layer to K logits
            last = body[-1]
            body[-1] = nn.Linear(last.in_features, self.n_classes)
        return nn.Sequential(Standardize(n_features), body)

    @property
    def n_features(self) -> int:
        if self.network is None:
            raise RuntimeError("EntityNetHead is not fitted")
        return int(self.network[0].mean.shape[0])

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return entity_loss(self.problem, logits, y, self.pos_weight, self.target_mean, self.target_std)

    def fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> EntityNetHead:
        """Train, keeping the epoch of lowest validation loss. X: (N, D) finite floats; y: (N,) targets."""
        X_train, X_val = np.nan_to_num(np.asarray(X_train, np.float32)), np.nan_to_num(np.asarray(X_val, np.float32))
        if self.problem == "regression":
            self.target_mean, self.target_std = float(np.mean(y_train)), float(max(np.std(y_train), 1e-9))
        n_pos = float(np.sum(y_train)) if self.problem == "binary" else 0.0
        self.pos_weight = torch.tensor(max(len(y_train) - n_pos, 1.0) / max(n_pos, 1.0))
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.network = self._build(X_train.shape[1])
        self.network[0].fit(X_train)
        x, y = torch.as_tensor(X_train), torch.as_tensor(np.asarray(y_train, np.float32))
        xv, yv = torch.as_tensor(X_val), torch.as_tensor(np.asarray(y_val, np.float32))
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, best_epoch, history = np.inf, None, 0, []
        with torch_threads(1):
            for epoch in range(1, self.max_epochs + 1):
                self.network.train()
                order = torch.as_tensor(rng.permutation(len(y)))
                for a in range(0, len(order), self.batch_size):
                    index = order[a:a + self.batch_size]
                    loss = self._loss(self.network(x[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                self.network.eval()
                with torch.no_grad():
                    validation = float(self._loss(self.network(xv), yv))
                history.append(round(validation, 6))
                if validation < best:
                    best, best_state, best_epoch = validation, copy.deepcopy(self.network.state_dict()), epoch
                elif epoch - best_epoch >= self.patience:
                    break
        self.network.load_state_dict(best_state)
        self.network.eval()
        self.info = {"best_epoch": best_epoch, "validation_loss": best, "validation_loss_by_epoch": history,
                     "n_train": int(len(y)), "target_mean": self.target_mean, "target_std": self.target_std}
        return self

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N,) probabilities or values, or (N, K) class probabilities."""
        if self.network is None:
            raise RuntimeError("EntityNetHead is not fitted; call fit() or load()")
        out = self.network(torch.as_tensor(np.nan_to_num(np.asarray(X, np.float32))))
        return entity_outputs(self.problem, out, self.target_mean, self.target_std)

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        save_file({k: v.contiguous() for k, v in self.network.state_dict().items()}, directory / "head.safetensors")
        return {"settings": {**self.settings(), "target_mean": self.target_mean, "target_std": self.target_std}}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> EntityNetHead:
        settings = dict(meta["settings"])
        mean, std = settings.pop("target_mean"), settings.pop("target_std")
        model = cls(**settings)
        model.target_mean, model.target_std = float(mean), float(std)
        model.network = model._build(int(meta["n_features"]))
        model.network.load_state_dict(load_file(directory / "head.safetensors"))
        model.network.eval()
        return model


class EntityGBDTHead(Head):
    """LightGBM for a binary/regression/multiclass entity target, early stopping on the validation loss.

    Args:
        problem: binary | regression | multiclass.
        n_classes: classes of a multiclass target.
        params: LightGBM parameters over the defaults below (objective and metric come from the problem).
        num_boost_round, early_stopping_rounds: trees at most; patience in trees.
    """

    head_type = "entity_gbdt"
    file_format = "lightgbm"
    weight_files = ("model.txt",)
    own_keys = ("settings", "feature_names")
    DEFAULTS: Mapping[str, Any] = {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
                                   "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
                                   "lambda_l2": 1.0, "num_threads": 1, "seed": 0, "max_bin": 63}

    def __init__(self, problem: str = "binary", n_classes: int = 2, params: Mapping[str, Any] | None = None,
                 num_boost_round: int = 1000, early_stopping_rounds: int = 50):
        super().__init__()
        self.problem, self.n_classes = str(problem), int(n_classes)
        self.params = {**self.DEFAULTS, **dict(params or {})}
        self.num_boost_round, self.early_stopping_rounds = int(num_boost_round), int(early_stopping_rounds)
        self.booster: lgb.Booster | None = None
        self.feature_names: list[str] | None = None

    @property
    def n_features(self) -> int:
        return self.booster.num_feature()

    def fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
            feature_names: Sequence[str] | None = None) -> EntityGBDTHead:
        """Train with early stopping on the validation loss. X: (N, D) (NaN = missing); y: (N,) targets."""
        params = {**self.params, "objective": GBDT_OBJECTIVES[self.problem], "verbosity": -1, "deterministic": True}
        if self.problem == "multiclass":
            params["num_class"] = self.n_classes
        names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(X_train.shape[1])]
        train_set = lgb.Dataset(X_train, np.asarray(y_train), feature_name=names, free_raw_data=True)
        val_set = lgb.Dataset(X_val, np.asarray(y_val), reference=train_set)
        self.booster = lgb.train(params, train_set, num_boost_round=self.num_boost_round, valid_sets=[val_set],
                                 callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        self.feature_names = names
        self.info = {"best_iteration": int(self.booster.best_iteration or self.booster.current_iteration()),
                     "n_train": int(len(y_train))}
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N,) probabilities or values, or (N, K) class probabilities."""
        if self.booster is None:
            raise RuntimeError("EntityGBDTHead is not fitted; call fit() or load()")
        return np.asarray(self.booster.predict(np.asarray(X, np.float64), num_iteration=self.booster.best_iteration
                                               or None), dtype=np.float64)

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        self.booster.save_model(str(directory / "model.txt"), num_iteration=self.booster.best_iteration or None)
        return {"feature_names": self.feature_names,
                "settings": {"problem": self.problem, "n_classes": self.n_classes, "params": self.params,
                             "num_boost_round": self.num_boost_round,
                             "early_stopping_rounds": self.early_stopping_rounds}}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> EntityGBDTHead:
        model = cls(**meta["settings"])
        model.booster = lgb.Booster(model_file=str(directory / "model.txt"))
        model.feature_names = meta.get("feature_names")
        return model


HEAD_KINDS = {"probe": (EntityNetHead, {"hidden_sizes": [], "lr": 1e-2}),
              "mlp": (EntityNetHead, {"hidden_sizes": [256, 128]}),
              "gbdt": (EntityGBDTHead, {})}


def build_head(kind: str, problem: str, n_classes: int, settings: Mapping[str, Any] | None = None) -> Head:
    """A head of a kind (probe, mlp, gbdt) for a problem, with the task's `heads.<kind>` settings on top."""
    cls, defaults = HEAD_KINDS[kind]
    return cls(problem=problem, n_classes=n_classes, **{**defaults, **dict(settings or {})})
