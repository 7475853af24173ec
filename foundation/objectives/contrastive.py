"""Contrastive objective (CoLES-style): sub-sequences of the same entity embed close, others apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from foundation.batch import FoundationModelOutput


class ContrastiveObjective(nn.Module):
    """Multi-positive InfoNCE over the entity embeddings of a batch.

    Rows sharing `batch["entity_index"]` are views (sub-sequences) of one entity: positives of each other;
    every other row of the batch is a negative. Embeddings go through a projection head and are
    L2-normalised; similarities are divided by the temperature. For an anchor i with positives P(i):
        loss_i = -mean_{p in P(i)} log( exp(s_ip) / sum_{j != i} exp(s_ij) )
    averaged over anchors that have at least one positive (rows of empty sequences take no part).

    Args:
        hidden_size: H of the model.
        projection_dim: output width of the projection head.
        temperature: softmax temperature.
    """

    uses_mask_positions = False

    def __init__(self, hidden_size: int, projection_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        # The loss is computed on a projection so the embedding itself keeps information the
        # invariance would discard (SimCLR's finding).
        self.projection = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, projection_dim)
        )
        self.temperature = temperature

    def forward(self, outputs: FoundationModelOutput, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Args:
            outputs: model outputs (entity_embedding (B,H)).
            batch: needs `entity_index` (B,) and `lengths` or `attention_mask`.
        Returns:
            {"loss": scalar (0 when no row has a positive), "anchors": number of rows with a positive,
            "top1": share of anchors whose most similar other row is a positive}.
        Raises:
            KeyError: the batch has no `entity_index`.
        """
        if "entity_index" not in batch:
            raise KeyError(
                "the contrastive objective needs batch['entity_index'] (B,): rows with the same value are "
                "views of the same entity; have the collate produce several views per entity"
            )
        entity = batch["entity_index"]  # (B,)
        lengths = batch["lengths"] if "lengths" in batch else batch["attention_mask"].sum(1)
        real = lengths > 0
        z = F.normalize(self.projection(outputs.entity_embedding).float(), dim=-1)  # (B, P)
        similarity = z @ z.T / self.temperature  # (B, B)
        eye = torch.eye(len(entity), dtype=torch.bool, device=z.device)
        candidate = real.unsqueeze(0) & real.unsqueeze(1) & ~eye  # (B, B): j is a candidate for anchor i
        positive = candidate & (entity.unsqueeze(0) == entity.unsqueeze(1))
        # A large finite value rather than -inf: a row with no candidate (a lone empty view) must give a
        # finite log-softmax, or its NaN would leak into the gradients.
        similarity = similarity.masked_fill(~candidate, -1e9)
        log_prob = similarity - similarity.logsumexp(dim=1, keepdim=True)
        log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob))
        n_positive = positive.sum(1)
        anchors = n_positive > 0
        per_anchor = -log_prob.sum(1) / n_positive.clamp(min=1)  # (B,)
        n_anchors = anchors.sum()
        loss = (per_anchor * anchors).sum() / n_anchors.clamp(min=1)
        nearest = similarity.argmax(dim=1)
        top1 = positive.gather(1, nearest.unsqueeze(1)).squeeze(1) & anchors
        return {
            "loss": loss,
            "anchors": n_anchors.detach().float(),
            "top1": (top1.sum() / n_anchors.clamp(min=1)).detach().float(),
        }
