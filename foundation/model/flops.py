"""Analytic training FLOPs per event of a `FoundationForPretraining`, for model FLOPs utilisation (MFU).

The count follows PaLM (Chowdhery et al. 2022, appendix B): a weight matrix applied to an event costs 2 FLOPs
per parameter forward and 4 backward, so 6 * N per event, and causal self-attention adds 12 * L * H * T per
event (the QK^T and AV products over a window of T, forward and backward, counted in full, as PaLM does, even
though a causal kernel can skip half). Only parameters that multiply every event count: embedding tables are
lookups and vectors (biases, norms, minGRU gate biases) are elementwise. The minGRU scan and the GRU's gate
arithmetic are elementwise too and left out; the GRU's matrices count like any other.

Conventions that make it a slight over-count, the usual direction for MFU:
- every objective head is charged on every event (the masked head only predicts about 15% of them, the
  contrastive projection one row per sequence);
- a masked objective runs the backbone a second time, so the backbone and attention terms count twice
  (as they are computed twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from foundation.model.configuration import FoundationConfig


def matmul_parameters(module: nn.Module) -> int:
    """Weights that multiply every event: the matrices of Linear and recurrent layers, not embedding tables."""
    total = 0
    for submodule in module.modules():
        if isinstance(submodule, nn.Linear):
            total += submodule.weight.numel()
        elif isinstance(submodule, nn.RNNBase):
            total += sum(param.numel() for name, param in submodule.named_parameters() if name.startswith("weight"))
    return total


@dataclass(frozen=True)
class FlopsPerEvent:
    """Training FLOPs per real event and the terms they come from."""

    backbone_parameters: int   # event embedding projection + encoder matrices
    head_parameters: int       # objective heads
    backbone_passes: int       # 1, or 2 with the masked objective
    attention: float           # 12 * L * H * T per backbone pass (transformer only)
    total: float


def attention_flops_per_event(config: FoundationConfig, window: int) -> float:
    """12 * layers * hidden * window for the transformer, 0 for the recurrent encoders."""
    if config.encoder_type != "transformer":
        return 0.0
    return 12.0 * config.num_layers * config.hidden_size * window


def training_flops_per_event(model: nn.Module, window: int) -> FlopsPerEvent:
    """FLOPs of one optimisation step divided by the real events in it.

    Args:
        model: a `FoundationForPretraining` (its `foundation` backbone and `objectives` heads are counted).
        window: events per training window T (the datamodule's max_len).
    Returns:
        `FlopsPerEvent` with `total` = 6 * (passes * N_backbone + N_heads) + passes * attention.
    """
    config: FoundationConfig = model.config
    backbone = matmul_parameters(model.foundation)
    heads = matmul_parameters(model.objectives)
    # Every objective that hides events runs the backbone once more (weight 0 or not: it still runs).
    passes = 1 + sum(bool(getattr(objective, "uses_mask_positions", False)) for objective in model.objectives.values())
    attention = attention_flops_per_event(config, window)
    total = 6.0 * (passes * backbone + heads) + passes * attention
    return FlopsPerEvent(backbone, heads, passes, attention, total)
