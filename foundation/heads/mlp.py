"""A small MLP on frozen features: the probe's training, early stopping, threshold and files (probe.py),
with hidden layers (Linear -> GELU -> Dropout) before the logit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

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


class MLPHead(ProbeHead):
    """MLP on frozen features.

    Args:
        hidden_sizes: widths of the hidden layers.
        dropout: dropout after each hidden layer.
        **kwargs: ProbeHead training settings (lr, weight_decay, batch_size, max_epochs, patience, seed).
    """

    head_type = "mlp"

    def __init__(self, hidden_sizes: Sequence[int] = (256, 128), dropout: float = 0.1, lr: float = 1e-3,
                 **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        self.hidden_sizes = [int(s) for s in hidden_sizes]
        self.dropout = float(dropout)

    def architecture(self) -> dict[str, Any]:
        return {"hidden_sizes": self.hidden_sizes, "dropout": self.dropout}

    def body(self, n_features: int) -> nn.Module:
        return mlp_body(n_features, self.hidden_sizes, self.dropout)
