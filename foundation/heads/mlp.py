"""A small MLP on frozen features: the probe's training, early stopping, threshold and files (probe.py),
with hidden layers (Linear -> GELU -> Dropout) before the logit, optionally as a deep ensemble of members."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foundation.evaluation.metrics import pr_auc
from foundation.heads.base import best_f1_threshold
from foundation.heads.probe import ProbeHead


def mlp_body(n_features: int, hidden_sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """(N, D) -> (N, 1) logits through Linear -> GELU -> Dropout blocks."""
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, int(size)), nn.GELU(), nn.Dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class MemberMean(nn.Module):
    """A deep ensemble (Lakshminarayanan et al. 2017): the logit of the members' mean probability, (N, 1)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.cat([torch.sigmoid(member(x)) for member in self.members], dim=-1)
        return torch.logit(probabilities.mean(dim=-1, keepdim=True), eps=1e-7)


class MLPHead(ProbeHead):
    """MLP on frozen features.

    Args:
        hidden_sizes: widths of the hidden layers.
        dropout: dropout after each hidden layer.
        members: MLPs averaged into one score (a deep ensemble; 1: a single MLP). Each member trains on its
            own with seed `seed + i` (initialisation and batch order) and its own early stopping. Measured on
            the default world's fraud task: three members gave +0.015 PR-AUC over the mean of single MLPs
            (README ablation), at three times the head's training cost.
        **kwargs: ProbeHead training settings (lr, weight_decay, batch_size, max_epochs, patience, seed).
    """

    head_type = "mlp"

    def __init__(self, hidden_sizes: Sequence[int] = (256, 128), dropout: float = 0.1, lr: float = 1e-3,
                 members: int = 1, **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        self.hidden_sizes = [int(s) for s in hidden_sizes]
        self.dropout = float(dropout)
        if int(members) < 1:
            raise ValueError(f"head mlp: members must be >= 1, got {members}")
        self.members = int(members)

    def architecture(self) -> dict[str, Any]:
        return {"hidden_sizes": self.hidden_sizes, "dropout": self.dropout, "members": self.members}

    def body(self, n_features: int) -> nn.Module:
        if self.members == 1:
            return mlp_body(n_features, self.hidden_sizes, self.dropout)
        return MemberMean([mlp_body(n_features, self.hidden_sizes, self.dropout) for _ in range(self.members)])

    def _fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        if self.members == 1:
            super()._fit(X_train, y_train, X_val, y_val)
            return
        fitted = []
        for i in range(self.members):
            member = MLPHead(hidden_sizes=self.hidden_sizes, dropout=self.dropout, members=1,
                             **{**self.settings(), "seed": self.seed + i})
            member._fit(X_train, y_train, X_val, y_val)
            fitted.append(member)
        # One standardisation (the same training statistics for every member), then the members' mean.
        self.network = nn.Sequential(fitted[0].network[0], MemberMean([m.network[1] for m in fitted]))
        val_scores = self.predict_proba(X_val)
        self.threshold, val_f1 = best_f1_threshold(y_val, val_scores)
        self.info = {**fitted[0].info, "validation_pr_auc": pr_auc(y_val, val_scores),
                     "validation_f1_at_threshold": val_f1, "best_epoch": [m.info["best_epoch"] for m in fitted],
                     "validation_pr_auc_by_member": [m.info["validation_pr_auc"] for m in fitted]}
        self.info.pop("validation_pr_auc_by_epoch", None)
