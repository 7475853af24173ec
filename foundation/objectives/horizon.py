"""Outcome-horizon objective: from the state after event i, predict which outcomes arrive within each horizon.

Fraud and credit risk are outcomes that land late: a dispute days after the charge, a run of declines the week
after a card is compromised. Next-event prediction sees only the very next event; this objective asks the
state after event i, for every value v of every `outcome` categorical field (event_type: dispute, decline,
refund; decline_code: 51, 59, ...) and every horizon h (1 day, 7 days): does an event with that value arrive
at this entity in (t_i, t_i + h]? The targets are derived from the event stream itself, no labels, so it is
self-supervised; it teaches the state what a fraud team's label-delayed risk features measure.

Targets are read inside the batch window: a (position, horizon) pair counts only when the window's last
real event is at least h after t_i, so every event of (t_i, t_i + h] is in the window and the target is
exact (pairs cut off by the window end are left out rather than guessed as negatives).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from foundation.batch import FoundationModelOutput

HOUR_MS = 3_600_000
FIRST_VALUE_ID = 2  # categorical ids: 0 padding, 1 OOV/null; values start at 2


def outcome_fields(fields: Sequence[Mapping]) -> list[tuple[str, int]]:
    """(name, vocab_size) of the categorical fields marked `outcome` in the tokenizer's field specs."""
    return [(str(spec["name"]), int(spec["vocab_size"])) for spec in fields
            if spec.get("kind") == "categorical" and spec.get("outcome") and int(spec["vocab_size"]) > FIRST_VALUE_ID]


class OutcomeHorizonObjective(nn.Module):
    """Multi-label, multi-horizon prediction of the outcome values arriving after each event.

    Args:
        hidden_size: H of the model.
        fields: field specs (`FoundationConfig.fields`); the categorical ones with `outcome: true` are predicted.
        horizons_hours: the horizons h, in hours (e.g. [24, 168]).

    Raises:
        ValueError: the schema has no categorical outcome field (nothing to predict), or no horizon.
    """

    uses_mask_positions = False

    def __init__(self, hidden_size: int, fields: Sequence[Mapping], horizons_hours: Sequence[float]):
        super().__init__()
        self.fields = outcome_fields(fields)
        if not self.fields:
            raise ValueError("the horizon objective predicts categorical fields marked `outcome: true` in the data "
                             "schema (e.g. event_type); this schema has none: drop `horizon` from the objectives")
        if not horizons_hours or min(horizons_hours) <= 0:
            raise ValueError(f"horizon objective: horizons_hours must be positive hours, got {list(horizons_hours)}")
        self.register_buffer("horizons_ms", torch.tensor([int(h * HOUR_MS) for h in horizons_hours]),
                             persistent=False)
        self.n_values = [vocab - FIRST_VALUE_ID for _, vocab in self.fields]
        self.head = nn.Linear(hidden_size, sum(self.n_values) * len(horizons_hours))

    def targets(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets (B, T, V, K) in {0, 1} and validity (B, T, K) from the batch window.

        V = the outcome values of all outcome fields, K = horizons.
        """
        mask = batch["attention_mask"].bool()  # (B, T)
        times = batch["event_time"].long()  # (B, T) epoch ms
        later = torch.ones(mask.shape[1], mask.shape[1], dtype=torch.bool, device=mask.device).triu(1)  # j > i
        gap = times.unsqueeze(1) - times.unsqueeze(2)  # (B, T_i, T_j): t_j - t_i
        future = later & mask.unsqueeze(1) & mask.unsqueeze(2)  # (B, T, T)
        within = future.unsqueeze(-1) & (gap.unsqueeze(-1) <= self.horizons_ms)  # (B, T, T, K)
        onehots = []
        for (name, vocab), n in zip(self.fields, self.n_values):
            ids = batch[name].long().clamp(min=0, max=vocab - 1)  # (B, T)
            onehots.append(F.one_hot(ids, vocab)[..., FIRST_VALUE_ID:FIRST_VALUE_ID + n])  # (B, T, n)
        values = torch.cat(onehots, dim=-1).float()  # (B, T_j, V)
        targets = torch.einsum("bijk,bjv->bivk", within.float(), values).clamp(max=1.0)  # (B, T, V, K)
        last = torch.where(mask, times, torch.full_like(times, torch.iinfo(torch.long).min)).amax(dim=1)  # (B,)
        valid = mask.unsqueeze(-1) & ((last.unsqueeze(1) - times).unsqueeze(-1) >= self.horizons_ms)  # (B, T, K)
        return targets, valid

    def forward(self, outputs: FoundationModelOutput, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Args:
            outputs: `FoundationModelOutput` of the unmasked batch (last_hidden_state (B,T,H)).
            batch: the collate batch (event_time, attention_mask and the outcome fields' ids).
        Returns:
            {"loss": scalar BCE over valid (position, horizon) pairs and all values, "positive_rate": ...}.
        """
        hidden = outputs.last_hidden_state  # (B, T, H)
        if any(name not in batch for name, _ in self.fields):  # an entity type without these fields
            zero = hidden.sum() * 0.0
            return {"loss": zero}
        targets, valid = self.targets(batch)
        b, t, v, k = targets.shape
        logits = self.head(hidden).view(b, t, v, k)  # (B, T, V, K)
        pairs = valid.unsqueeze(2).expand(b, t, v, k)
        if not pairs.any():
            return {"loss": logits.sum() * 0.0}
        loss = F.binary_cross_entropy_with_logits(logits[pairs].float(), targets[pairs])
        return {"loss": loss, "positive_rate": targets[pairs].mean().detach()}
