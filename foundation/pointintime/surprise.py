"""Event surprise: how unexpected an event is for its entity, under the pretrained next-event heads.

For an attempt e with the entity state h strictly before it, `surprise_<field>(e) = -log p(field of e | h)`
for every content field the next-event objective predicts (outcome fields such as event_type and
decline_code excluded: they are unknown when e is scored), plus their sum. A card used for the first time
in another country, at a category and an amount its owner never uses, is improbable under its own history:
the pretraining loss itself, read per event, is the feature a rule engine has no equivalent of.

The heads are saved next to the model as `next_event_heads.safetensors` by the HFExport callback
(pretraining with the `next_event` objective); without that file there is no surprise (None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HEADS_FILE = "next_event_heads.safetensors"


def save_next_event_heads(objective: torch.nn.Module, directory: str | Path) -> Path:
    """Write a NextEventObjective's weights to `<directory>/next_event_heads.safetensors`."""
    path = Path(directory) / HEADS_FILE
    save_file({k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}, str(path))
    return path


class EventSurprise:
    """Per-field negative log-likelihood of events given the entity state before them.

    Args:
        heads: a NextEventObjective (its `heads.specs` and `heads.fields`), in eval mode.
        field_specs: EventTokenizer.field_specs() (their `outcome` flags decide what is left out).
    """

    def __init__(self, objective: torch.nn.Module, field_specs: Sequence[Mapping[str, Any]]):
        outcome = {spec["name"] for spec in field_specs if spec.get("outcome")}
        self.heads = objective.heads.eval()
        self.specs = [spec for spec in self.heads.specs if spec.name not in outcome]
        self.names = [f"surprise_{spec.name}" for spec in self.specs] + ["surprise_total"]

    @classmethod
    def load(cls, directory: str | Path, config: Any, field_specs: Sequence[Mapping[str, Any]],
             device: str | torch.device = "cpu") -> EventSurprise | None:
        """The surprise of a saved model folder (`hf/`), or None when it has no next-event heads."""
        from foundation.objectives.next_event import NextEventObjective

        path = Path(directory) / HEADS_FILE
        if not path.exists():
            return None
        objective = NextEventObjective(int(config.hidden_size), config.fields)
        objective.load_state_dict(load_file(str(path)))
        return cls(objective.to(device), field_specs)

    @torch.inference_mode()
    def __call__(self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor], has_history: torch.Tensor
                 ) -> torch.Tensor:
        """Surprise of the events of a single-event batch.

        Args:
            hidden: (Q, H) entity states just before each event.
            batch: model batch of the events alone (Q, 1), as for their event vectors.
            has_history: (Q,) bool; an event without history has no prediction: all its surprises are 0.
        Returns:
            (Q, len(names)) float32; a field the event lacks (padding id) contributes 0.
        """
        return self.from_log_probs(self.log_probs(hidden), batch, has_history)

    @torch.inference_mode()
    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """The next-event log-probabilities of every predicted field given each state, side by side.

        They depend on the state alone, not on the event scored, so a service can keep them with the state
        and score the next attempts of the entity without running the heads again (StateEngine).

        Args:
            hidden: (Q, H) entity states.
        Returns:
            (Q, sum of the fields' classes) float32: field by field in `specs` order, each a log_softmax.
        """
        return torch.cat([F.log_softmax(self.heads.fields[spec.name](hidden.float()), dim=-1)
                          for spec in self.specs], dim=1)

    @torch.inference_mode()
    def from_log_probs(self, log_probs: torch.Tensor, batch: Mapping[str, torch.Tensor], has_history: torch.Tensor
                       ) -> torch.Tensor:
        """`__call__` from the states' `log_probs` (Q, sum of classes) instead of the states."""
        columns = []
        parts = log_probs.split([spec.num_classes for spec in self.specs], dim=1)
        for spec, field_log_probs in zip(self.specs, parts):
            if not spec.present_in(batch):
                columns.append(torch.zeros(len(log_probs), device=log_probs.device))
                continue
            target = batch[spec.target_key][:, 0]
            if spec.kind == "text":  # mean -log p over the event's tokens
                token_log_probs = field_log_probs.gather(1, target)  # (Q, K)
                is_token = (target != 0).float()
                nll = -(token_log_probs * is_token).sum(1) / is_token.sum(1).clamp(min=1)
            else:  # cross_entropy(logits) is nll_loss(log_softmax(logits)): the same arithmetic
                nll = F.nll_loss(field_log_probs, target, ignore_index=0, reduction="none")
            columns.append(nll)
        out = torch.stack(columns, dim=1)
        out = torch.cat([out, out.sum(1, keepdim=True)], dim=1)
        return out * has_history.to(out.dtype).unsqueeze(1)
