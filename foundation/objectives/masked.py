"""Masked-event objective: hide some events' content and predict it from the history and their time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from foundation.batch import parse_field_specs
from foundation.objectives.field_heads import FieldPredictionHeads

if TYPE_CHECKING:
    from foundation.batch import FoundationModelOutput


def choose_mask_positions(
    attention_mask: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick round(probability * length) real events per sequence, at least one and (when the sequence has
    two or more events) never all of them; uniformly at random, vectorised.

    Args:
        attention_mask: (B,T) bool, True on real events (right-padded).
        probability: share of real events to mask.
        generator: optional torch.Generator (on the mask's device) for reproducible choices.
    Returns:
        (B,T) bool, True on the chosen events; all False for empty sequences.
    """
    real = attention_mask.bool()
    lengths = real.sum(1)  # (B,)
    k = torch.round(lengths.float() * probability).long().clamp(min=1)
    k = torch.minimum(k, (lengths - 1).clamp(min=1))  # keep one visible event when there are two or more
    k = torch.where(lengths > 0, k, torch.zeros_like(k))
    # Random scores, padding last; an event is chosen when its rank among its row's scores is < k.
    scores = torch.rand(real.shape, generator=generator, device=real.device)
    scores = scores.masked_fill(~real, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T)
    return (ranks < k.unsqueeze(1)) & real


class MaskedEventObjective(nn.Module):
    """Masked-event modelling for a causal encoder.

    The content of the chosen events is replaced by the learned [MASK] vector (their time features stay);
    the model output at a masked position, which has seen the earlier events and the masked event's time
    only, predicts the event's content fields. The caller (`FoundationForPretraining`) runs the model with
    `mask_positions=choose_positions(batch)` and passes those outputs here.

    Args:
        hidden_size: H of the model.
        fields: field specs (`FoundationConfig.fields`); only content fields are predicted.
        mask_probability: share of real events to mask per sequence.
    """

    uses_mask_positions = True

    def __init__(self, hidden_size: int, fields: Sequence[Mapping], mask_probability: float = 0.15):
        super().__init__()
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
        content = [spec for spec in parse_field_specs(fields) if spec.kind != "time"]
        self.heads = FieldPredictionHeads(hidden_size, content)
        self.mask_probability = mask_probability

    def choose_positions(
        self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B,T) bool events to mask; see `choose_mask_positions`."""
        return choose_mask_positions(batch["attention_mask"], self.mask_probability, generator)

    def forward(
        self,
        outputs: FoundationModelOutput,
        batch: Mapping[str, torch.Tensor],
        mask_positions: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Args:
            outputs: model outputs of the batch run with `mask_positions`.
            batch: the collate batch (targets: the original field values).
            mask_positions: (B,T) bool, the positions that were masked.
        Returns:
            {"loss": scalar, "<field>_loss": ..., "<field>_acc": ..., "mask_rate": share of real events masked}.
        """
        chosen = mask_positions.bool() & batch["attention_mask"].bool()
        hidden = outputs.last_hidden_state[chosen]  # (N, H)
        targets = {spec.name: batch[spec.target_key][chosen] for spec in self.heads.specs if spec.present_in(batch)}
        result = self.heads(hidden, targets)
        result["mask_rate"] = (chosen.sum() / batch["attention_mask"].sum().clamp(min=1)).detach().float()
        return result
