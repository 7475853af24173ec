"""What the encoder hands the objectives and the point-in-time code: its output type."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class FoundationModelOutput(ModelOutput):
    """Output of `FoundationModel`.

    Args:
        last_hidden_state: (B,T,H) hidden state after each event (zero at padded positions); causal, so the
            state at i is the point-in-time embedding of the entity right after event i.
        entity_embedding: (B,H) the hidden state at the last real event (`lengths - 1`); zero for an empty row.
    """

    last_hidden_state: torch.Tensor | None = None
    entity_embedding: torch.Tensor | None = None
