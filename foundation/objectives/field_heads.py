"""Per-field prediction heads and their losses, shared by the next-event and masked-event objectives.

Both objectives reduce to "from these hidden states, predict these events' fields"; they differ only in
which hidden state is paired with which event. Heads run on the selected rows only (N = number of
(hidden state, target event) pairs), not on the whole padded (B,T) grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from foundation.batch import FieldSpec


class FieldHead(nn.Module):
    """Small classifier H -> classes: dense + GELU + LayerNorm, then a linear decoder (BERT's LM head)."""

    def __init__(self, hidden_size: int, num_classes: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.decoder = nn.Linear(hidden_size, num_classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden))))  # (N, C)


class FieldPredictionHeads(nn.Module):
    """One head per field; computes each field's loss over the rows that have a target.

    - categorical / numeric (bin) / time (gap bin): cross-entropy over the ids, id 0 (padding) ignored.
    - text: bag-of-tokens cross-entropy: one softmax over the vocabulary per event, the loss is the mean
      negative log-probability of the event's non-pad tokens (a multinomial over the bag).

    Args:
        hidden_size: H.
        specs: the fields to predict.
    """

    def __init__(self, hidden_size: int, specs: Sequence[FieldSpec]):
        super().__init__()
        if not specs:
            raise ValueError("FieldPredictionHeads needs at least one field to predict")
        self.specs = list(specs)
        self.fields = nn.ModuleDict({spec.name: FieldHead(hidden_size, spec.num_classes) for spec in self.specs})

    def forward(
        self, hidden: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Score the fields present in `targets`.

        Args:
            hidden: (N, H) hidden states, one per target event.
            targets: field name -> (N,) ids, or (N, K) token ids for text; fields missing are skipped.
        Returns:
            dict with "loss" (mean over the fields that have at least one target, 0 when none) and per field
            "<name>_loss" and, for single-id fields, "<name>_acc" (detached).
        """
        losses, metrics = [], {}
        for spec in self.specs:
            if spec.name not in targets:
                continue
            logits = self.fields[spec.name](hidden)  # (N, C)
            target = targets[spec.name]
            if spec.kind == "text":
                loss, count = _bag_of_tokens_loss(logits, target)
            else:
                loss, count = _id_loss(logits, target)
                correct = (logits.argmax(-1) == target) & (target != 0)
                metrics[f"{spec.name}_acc"] = (correct.sum() / count.clamp(min=1)).detach()
            metrics[f"{spec.name}_loss"] = loss.detach()
            losses.append((loss, (count > 0).to(loss.dtype)))
        if not losses:
            return {"loss": hidden.sum() * 0.0, **metrics}
        # Fields with no target in this batch (count 0) are left out of the mean, without a host sync.
        total = sum(loss * present for loss, present in losses)
        n_present = sum(present for _, present in losses)
        return {"loss": total / n_present.clamp(min=1), **metrics}


def _id_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over rows with target != 0. logits (N,C), target (N,) -> (loss, count)."""
    summed = F.cross_entropy(logits.float(), target, ignore_index=0, reduction="sum")
    count = (target != 0).sum()
    return summed / count.clamp(min=1), count


def _bag_of_tokens_loss(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over events with tokens of the mean -log p(token) of their non-pad tokens.

    logits (N,V), tokens (N,K) -> (loss, number of events with at least one token).
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (N, V)
    token_log_probs = log_probs.gather(1, tokens)  # (N, K)
    is_token = (tokens != 0).to(log_probs.dtype)
    n_tokens = is_token.sum(1)  # (N,)
    per_event = -(token_log_probs * is_token).sum(1) / n_tokens.clamp(min=1)
    has_tokens = n_tokens > 0
    count = has_tokens.sum()
    return (per_event * has_tokens).sum() / count.clamp(min=1), count
