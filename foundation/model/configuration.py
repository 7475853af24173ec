"""FoundationConfig: every architecture field of the payment-entity foundation model, once."""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from foundation.batch import parse_field_specs


@strict
class FoundationConfig(PreTrainedConfig):
    r"""Configuration of `FoundationModel` and `FoundationForPretraining`.

    Saved as `config.json` next to `model.safetensors`; a model is rebuilt from it alone.

    Args:
        fields (`list[dict]`):
            Field specs from `EventTokenizer.field_specs()` (docs/architecture.md section 4), including the
            one `{"name": "time", "kind": "time", "num_bins": N}` spec. The model embeds the union of the
            fields of all entity types; a batch may carry a subset (fields absent from it contribute nothing).
        entity_types (`list[str]`):
            Names indexed by `batch["entity_type"]` (`EventTokenizer.entity_types`).
        hidden_size (`int`): width H of event embeddings and hidden states.
        num_layers (`int`): transformer blocks or GRU layers.
        num_heads (`int`): attention heads (transformer only); must divide `hidden_size`.
        intermediate_size (`int`): feed-forward width of a transformer block.
        dropout (`float`): dropout on the event embeddings and the residual branches.
        attention_dropout (`float`): dropout on attention probabilities. Off by default (as in most recent
            decoders): it forces SDPA off the fused kernel onto one that draws a (B,heads,T,T) random mask,
            which nearly doubled the CPU training step of `small` when measured.
        max_position (`int`): window length the model is trained on; the size of the learned index
            position table when one is used (`time_encoding="learned"` or `index_position=True`).
        encoder_type (`str`): `"transformer"` (causal, SDPA), `"gru"`, or `"mingru"` (a minGRU stack trained
            by a parallel scan, served one event at a time: foundation/model/scan.py).
        time_encoding (`str`): position signal of the transformer: `"time_alibi"` (per-head attention bias
            `-slope_h * log1p(|t_i - t_j| / 1 min)` from real event times), `"learned"` (learned index
            positions), `"none"` (order only through the causal mask and the gap features).
        index_position (`bool`): also add learned index positions when `time_encoding="time_alibi"`.
        event_combine (`str`): how field embeddings form one event vector: `"concat"` (concatenate, then
            project to H; the default: it learned the next-event task much faster than `"sum"` in a
            side-by-side run, see docs/guide/model.md) or `"sum"`.
        text_pooling (`str`): how a text field's subword embeddings are pooled; `"mean"` over non-pad tokens.
        layer_norm_eps (`float`): epsilon of every LayerNorm.
        initializer_range (`float`): std of the normal init of linear and embedding weights.
        objectives (`dict[str, float]`): pretraining objective name -> loss weight, used by
            `FoundationForPretraining`; names: `next_event`, `masked`, `contrastive`, `horizon`, `recent`.
        mask_probability (`float`): share of real events the masked objective hides (at least one per sequence).
        contrastive_temperature (`float`): InfoNCE temperature of the contrastive objective.
        contrastive_dim (`int`): output width of the contrastive projection head.
        horizon_hours (`list[float]`): horizons of the `horizon` objective (which outcomes arrive within h).
        recent_hours (`list[float]`): windows of the `recent` objective (the entity's event count and mean
            numeric values over the past w, recounted from each state).
        recent_outcome_shares (`bool`): the `recent` objective also recounts the share of each value of every
            categorical outcome field (event_type, decline_code) over each window (on by default: without them
            the recent objective cost the default world's customer_distress R² 0.197 -> 0.103; with them 0.218).

    Example:
        >>> from foundation.model import FoundationConfig, FoundationModel
        >>> fields = [{"name": "mcc", "kind": "categorical", "vocab_size": 12},
        ...           {"name": "time", "kind": "time", "num_bins": 10}]
        >>> config = FoundationConfig(fields=fields, entity_types=["customer"], hidden_size=32, num_layers=2,
        ...                           num_heads=2, intermediate_size=64)
        >>> model = FoundationModel(config)
    """

    model_type = "payment_foundation"
    # HF-wide names (used by generic utilities) alias the short names used here.
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}

    fields: list[dict] | None = None
    entity_types: list[str] | None = None
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    max_position: int = 256
    encoder_type: Literal["transformer", "gru", "mingru"] = "transformer"
    time_encoding: Literal["time_alibi", "learned", "none"] = "time_alibi"
    index_position: bool = False
    event_combine: Literal["sum", "concat"] = "concat"
    text_pooling: Literal["mean"] = "mean"
    layer_norm_eps: float | int = 1e-5
    initializer_range: float | int = 0.02
    objectives: dict[str, float | int] | None = None
    mask_probability: float | int = 0.15
    contrastive_temperature: float | int = 0.1
    contrastive_dim: int = 128
    horizon_hours: list[float] | None = None
    recent_hours: list[float] | None = None
    recent_outcome_shares: bool = True

    def __post_init__(self, **kwargs):
        # Mutable defaults are filled here: dataclass fields cannot default to a shared list/dict.
        if self.fields is None:
            self.fields = []
        if self.entity_types is None:
            self.entity_types = []
        if self.objectives is None:
            self.objectives = {"next_event": 1.0}
        if self.horizon_hours is None:
            self.horizon_hours = [24.0, 168.0]
        if self.recent_hours is None:
            self.recent_hours = [1.0, 24.0, 168.0]
        super().__post_init__(**kwargs)

    @property
    def uses_index_position(self) -> bool:
        """Whether the event embedding adds a learned index position (bounded by `max_position`)."""
        return self.time_encoding == "learned" or self.index_position

    def validate_architecture(self):
        """Part of `@strict` validation: sizes, field specs and loss settings make sense together."""
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position",
                     "contrastive_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.encoder_type == "transformer" and self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.mask_probability < 1.0:
            raise ValueError(f"mask_probability must be in (0, 1), got {self.mask_probability}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        for name, weight in self.objectives.items():
            if weight < 0:
                raise ValueError(f"objectives['{name}']: weight must be >= 0, got {weight}")
        if len(set(self.entity_types)) != len(self.entity_types):
            raise ValueError(f"entity_types must be unique, got {self.entity_types}")
        parse_field_specs(self.fields)


__all__ = ["FoundationConfig"]
