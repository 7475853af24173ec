"""Fusion head: one network over the embeddings and the attempt's raw fields, trained together.

A GBDT stacked on embeddings treats the 400 embedding columns as 400 unrelated features; a probe or MLP on the
embeddings alone cannot read a raw field the encoder blurred. The fusion head reads both in one MLP:
numeric columns standardised (a missing value becomes 0 plus a missing flag), each categorical raw field
(LightGBM-style integer codes, NaN = unknown) through its own learned embedding, concatenated and passed
through the MLP body. Trained like the probe and the MLP (BCE with pos_weight, early stopping on validation
PR-AUC, F1-best validation threshold); the raw fields are computable from the attempt alone, so the service
can serve it (conf/head/fusion.yaml adds the raw-field block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foundation.heads.base import check_train_validation
from foundation.heads.mlp import MLPHead, mlp_body
from foundation.heads.probe import torch_threads


class FusionNetwork(nn.Module):
    """(N, D) rows of [numeric columns | categorical code columns] -> (N, 1) logits.

    Args:
        n_features: D.
        categorical: indices of the categorical code columns.
        cardinalities: per categorical column, the number of codes (code c embeds at c + 1; NaN, negative or
            unseen codes at 0).
        embedding_dim: width of each categorical embedding.
        hidden_sizes, dropout: the MLP body.
    """

    def __init__(self, n_features: int, categorical: Sequence[int], cardinalities: Sequence[int],
                 embedding_dim: int, hidden_sizes: Sequence[int], dropout: float):
        super().__init__()
        self.categorical = [int(i) for i in categorical]
        self.numeric = [i for i in range(n_features) if i not in set(self.categorical)]
        self.cardinalities = [int(c) for c in cardinalities]
        self.register_buffer("mean", torch.zeros(len(self.numeric)))
        self.register_buffer("std", torch.ones(len(self.numeric)))
        self.register_buffer("flagged", torch.zeros(len(self.numeric), dtype=torch.bool))
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_dim) for c in self.cardinalities)
        width = len(self.numeric) * 2 + embedding_dim * len(self.categorical)
        self.body = mlp_body(width, hidden_sizes, dropout)

    def fit_statistics(self, x: np.ndarray) -> None:
        """Mean and std of the numeric columns (NaN ignored) and which of them ever miss, from training rows."""
        values = x[:, self.numeric].astype(np.float64)
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        self.mean.copy_(torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(np.nan_to_num(std, nan=1.0), 1e-6), dtype=torch.float32))
        self.flagged.copy_(torch.as_tensor(np.isnan(values).any(axis=0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numeric = x[:, self.numeric]  # (N, Dn)
        missing = torch.isnan(numeric)
        standard = torch.where(missing, torch.zeros_like(numeric), (numeric - self.mean) / self.std)
        parts = [standard, (missing & self.flagged).float()]
        for column, cardinality, embedding in zip(self.categorical, self.cardinalities, self.embeddings):
            codes = torch.nan_to_num(x[:, column], nan=-1.0).long()  # (N,)
            codes = torch.where((codes >= 0) & (codes < cardinality), codes + 1, torch.zeros_like(codes))
            parts.append(embedding(codes))  # (N, E)
        return self.body(torch.cat(parts, dim=-1))  # (N, 1)


class FusionHead(MLPHead):
    """MLP over the task features and the raw-field block together (categorical fields embedded).

    Args:
        embedding_dim: width of each categorical raw field's embedding.
        **kwargs: MLPHead settings (hidden_sizes, dropout, lr, weight_decay, batch_size, max_epochs, patience,
            seed, threads).
    """

    head_type = "fusion"

    def __init__(self, embedding_dim: int = 8, categorical: Sequence[int] = (), cardinalities: Sequence[int] = (),
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.embedding_dim = int(embedding_dim)
        self.categorical = [int(i) for i in categorical]
        self.cardinalities = [int(c) for c in cardinalities]

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "embedding_dim": self.embedding_dim, "categorical": self.categorical,
                "cardinalities": self.cardinalities}

    def _build(self, n_features: int) -> nn.Module:
        return FusionNetwork(n_features, self.categorical, self.cardinalities, self.embedding_dim,
                             self.hidden_sizes, self.dropout)

    def _fit_statistics(self, X_train: np.ndarray) -> None:
        self.network.fit_statistics(X_train)  # NaN-aware, numeric columns only

    @property
    def n_features(self) -> int:
        if self.network is None:
            raise RuntimeError("FusionHead is not fitted")
        return len(self.network.numeric) + len(self.network.categorical)

    def fit(self, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
            feature_names: Sequence[str] | None = None, categorical_features: Sequence[str] = ()) -> FusionHead:
        """Train on rows whose `categorical_features` columns (by name) hold integer codes, NaN = unknown.

        Args:
            X_train, y_train, X_val, y_val: as ProbeHead.fit; NaN is allowed (missing values).
            feature_names: (D,) column names (needed when `categorical_features` is given).
            categorical_features: names of the categorical code columns.
        """
        X_train, y_train, X_val, y_val = check_train_validation(X_train, y_train, X_val, y_val)
        names = list(feature_names or [])
        unknown = [c for c in categorical_features if c not in names]
        if unknown:
            raise ValueError(f"fusion head: categorical features {unknown} are not among the feature names")
        self.categorical = [names.index(c) for c in categorical_features]
        both = np.vstack([X_train[:, self.categorical], X_val[:, self.categorical]])
        self.cardinalities = [int(np.nanmax(both[:, j])) + 1 if np.isfinite(both[:, j]).any() else 1
                              for j in range(len(self.categorical))]
        for name, x in (("train", X_train), ("validation", X_val)):
            if np.isinf(x).any():
                raise ValueError(f"{name}: features hold inf; the fusion head reads NaN as missing, not inf")
        with torch_threads(self.threads):
            self._fit(X_train, y_train, X_val, y_val)
        return self

