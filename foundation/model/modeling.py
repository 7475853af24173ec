"""FoundationModel (events -> point-in-time hidden states and entity embeddings) and its pretraining
wrapper, following the transformers config/model pair (configuration_bert.py / modeling_bert.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from foundation.batch import TIME_KEYS, FoundationModelOutput
from foundation.model import hub
from foundation.model.configuration import FoundationConfig
from foundation.model.embeddings import FoundationEventEmbedding, TextEmbedding
from foundation.model.encoder import build_encoder, residual_init_std
from foundation.objectives import build_objective

REQUIRED_KEYS = ("attention_mask", "event_time", "entity_type", *TIME_KEYS)


@dataclass
class FoundationPretrainingOutput(ModelOutput):
    """Output of `FoundationForPretraining`.

    Args:
        loss: scalar, sum over objectives of weight * objective loss.
        losses: objective name -> its (unweighted) loss.
        metrics: "<objective>/<metric>" -> detached scalar (per-field losses and accuracies, ...).
        last_hidden_state: (B,T,H) of the unmasked forward pass.
        entity_embedding: (B,H) of the unmasked forward pass.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    metrics: dict[str, torch.Tensor] | None = None
    last_hidden_state: torch.Tensor | None = None
    entity_embedding: torch.Tensor | None = None


