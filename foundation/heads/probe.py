"""Torch heads on frozen features: the linear probe here, the MLP in mlp.py (same training and files).

Training: features standardised with the training mean and std (stored with the weights), binary
cross-entropy with `pos_weight` = negatives / positives (class imbalance), AdamW, minibatches; after every
epoch the validation PR-AUC (average precision) is measured and the best epoch's weights are kept (early
stopping with `patience` epochs). The decision threshold is the F1-best one on validation, never on test.

On disk: `<dir>/head.safetensors` (network weights, `mean`, `std`) and `<dir>/head.json` (foundation.heads.base:
head type, architecture, settings, threshold, feature layout, metrics, whatever the caller adds).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from foundation.evaluation.metrics import pr_auc
from foundation.heads.base import Head, best_f1_threshold, check_train_validation, check_xy

log = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads, then restore: small heads train fastest on one thread (measured: an
    MLP epoch cost 20x the CPU time on two threads of a busy 2-core machine, from spinning workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Standardize(nn.Module):
    """(x - mean) / std with the training statistics as buffers (saved with the weights)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
        # Constant columns (e.g. a has_history flag always 1) keep unit scale instead of dividing by ~0.
        self.std.copy_(torch.as_tensor(np.maximum(x.std(axis=0), 1e-6), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ProbeHead(Head):
    """Logistic regression on frozen features (a linear probe of the embeddings).

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: examples per step.
        max_epochs: passes over the training set at most.
        patience: epochs without a better validation PR-AUC before stopping.
        seed: initialisation and shuffling seed.
        threads: torch intra-op threads while training.

    Example:
        >>> head = ProbeHead().fit(X_train, y_train, X_val, y_val)  # doctest: +SKIP
        >>> p = head.predict_proba(X_test)  # (N,)  # doctest: +SKIP
    """

    head_type = "probe"
    file_format = "safetensors"
    weight_files = ("head.safetensors",)
    own_keys = ("architecture", "settings")

    def __init__(self, lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 512, max_epochs: int = 30,
                 patience: int = 4, seed: int = 0, threads: int = 1):
        super().__init__()
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.threads = int(threads)
        self.batch_size, self.max_epochs, self.patience = int(batch_size), int(max_epochs), int(patience)
        self.seed = int(seed)
        self.network: nn.Module | None = None

    # ------------------------------------------------------------ architecture

    def architecture(self) -> dict[str, Any]:
        """What rebuilds the network (head.json `architecture`)."""
        return {}

    def body(self, n_features: int) -> nn.Module:
        """The layers after standardisation: (N, D) -> (N, 1) logits."""
        return nn.Linear(n_features, 1)

    def _build(self, n_features: int) -> nn.Module:
        return nn.Sequential(Standardize(n_features), self.body(n_features))

    def _fit_statistics(self, X_train: np.ndarray) -> None:
        """Fit the network's input statistics on the training rows (the standardisation step)."""
        self.network[0].fit(X_train)

    @property
    def n_features(self) -> int:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return int(self.network[0].mean.shape[0])

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> ProbeHead:
        """Build from a conf/head/<name>.yaml block (unknown keys are an error naming them)."""
        cfg = {k: v for k, v in dict(cfg or {}).items() if k not in ("type", "label_fractions")}
        try:
            return cls(**cfg)
        except TypeError as err:
            raise ValueError(f"head {cls.head_type}: bad settings {sorted(cfg)} ({err})") from None

    @classmethod
    def for_task(cls, task: Any, **settings: Any) -> ProbeHead:
        """conf/head/<name>.yaml `_target_`: the same for every task (unknown keys are an error naming them)."""
        return cls.from_config(settings)

    # ------------------------------------------------------------ training

    def fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> ProbeHead:
        """Train with early stopping on validation PR-AUC, then pick the F1-best validation threshold.

        Args:
            X_train: (N, D) float features; y_train: (N,) 0/1.
            X_val: (M, D); y_val: (M,) 0/1, both classes present.
        Returns:
            self.
        """
        X_train, y_train, X_val, y_val = check_train_validation(X_train, y_train, X_val, y_val)
        for name, x in (("train", X_train), ("validation", X_val)):
            if not np.isfinite(x).all():
                raise ValueError(f"{name}: features hold NaN/inf; torch heads need finite features")
        with torch_threads(self.threads):
            self._fit(X_train, y_train, X_val, y_val)
        return self

    def _fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        x_train = torch.as_tensor(X_train, dtype=torch.float32)
        t_train = torch.as_tensor(y_train, dtype=torch.float32)
        self.network = self._build(X_train.shape[1])
        self._fit_statistics(X_train)
        n_pos = float(y_train.sum())
        pos_weight = torch.tensor((len(y_train) - n_pos) / n_pos)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, best_epoch, history = -1.0, None, 0, []
        for epoch in range(1, self.max_epochs + 1):
            self.network.train()
            order = rng.permutation(len(y_train))
            for a in range(0, len(order), self.batch_size):
                index = torch.as_tensor(order[a:a + self.batch_size])
                loss = loss_fn(self.network(x_train[index]).squeeze(-1), t_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            score = pr_auc(y_val, self.predict_proba(X_val))
            history.append(round(score, 6))
            if score > best:
                best, best_state, best_epoch = score, copy.deepcopy(self.network.state_dict()), epoch
            elif epoch - best_epoch >= self.patience:
                break
        self.network.load_state_dict(best_state)
        val_scores = self.predict_proba(X_val)
        self.threshold, val_f1 = best_f1_threshold(y_val, val_scores)
        self.info = {"best_epoch": best_epoch, "epochs": len(history), "validation_pr_auc": best,
                     "validation_pr_auc_by_epoch": history, "validation_f1_at_threshold": val_f1,
                     "n_train": int(len(y_train)), "n_train_positive": int(n_pos), "n_validation": int(len(y_val)),
                     "pos_weight": float(pos_weight)}
        log.info("%s head: best epoch %d/%d, validation PR-AUC %.4f", self.head_type, best_epoch, len(history), best)

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probabilities (N,) of features X (N, D) (distorted upwards by pos_weight)."""
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or load()")
        X, _ = check_xy(X, None, "predict")
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} feature columns, got {X.shape[1]}")
        self.network.eval()
        out = [torch.sigmoid(self.network(torch.as_tensor(X[a:a + 65536], dtype=torch.float32)).squeeze(-1))
               for a in range(0, len(X), 65536)]
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def result_extra(self) -> dict[str, Any]:
        return {"best_epoch": self.info["best_epoch"], "validation_pr_auc": self.info["validation_pr_auc"]}

    # ------------------------------------------------------------ files

    def settings(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "max_epochs": self.max_epochs, "patience": self.patience, "seed": self.seed, "threads": self.threads}

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        save_file({k: v.contiguous() for k, v in self.network.state_dict().items()}, directory / "head.safetensors")
        return {"architecture": self.architecture(), "settings": self.settings()}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> ProbeHead:
        model = cls(**meta.get("settings", {}), **meta.get("architecture", {}))
        model.network = model._build(int(meta["n_features"]))
        model.network.load_state_dict(load_file(directory / "head.safetensors"))
        model.network.eval()
        return model
