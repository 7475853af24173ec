"""Causal sequence encoders over event embeddings: a pre-LN transformer (SDPA) and a GRU.

Both map (B,T,H) event embeddings to (B,T,H) hidden states where position i depends only on events
0..i, so the hidden state at i is the point-in-time state of the entity right after event i.
Batches are right-padded; outputs at padded positions are meaningless and zeroed by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from foundation.model.configuration import FoundationConfig

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


def build_encoder(config: FoundationConfig) -> nn.Module:
    """The sequence encoder named by `config.encoder_type`."""
    encoders = {"transformer": TransformerEncoder, "gru": GRUEncoder}
    if config.encoder_type not in encoders:
        raise ValueError(f"encoder_type {config.encoder_type!r} is not one of {sorted(encoders)}")
    return encoders[config.encoder_type](config)


def residual_init_std(config: FoundationConfig) -> float:
    """GPT-2 style: residual output projections start smaller so the residual stream's variance does not
    grow with depth."""
    return config.initializer_range / math.sqrt(2 * config.num_layers)
