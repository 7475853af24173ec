"""Causal sequence encoders over event embeddings: a pre-LN transformer (SDPA), a GRU and a minGRU stack.

All map (B,T,H) event embeddings to (B,T,H) hidden states where position i depends only on events
0..i, so the hidden state at i is the point-in-time state of the entity right after event i.
Batches are right-padded; outputs at padded positions are meaningless and zeroed by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from foundation.model.configuration import FoundationConfig
from foundation.model.scan import MinGRU

MS_PER_MINUTE = 60_000.0


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes 2^(-8h/n), h = 1..n (Press et al. 2022): a geometric range of time scales.

    Returns:
        (num_heads,) float tensor.
    """
    return torch.pow(2.0, -8.0 * torch.arange(1, num_heads + 1, dtype=torch.float32) / num_heads)


def time_alibi_bias(event_time: torch.Tensor, attention_mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Additive attention bias from real time gaps, with the causal and padding masks folded in.

    bias[b, h, i, j] = -slope_h * log1p(|t_i - t_j| / 1 minute) for j <= i on a real key, -inf otherwise.
    Relative in time: shifting every event time of a window by a constant leaves it unchanged. The log
    keeps minutes and months within one head's reach; the slopes let heads focus on different horizons.

    Args:
        event_time: (B,T) int64 epoch milliseconds.
        attention_mask: (B,T) bool, True on real events.
        num_heads: attention heads.
    Returns:
        (B, num_heads, T, T) float32 bias.
    """
    seq_len = event_time.shape[1]
    # Differences in int64 first: epoch ms exceed float32 precision, gaps do not.
    gap = (event_time.unsqueeze(2) - event_time.unsqueeze(1)).abs().float() / MS_PER_MINUTE  # (B, T, T)
    distance = torch.log1p(gap)
    slopes = alibi_slopes(num_heads).to(event_time.device)
    bias = -slopes.view(1, -1, 1, 1) * distance.unsqueeze(1)  # (B, nh, T, T)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=event_time.device).tril()
    # The diagonal stays open even on padding so that no query row is fully masked (SDPA would give NaN).
    diagonal = torch.eye(seq_len, dtype=torch.bool, device=event_time.device)
    allowed = causal & (attention_mask.bool().unsqueeze(1) | diagonal)  # (B, T, T)
    return bias.masked_fill(~allowed.unsqueeze(1), float("-inf"))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through `F.scaled_dot_product_attention`."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.out.is_residual_projection = True  # scaled init, see FoundationPreTrainedModel._init_weights
        self.dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x: (B,T,H); bias: (B,nh,T,T) additive mask or None for a plain causal mask. Returns (B,T,H)."""
        batch_size, seq_len, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=-1)
        # (B, T, H) -> (B, nh, T, hd)
        q, k, v = (t.view(batch_size, seq_len, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0
        if bias is None:
            # Right padding + causality already hide padded keys from real queries; this path can use
            # the fused flash/efficient kernels.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(batch_size, seq_len, hidden)  # (B, T, H)
        return self.out(y)


class FeedForward(nn.Module):
    """Position-wise MLP H -> intermediate -> H with GELU."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.down.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class TransformerBlock(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + mlp(LN(x)); stable without warm-up tricks."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = CausalSelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), bias))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))  # (B, T, H)


class TransformerEncoder(nn.Module):
    """Stack of causal pre-LN blocks with a final LayerNorm; time-aware through the time-ALiBi bias."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.time_alibi = config.time_encoding == "time_alibi"
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, event_time: torch.Tensor) -> torch.Tensor:
        """x: (B,T,H) event embeddings; attention_mask: (B,T) bool; event_time: (B,T) int64 ms -> (B,T,H)."""
        # One bias for all layers: it depends only on the event times.
        bias = time_alibi_bias(event_time, attention_mask, self.num_heads) if self.time_alibi else None
        for block in self.blocks:
            x = block(x, bias)
        return self.final_norm(x)


class GRUEncoder(nn.Module):
    """Multi-layer GRU behind the same interface; causal by construction, ignores event_time (the gap
    features are already in the event embedding)."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.gru = nn.GRU(
            config.hidden_size, config.hidden_size, num_layers=config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, event_time: torch.Tensor) -> torch.Tensor:
        """Same contract as `TransformerEncoder.forward`. Right padding comes after the real events, so
        running the GRU over it cannot change the real positions; no packing needed."""
        output, _ = self.gru(x)  # (B, T, H)
        return self.final_norm(output)


class MinGRUBlock(nn.Module):
    """Pre-LN block with the attention replaced by a minGRU layer: x + minGRU(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.recurrence_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.recurrence = MinGRU(config.hidden_size, config.hidden_size)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.recurrence(self.recurrence_norm(x)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))  # (B, T, H)

    def step(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B,D), x (B,H) -> (state (B,D), output (B,H)) for one event."""
        state, update = self.recurrence.step(state, self.recurrence_norm(x))
        x = x + self.dropout(update)
        return state, x + self.dropout(self.mlp(self.mlp_norm(x)))


class MinGRUEncoder(nn.Module):
    """Stacked minGRU blocks (foundation/model/scan.py) with a final LayerNorm: trains in parallel over the
    window like the transformer, serves like an RNN with a fixed-size state per entity.

    Ignores event_time like the GRU (the gap features are already in the event embedding).

    Example:
        >>> import torch
        >>> from foundation.model import FoundationConfig
        >>> fields = [{"name": "time", "kind": "time", "num_bins": 10}]
        >>> encoder = MinGRUEncoder(FoundationConfig(fields=fields, hidden_size=8, num_layers=2,
        ...                                          intermediate_size=16, encoder_type="mingru")).eval()
        >>> x = torch.randn(2, 5, 8)
        >>> hidden = encoder(x, torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.long))
        >>> state = encoder.initial_state(batch_size=2)
        >>> for t in range(5):
        ...     state, h_t = encoder.step(state, x[:, t])
        >>> torch.allclose(h_t, hidden[:, -1], atol=1e-5), tuple(state.shape)
        (True, (2, 2, 8))
    """

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.blocks = nn.ModuleList(MinGRUBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, event_time: torch.Tensor) -> torch.Tensor:
        """Same contract as `TransformerEncoder.forward`. Right padding comes after the real events, so the
        recurrence over it cannot change the real positions."""
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)  # (B, T, H)

    def initial_state(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The state before any event: zeros (B, num_layers, D)."""
        weight = self.final_norm.weight
        state_size = self.blocks[0].recurrence.gate_bias.shape[0]
        return torch.zeros(batch_size, len(self.blocks), state_size,
                           device=device or weight.device, dtype=dtype or weight.dtype)

    def step(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every entity by one event.

        Args:
            state: (B, num_layers, D) from `initial_state` or the previous step.
            x: (B,H) the event embedding.
        Returns:
            (new state (B, num_layers, D), hidden state (B,H) equal to `forward`'s output at this event).
        """
        layer_states = []
        for layer, block in enumerate(self.blocks):
            layer_state, x = block.step(state[:, layer], x)
            layer_states.append(layer_state)
        return torch.stack(layer_states, dim=1), self.final_norm(x)


def build_encoder(config: FoundationConfig) -> nn.Module:
    """The sequence encoder named by `config.encoder_type`."""
    encoders = {"transformer": TransformerEncoder, "gru": GRUEncoder, "mingru": MinGRUEncoder}
    if config.encoder_type not in encoders:
        raise ValueError(f"encoder_type {config.encoder_type!r} is not one of {sorted(encoders)}")
    return encoders[config.encoder_type](config)


def residual_init_std(config: FoundationConfig) -> float:
    """GPT-2 style: residual output projections start smaller so the residual stream's variance does not
    grow with depth."""
    return config.initializer_range / math.sqrt(2 * config.num_layers)
