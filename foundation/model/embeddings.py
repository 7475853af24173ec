"""Event embedding: all fields of one event -> one H-vector.

Each field kind has its own small encoder reading its batch keys (docs/architecture.md section 5):

    categorical  <cat> (B,T)                      -> id embedding (padding_idx 0)
    numeric      <num>_bin, <num>_value (B,T)     -> bin embedding + linear(value)
    text         <text>_tokens (B,T,K)            -> subword embeddings, mean over non-pad tokens
    time         time_gap_bin, time_gap, hour, dow -> gap-bin emb + linear(log gap) + hour emb + dow emb

The content fields are combined (summed, or concatenated and projected), optionally replaced by a learned
[MASK] vector at `mask_positions`, and then the time features, the entity-type embedding and (optionally)
a learned index position are added, followed by LayerNorm and dropout. Time features are never masked:
the masked-event objective predicts an event's content knowing when it happened.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from foundation.batch import DOW_VOCAB_SIZE, HOUR_VOCAB_SIZE, FieldSpec, parse_field_specs
from foundation.model.configuration import FoundationConfig

# time_gap is log1p(seconds): 0..~17 for gaps up to a year. Dividing brings it near the unit range of the
# standardised numeric values so that neither dominates the sum at init.
TIME_GAP_SCALE = 10.0


class CategoricalEmbedding(nn.Module):
    """Categorical ids (B,T) -> (B,T,H); id 0 (padding) embeds to zero."""

    def __init__(self, spec: FieldSpec, hidden_size: int):
        super().__init__()
        self.key = spec.name
        self.embedding = nn.Embedding(spec.vocab_size, hidden_size, padding_idx=0)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding(batch[self.key])  # (B, T, H)


class NumericEmbedding(nn.Module):
    """Numeric field: quantile-bin embedding + a linear map of the standardised value; (B,T) -> (B,T,H).

    The bin carries the coarse level and the null flag (bin 1); the value adds within-bin resolution.
    Non-finite values (a null encoded as NaN) and padding contribute no value term.
    """

    def __init__(self, spec: FieldSpec, hidden_size: int):
        super().__init__()
        self.bin_key, self.value_key = f"{spec.name}_bin", f"{spec.name}_value"
        self.bin_embedding = nn.Embedding(spec.num_bins, hidden_size, padding_idx=0)
        self.value_projection = nn.Linear(1, hidden_size, bias=False)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        bins = batch[self.bin_key]  # (B, T)
        value = batch[self.value_key].float()
        value = torch.where(torch.isfinite(value) & (bins > 1), value, torch.zeros_like(value))
        return self.bin_embedding(bins) + self.value_projection(value.unsqueeze(-1))  # (B, T, H)


class TextEmbedding(nn.Module):
    """Text field: subword ids (B,T,K) -> mean of the non-pad token embeddings (B,T,H); no tokens -> zero.

    `nn.EmbeddingBag(mode="mean", padding_idx=0)` excludes pad ids from the mean without materialising
    the (B,T,K,H) tensor.
    """

    def __init__(self, spec: FieldSpec, hidden_size: int):
        super().__init__()
        self.key = f"{spec.name}_tokens"
        self.embedding = nn.EmbeddingBag(spec.vocab_size, hidden_size, mode="mean", padding_idx=0)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        tokens = batch[self.key]  # (B, T, K)
        batch_size, seq_len, num_tokens = tokens.shape
        pooled = self.embedding(tokens.reshape(batch_size * seq_len, num_tokens))  # (B*T, H)
        return pooled.view(batch_size, seq_len, -1)  # (B, T, H)


class TimeEmbedding(nn.Module):
    """Time features -> (B,T,H): gap-bin embedding + linear(log gap) + hour and day-of-week embeddings."""

    def __init__(self, spec: FieldSpec, hidden_size: int):
        super().__init__()
        self.gap_bin_embedding = nn.Embedding(spec.num_bins, hidden_size, padding_idx=0)
        self.gap_projection = nn.Linear(1, hidden_size, bias=False)
        self.hour_embedding = nn.Embedding(HOUR_VOCAB_SIZE, hidden_size, padding_idx=0)
        self.dow_embedding = nn.Embedding(DOW_VOCAB_SIZE, hidden_size, padding_idx=0)

    def forward(self, batch: Mapping[str, torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        gap = batch["time_gap"].float() / TIME_GAP_SCALE
        gap = torch.where(attention_mask & torch.isfinite(gap), gap, torch.zeros_like(gap))  # (B, T)
        return (
            self.gap_bin_embedding(batch["time_gap_bin"])
            + self.gap_projection(gap.unsqueeze(-1))
            + self.hour_embedding(batch["hour"])
            + self.dow_embedding(batch["dow"])
        )  # (B, T, H)


_FIELD_EMBEDDINGS = {"categorical": CategoricalEmbedding, "numeric": NumericEmbedding, "text": TextEmbedding}


class FoundationEventEmbedding(nn.Module):
    """Embeds every event of a padded batch: (B,T) fields -> (B,T,H).

    Args:
        config: `FoundationConfig`; reads `fields`, `entity_types`, `hidden_size`, `event_combine`,
            `max_position`, `time_encoding`/`index_position`, `layer_norm_eps`, `dropout`.

    Example:
        >>> from foundation.model import FoundationConfig
        >>> from foundation.model.embeddings import FoundationEventEmbedding
        >>> fields = [{"name": "mcc", "kind": "categorical", "vocab_size": 12},
        ...           {"name": "time", "kind": "time", "num_bins": 10}]
        >>> config = FoundationConfig(fields=fields, entity_types=["customer"], hidden_size=8, num_heads=2)
        >>> batch = {"mcc": torch.tensor([[2, 5, 0]]), "time_gap_bin": torch.tensor([[1, 3, 0]]),
        ...          "time_gap": torch.tensor([[0.0, 4.2, 0.0]]), "hour": torch.tensor([[9, 10, 0]]),
        ...          "dow": torch.tensor([[1, 1, 0]]), "entity_type": torch.tensor([0]),
        ...          "attention_mask": torch.tensor([[True, True, False]])}
        >>> FoundationEventEmbedding(config)(batch).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, config: FoundationConfig):
        super().__init__()
        specs = parse_field_specs(config.fields)
        time_specs = [spec for spec in specs if spec.kind == "time"]
        if not time_specs:
            raise ValueError(
                "FoundationConfig.fields needs one spec of kind 'time' "
                "(EventTokenizer.field_specs() always includes {'name': 'time', 'kind': 'time', ...})"
            )
        if not config.entity_types:
            raise ValueError("FoundationConfig.entity_types is empty; pass EventTokenizer.entity_types")
        hidden = config.hidden_size
        self.content_specs = [spec for spec in specs if spec.kind != "time"]
        self.fields = nn.ModuleDict(
            {spec.name: _FIELD_EMBEDDINGS[spec.kind](spec, hidden) for spec in self.content_specs}
        )
        self.time = TimeEmbedding(time_specs[0], hidden)
        self.entity_type = nn.Embedding(len(config.entity_types), hidden)
        self.position = nn.Embedding(config.max_position, hidden) if config.uses_index_position else None
        # Concatenation keeps each field in its own slice of a wider vector; the projection mixes them.
        concat = config.event_combine == "concat" and len(self.content_specs) > 0
        self.projection = nn.Linear(len(self.content_specs) * hidden, hidden) if concat else None
        self.mask_embedding = nn.Parameter(torch.zeros(hidden))  # [MASK]; initialised by _init_weights
        self.layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def _block(self, index: int) -> torch.Tensor | None:
        """(H, H) column block of the concat projection that field `index` goes through (None: sum mode)."""
        if self.projection is None:
            return None
        hidden = self.mask_embedding.shape[0]
        return self.projection.weight[:, index * hidden:(index + 1) * hidden]

    def _lookup_tables(self, present: tuple[bool, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The stacked id table (1 + sum of vocabularies, H) of the present id fields, each E_f @ W_f^T after
        the zero padding row, and the (n_numeric, H) value vectors W_f @ v_f (None when there are none).

        Without gradients (inference, evaluation) they are kept until a weight changes (its `_version` moves
        on: an optimizer step, `load_state_dict`, a device or dtype move gives new tensors): a single-event
        forward then costs lookups, not one (vocab, H) @ (H, H) product per field. The cached tensors are the
        ones this method computes, so the output is the same either way.
        """
        if torch.is_grad_enabled():
            return self._compute_tables(present)
        key = (present, tuple((id(w), w.data_ptr(), w._version, w.dtype, w.device) for w in self._table_weights()))
        cached = getattr(self, "_tables_cache", None)
        if cached is None or cached[0] != key:
            # plain tensors (not inference tensors): usable in any later no-grad pass, copyable with the module
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, self._compute_tables(present))
            self._tables_cache = cached
        return cached[1]

    def _table_weights(self) -> list[torch.Tensor]:
        """The weights the lookup tables are built from (read each time: a replaced module is seen)."""
        weights = [] if self.projection is None else [self.projection.weight]
        for spec in self.content_specs:
            module = self.fields[spec.name]
            if spec.kind == "categorical":
                weights.append(module.embedding.weight)
            elif spec.kind == "numeric":
                weights += [module.bin_embedding.weight, module.value_projection.weight]
        return weights

    def _compute_tables(self, present: tuple[bool, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        hidden = self.mask_embedding.shape[0]
        dtype, device = self.mask_embedding.dtype, self.mask_embedding.device
        tables, value_vectors = [], []
        for index, (spec, is_present) in enumerate(zip(self.content_specs, present)):
            if not is_present or spec.kind == "text":
                continue
            module, block = self.fields[spec.name], self._block(index)
            if spec.kind == "categorical":
                table = module.embedding.weight
            else:
                table = module.bin_embedding.weight
                vector = module.value_projection.weight[:, 0]  # (H,)
                value_vectors.append(vector if block is None else block @ vector)
            tables.append(table if block is None else table @ block.T)  # (vocab, H)
        stacked = torch.cat([torch.zeros(1, hidden, dtype=dtype, device=device), *tables]) if tables else None
        return stacked, torch.stack(value_vectors) if value_vectors else None

    def content(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Combined content fields (everything but time) -> (B,T,H).

        Definition: the sum over present fields of `W_f @ part_f` (concat-then-project computed one field's
        column block W_f at a time; W_f = I when summing), plus the projection bias. Computed fused: every
        id lookup (categorical ids, numeric bins) goes through one `embedding_bag` over the tables E_f @ W_f^T
        stacked with offsets (padding ids mapped to one zero row that gets no gradient), every numeric value
        through one matmul, text through its EmbeddingBag; the same sum as a loop over fields, in a handful of
        kernels instead of three per field, with no (B,T,H) tensor per field.

        Raises:
            KeyError: the batch carries none of the model's content fields, or a field only partly.
        """
        present = [spec.present_in(batch) for spec in self.content_specs]
        if self.content_specs and not any(present):
            expected = [key for spec in self.content_specs for key in spec.batch_keys]
            raise KeyError(f"the batch has none of the model's fields {expected}; batch keys: {sorted(batch)}")
        reference = batch["attention_mask"]
        hidden = self.mask_embedding.shape[0]
        dtype = self.mask_embedding.dtype
        total = torch.zeros((reference.numel(), hidden), dtype=dtype, device=reference.device)
        stacked, value_vectors = self._lookup_tables(tuple(present))
        ids, offsets, values, bins = [], [], [], []
        offset = 1  # row 0 of the stacked table: the shared padding row
        for index, (spec, is_present) in enumerate(zip(self.content_specs, present)):
            if not is_present:
                continue
            module, block = self.fields[spec.name], self._block(index)
            if spec.kind == "text":
                part = module(batch).reshape(-1, hidden)  # (N, H)
                total = total + (part if block is None else F.linear(part, block))
                continue
            if spec.kind == "categorical":
                table, key = module.embedding.weight, module.key
            else:  # numeric: bin lookup + value projection
                table, key = module.bin_embedding.weight, module.bin_key
                bins.append(batch[module.bin_key].reshape(-1))
                values.append(batch[module.value_key].float().reshape(-1))
            ids.append(batch[key].reshape(-1))
            offsets.append(offset)
            offset += table.shape[0]
        # Every field's ids shifted to its block of the stacked table in one op (a few per batch, not per field).
        if ids:
            field_ids = torch.stack(ids, dim=1)  # (N, n_id_fields)
            shift = torch.tensor(offsets, dtype=field_ids.dtype, device=field_ids.device)
            shifted = torch.where(field_ids > 0, field_ids + shift, torch.zeros_like(field_ids))
            total = total + F.embedding_bag(shifted, stacked, mode="sum", padding_idx=0)
        if values:
            value, value_bins = torch.stack(values, dim=1), torch.stack(bins, dim=1)  # (N, n_numeric)
            value_matrix = torch.where(torch.isfinite(value) & (value_bins > 1), value, torch.zeros_like(value))
            total = total + value_matrix.to(dtype) @ value_vectors  # (N, H)
        if self.projection is not None:
            total = total + self.projection.bias
        return total.view(*reference.shape, hidden)  # (B, T, H)

    def forward(
        self, batch: Mapping[str, torch.Tensor], mask_positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed a batch.

        Args:
            batch: the collate batch; needs `attention_mask`, `entity_type`, the time keys and at least one
                content field of the model.
            mask_positions: optional (B,T) bool; True events get the learned [MASK] vector instead of their
                content fields (their time features stay).
        Returns:
            (B,T,H) event embeddings.
        """
        attention_mask = batch["attention_mask"].bool()
        x = self.content(batch)  # (B, T, H)
        if mask_positions is not None:
            if mask_positions.shape != attention_mask.shape:
                raise ValueError(
                    f"mask_positions has shape {tuple(mask_positions.shape)}, expected (B, T) = "
                    f"{tuple(attention_mask.shape)}"
                )
            x = torch.where(mask_positions.bool().unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = x + self.time(batch, attention_mask) + self.entity_type(batch["entity_type"]).unsqueeze(1)
        if self.position is not None:
            seq_len = x.shape[1]
            x = x + self.position(torch.arange(seq_len, device=x.device))  # (T, H) broadcast over B
        return self.dropout(self.layer_norm(x))  # (B, T, H)
