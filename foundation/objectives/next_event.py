"""Next-event objective: from the hidden state after event i, predict every field of event i+1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from foundation.batch import parse_field_specs
from foundation.objectives.field_heads import FieldPredictionHeads

if TYPE_CHECKING:
    from foundation.batch import FoundationModelOutput


class NextEventObjective(nn.Module):
    """Autoregressive pretraining loss over all fields of the next event.

    Predicts, for every pair of consecutive real events (i, i+1) of a sequence: each content field of
    event i+1 (categorical id, numeric bin, text tokens) and its time-gap bin (how long until it happens).
    The loss is the mean over fields of each field's mean over valid pairs.

    Args:
        hidden_size: H of the model.
        fields: field specs (`FoundationConfig.fields`); the time spec adds the gap-bin target.
    """

    uses_mask_positions = False

    def __init__(self, hidden_size: int, fields: Sequence[Mapping]):
        super().__init__()
        self.heads = FieldPredictionHeads(hidden_size, parse_field_specs(fields))

    def forward(self, outputs: FoundationModelOutput, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Args:
            outputs: `FoundationModelOutput` of the unmasked batch (last_hidden_state (B,T,H)).
            batch: the collate batch (targets are read from it).
        Returns:
            {"loss": scalar, "<field>_loss": ..., "<field>_acc": ...}.
        """
        mask = batch["attention_mask"].bool()
        # A pair is valid when both the source event i and the target event i+1 are real.
        pairs = mask[:, :-1] & mask[:, 1:]  # (B, T-1)
        hidden = outputs.last_hidden_state[:, :-1][pairs]  # (N, H)
        targets = {
            spec.name: batch[spec.target_key][:, 1:][pairs]  # (N,) or (N, K)
            for spec in self.heads.specs
            if spec.present_in(batch)
        }
        return self.heads(hidden, targets)
