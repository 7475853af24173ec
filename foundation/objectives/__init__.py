"""Self-supervised pretraining objectives (plain torch): next-event, masked-event, contrastive, outcome
horizon, recent activity.

Each objective is an `nn.Module` called with the model outputs and the batch and returning a dict with
"loss" (a scalar tensor) and detached per-part metrics. `build_objective(name, config)` builds one from a
`FoundationConfig`; `FoundationForPretraining` combines them with the weights in `config.objectives`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from foundation.objectives.contrastive import ContrastiveObjective
from foundation.objectives.field_heads import FieldPredictionHeads
from foundation.objectives.horizon import OutcomeHorizonObjective
from foundation.objectives.masked import MaskedEventObjective, choose_mask_positions
from foundation.objectives.next_event import NextEventObjective
from foundation.objectives.recent import RecentActivityObjective

if TYPE_CHECKING:
    from transformers import PretrainedConfig as FoundationConfig  # FoundationConfig; typed by its base here

OBJECTIVES = ("next_event", "masked", "contrastive", "horizon", "recent")


def build_objective(name: str, config: FoundationConfig) -> nn.Module:
    """Build the objective `name` from a config.

    Args:
        name: one of `OBJECTIVES`.
        config: `FoundationConfig` (hidden_size, fields, mask_probability, contrastive_* settings).
    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if name == "next_event":
        return NextEventObjective(config.hidden_size, config.fields)
    if name == "masked":
        return MaskedEventObjective(config.hidden_size, config.fields, config.mask_probability)
    if name == "contrastive":
        return ContrastiveObjective(config.hidden_size, config.contrastive_dim, config.contrastive_temperature)
    if name == "horizon":
        return OutcomeHorizonObjective(config.hidden_size, config.fields, config.horizon_hours)
    if name == "recent":
        return RecentActivityObjective(config.hidden_size, config.fields, config.recent_hours,
                                       bool(config.recent_outcome_shares))
    raise ValueError(f"unknown objective {name!r}; valid objectives: {list(OBJECTIVES)}")


__all__ = [
    "OBJECTIVES",
    "ContrastiveObjective",
    "FieldPredictionHeads",
    "MaskedEventObjective",
    "NextEventObjective",
    "OutcomeHorizonObjective",
    "RecentActivityObjective",
    "build_objective",
    "choose_mask_positions",
]
