"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): a gated linear recurrence that trains in parallel.

    z_t = sigmoid(W_z x_t + b_z)                 # update gate, from the input alone
    h_t = (1 - z_t) * h_{t-1} + z_t * g(W_h x_t)   # g > 0 (below), h_0 = 0

The gate and the candidate depend on x_t only, never on h_{t-1}, so the recurrence is linear in h:
h_t = a_t * h_{t-1} + b_t with a_t = 1 - z_t in (0, 1) and b_t = z_t * g(.) > 0. A linear recurrence has a
closed form, h_t = sum_{s<=t} (prod_{s<r<=t} a_r) b_s, that is evaluated for all t at once.

Why minGRU in log-space rather than an LRU-style complex diagonal recurrence: the state is real and positive,
so the closed form is `exp(a*_t + logcumsumexp(log b - a*))` with `a* = cumsum(log a)`: a few elementwise
ops and one cumulative op per layer, no complex numbers and no hand-written scan kernel, and each step of
the serving form is three elementwise ops on a (B, D) state. Why log-space at all: the products
prod a_r underflow after a few dozen events in float32, their logs do not. What keeps it numerically safe:
the scan runs in chunks of `SCAN_CHUNK` events and carries log h between chunks, so |a*| stays bounded
by the chunk length and the cancellation in `a* + logcumsumexp(...)` costs no more than a chunk's worth of
float32 precision, however long the history.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SCAN_CHUNK = 64


def positive_activation(x: torch.Tensor) -> torch.Tensor:
    """g(x) = x + 0.5 for x >= 0, sigmoid(x) below: continuous, increasing and > 0, so log h exists."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_positive_activation(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without forming g(x) for very negative x (log sigmoid = -softplus(-x))."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def log_linear_scan(log_a: torch.Tensor, log_b: torch.Tensor, chunk_size: int = SCAN_CHUNK) -> torch.Tensor:
    """log h_t of h_t = a_t * h_{t-1} + b_t, h_0 = 0, for every t at once (positive a, b).

    Args:
        log_a: (B,T,D) log of the decay a_t in (0, 1).
        log_b: (B,T,D) log of the input b_t > 0.
        chunk_size: events per chunk; chunks run in sequence, each carrying log h into the next.
    Returns:
        (B,T,D) log h_t.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks, log_h0 = [], None
    for start in range(0, log_a.shape[1], chunk_size):
        log_a_chunk = log_a[:, start:start + chunk_size]  # (B, C, D)
        a_star = log_a_chunk.cumsum(dim=1)  # log prod_{r<=t} a_r within the chunk, (B, C, D)
        log_h = a_star + torch.logcumsumexp(log_b[:, start:start + chunk_size] - a_star, dim=1)
        if log_h0 is not None:  # the state carried in from the previous chunk decays by the same products
            log_h = torch.logaddexp(log_h, a_star + log_h0.unsqueeze(1))
        chunks.append(log_h)
        log_h0 = log_h[:, -1]  # (B, D)
    return torch.cat(chunks, dim=1)


class MinGRU(nn.Module):
    """One minGRU layer H -> D (state) -> H: parallel `forward` over a window, `step` over one event.

    Args:
        hidden_size: input and output width H.
        state_size: recurrent state width D.
        max_timescale: the gate biases start with retention 1 - z spread log-uniformly over time constants of
            1 .. `max_timescale` events, so some channels remember far back from the first step (a zero bias
            would make every channel forget half of its state at every event).
    """

    def __init__(self, hidden_size: int, state_size: int, max_timescale: float = 64.0):
        super().__init__()
        self.in_proj = nn.Linear(hidden_size, 2 * state_size, bias=False)  # gate logits and candidate
        # A plain Parameter, not a Linear bias: the model's generic init zeroes Linear biases.
        timescale = torch.logspace(0.0, math.log10(max_timescale), state_size)
        retention = torch.exp(-1.0 / timescale)  # 1 - z at zero input
        self.gate_bias = nn.Parameter(torch.log((1.0 - retention) / retention))
        self.out = nn.Linear(state_size, hidden_size)
        self.out.is_residual_projection = True  # scaled init, see FoundationPreTrainedModel._init_weights

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate_logit, candidate = self.in_proj(x).chunk(2, dim=-1)
        return gate_logit + self.gate_bias, candidate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,T,H) -> (B,T,H), position t from events 0..t only."""
        gate_logit, candidate = self._gates(x)  # (B, T, D) each
        # The scan runs in float32 at least: a bf16 cumulative sum of log-decays loses the state within a
        # few dozen events (8 mantissa bits), and autocast leaves cumsum/logcumsumexp in the input's dtype.
        scan_dtype = torch.promote_types(gate_logit.dtype, torch.float32)
        gate_logit, candidate = gate_logit.to(scan_dtype), candidate.to(scan_dtype)
        log_a = -F.softplus(gate_logit)  # log(1 - z)
        log_b = -F.softplus(-gate_logit) + log_positive_activation(candidate)  # log z + log g(candidate)
        state = log_linear_scan(log_a, log_b).exp()  # (B, T, D)
        return self.out(state.to(x.dtype))

    def step(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One event: state (B,D), x (B,H) -> (new state (B,D), output (B,H)); the plain recurrence."""
        gate_logit, candidate = self._gates(x)  # (B, D) each
        z = torch.sigmoid(gate_logit)
        state = (1.0 - z) * state + z * positive_activation(candidate)
        return state, self.out(state)