class FoundationPreTrainedModel(PreTrainedModel):
    """Weight init and the HF save/load plumbing shared by the foundation models."""

    config_class = FoundationConfig
    config: FoundationConfig
    base_model_prefix = "foundation"
    main_input_name = "batch"
    _no_split_modules = ["TransformerBlock"]

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, plus what makes the folder self-sufficient (foundation/model/hub.py):
        `auto_map` and its module (`trust_remote_code=True` loading), the next-event heads of the folder this
        model was loaded from, and files readable by others."""
        self.config.auto_map = dict(hub.AUTO_MAP)
        super().save_pretrained(save_directory, *args, **kwargs)
        hub.write_remote_code(save_directory)
        hub.carry_heads(self.name_or_path, save_directory)
        hub.make_readable(save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for linear/embedding weights (HF default), plus the modules the
        default does not know: residual projections (scaled by depth), EmbeddingBag, GRU, [MASK]."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.Linear) and getattr(module, "is_residual_projection", False):
            init.normal_(module.weight, mean=0.0, std=residual_init_std(self.config))
        elif isinstance(module, TextEmbedding):
            # EmbeddingBag(padding_idx=0) leaves pad ids out of the mean, so row 0 needs no zeroing.
            init.normal_(module.embedding.weight, mean=0.0, std=std)
        elif isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    # Orthogonal recurrent weights keep the state's norm through long sequences.
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
        elif isinstance(module, FoundationEventEmbedding):
            init.normal_(module.mask_embedding, mean=0.0, std=std)


class FoundationModel(FoundationPreTrainedModel):
    """Event embedding + causal sequence encoder -> point-in-time hidden states and entity embeddings.

    Args:
        config: `FoundationConfig`.

    Example:
        >>> import torch
        >>> from foundation.model import FoundationConfig, FoundationModel
        >>> fields = [{"name": "mcc", "kind": "categorical", "vocab_size": 12},
        ...           {"name": "time", "kind": "time", "num_bins": 10}]
        >>> config = FoundationConfig(fields=fields, entity_types=["customer"], hidden_size=8, num_heads=2)
        >>> batch = {"mcc": torch.tensor([[2, 5, 0]]), "time_gap_bin": torch.tensor([[1, 3, 0]]),
        ...          "time_gap": torch.tensor([[0.0, 4.2, 0.0]]), "hour": torch.tensor([[9, 10, 0]]),
        ...          "dow": torch.tensor([[1, 1, 0]]), "entity_type": torch.tensor([0]),
        ...          "event_time": torch.tensor([[1_704_100_000_000, 1_704_100_066_000, 0]]),
        ...          "attention_mask": torch.tensor([[True, True, False]]), "lengths": torch.tensor([2])}
        >>> outputs = FoundationModel(config)(batch)
        >>> outputs.last_hidden_state.shape, outputs.entity_embedding.shape
        (torch.Size([1, 3, 8]), torch.Size([1, 8]))
    """

    # A pretraining checkpoint also holds the objective heads; the bare model does not need them.
    _keys_to_ignore_on_load_unexpected = [r"^objectives\."]

    def __init__(self, config: FoundationConfig):
        super().__init__(config)
        self.embeddings = FoundationEventEmbedding(config)
        self.encoder = build_encoder(config)
        self.post_init()

    def forward(
        self, batch: Mapping[str, torch.Tensor], mask_positions: torch.Tensor | None = None
    ) -> FoundationModelOutput:
        """Encode a right-padded batch (docs/architecture.md section 5).

        Args:
            batch: the collate dict; needs `attention_mask`, `event_time`, `entity_type`, the time features and
                the model's fields (absent fields contribute nothing); `lengths` is derived from
                `attention_mask` when missing.
            mask_positions: optional (B,T) bool: events whose content fields are replaced by [MASK].
        Returns:
            `FoundationModelOutput(last_hidden_state (B,T,H), entity_embedding (B,H))`.
        Raises:
            KeyError: a required key is missing. ValueError: the window is longer than `max_position` while
            a learned index position is used.
        """
        missing = [key for key in REQUIRED_KEYS if key not in batch]
        if missing:
            raise KeyError(f"batch is missing {missing} (needed by FoundationModel); keys: {sorted(batch)}")
        attention_mask = batch["attention_mask"].bool()
        seq_len = attention_mask.shape[1]
        if self.config.uses_index_position and seq_len > self.config.max_position:
            raise ValueError(
                f"window of {seq_len} events exceeds max_position={self.config.max_position} "
                "of the learned index positions; cut the window or raise max_position"
            )
        x = self.embeddings(batch, mask_positions)  # (B, T, H)
        hidden = self.encoder(x, attention_mask, batch["event_time"])  # (B, T, H)
        hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        lengths = batch["lengths"] if "lengths" in batch else attention_mask.sum(1)
        last = (lengths - 1).clamp(min=0)  # (B,)
        entity_embedding = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
        entity_embedding = entity_embedding * (lengths > 0).unsqueeze(-1).to(hidden.dtype)
        return FoundationModelOutput(last_hidden_state=hidden, entity_embedding=entity_embedding)


class FoundationForPretraining(FoundationPreTrainedModel):
    """FoundationModel plus the self-supervised objectives named in `config.objectives` (name -> weight).

    `FoundationModel.from_pretrained` loads the backbone out of a checkpoint of this class and vice versa
    (the backbone lives under `base_model_prefix = "foundation"`; objective heads start fresh).

    Args:
        config: `FoundationConfig` with `objectives`, e.g. {"next_event": 1.0, "masked": 0.5, "contrastive": 0.2}.
    Raises:
        ValueError: empty `objectives` or an unknown objective name (the message lists the valid ones).
    """

    def __init__(self, config: FoundationConfig):
        super().__init__(config)
        if not config.objectives:
            raise ValueError("config.objectives is empty; name at least one, e.g. {'next_event': 1.0}")
        self.foundation = FoundationModel(config)
        self.objectives = nn.ModuleDict({name: build_objective(name, config) for name in config.objectives})
        self.post_init()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> FoundationPretrainingOutput:
        """Run the model (and a second, masked pass when the masked objective is on) and every objective.

        Args:
            batch: the collate dict.
        Returns:
            `FoundationPretrainingOutput` with the weighted total `loss`, per-objective `losses` and `metrics`.
        """
        outputs = self.foundation(batch)
        losses, metrics = {}, {}
        for name, objective in self.objectives.items():
            if objective.uses_mask_positions:
                mask_positions = objective.choose_positions(batch)
                result = objective(self.foundation(batch, mask_positions=mask_positions), batch, mask_positions)
            else:
                result = objective(outputs, batch)
            losses[name] = result.pop("loss")
            metrics.update({f"{name}/{key}": value for key, value in result.items()})
        loss = sum(float(self.config.objectives[name]) * value for name, value in losses.items())
        # Some parameters take no part in a given step: fields absent from this entity type's batch (their
        # embedding and heads), the [MASK] vector without the masked objective. DDP with
        # find_unused_parameters=False then fails; a zero-weighted sum over all parameters gives every one
        # a (zero) gradient at the cost of one reduction per tensor, and leaves the loss value unchanged.
        loss = loss + 0.0 * sum(param.sum() for param in self.parameters() if param.requires_grad)
        return FoundationPretrainingOutput(
            loss=loss,
            losses=losses,
            metrics=metrics,
            last_hidden_state=outputs.last_hidden_state,
            entity_embedding=outputs.entity_embedding,
        )
