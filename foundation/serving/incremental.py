"""Incremental point-in-time states: one recurrent step per ingested event instead of a window pass.

The window rule (foundation.pointintime.windows): the state of event i is the causal encoder's output over
[window_start(i), i], and every event of a block [kS, (k+1)S) shares one start. Inside a block the state of
event i + 1 therefore follows from what the pass over [start, i] left behind:
- GRU: the hidden state of every layer after event i (L, 1, H); one `nn.GRU` step with it as h0.
- Transformer: the keys and values of every layer over [start, i] and the event times; the new event's query
  attends over them plus its own key, with the time-ALiBi bias recomputed from the stored times (the bias is
  relative in time, so nothing cached depends on the new event).
- An encoder with its own `initial_state` / `step` (minGRU): its state.
At a block boundary the window start moves and the carry is rebuilt by one pass over the new window (`prefill`).
`advance` and `prefill_many` do the same for many entities in one right-padded batch.

The functions read the encoder modules of `foundation.model.encoder` as they are (weights and layout) and
repeat their arithmetic, so they equal `FoundationModel.forward` on the window up to float reassociation
(tests/serving/test_incremental.py holds them to 1e-5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foundation.model.encoder import MS_PER_MINUTE, alibi_slopes, time_alibi_bias

Carry = Any  # GRU: (L, 1, H) tensor; transformer: TransformerCarry; an encoder with its own `step`: its state
KINDS = ("gru", "transformer")


def supports(model: Any) -> bool:
    """Whether `IncrementalEncoder` can advance this model's encoder: GRU, transformer, or any encoder with its
    own `initial_state(batch_size)` and `step(state, x (B, H)) -> (state, hidden (B, H))`."""
    encoder = model.encoder
    return model.config.encoder_type in KINDS or (hasattr(encoder, "step") and hasattr(encoder, "initial_state"))


@dataclass(frozen=True)
class TransformerCarry:
    """Per-layer keys and values of the window so far, and its event times.

    Args:
        keys, values: one (1, nh, T, hd) tensor per layer.
        times: (T,) int64 epoch ms of the window's events.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    times: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = (*self.keys, *self.values, self.times)
        return sum(t.numel() * t.element_size() for t in tensors)


def carry_nbytes(carry: Carry) -> int:
    """Bytes held by a carry (the state-size table of docs/guide/serving.md)."""
    if isinstance(carry, TransformerCarry):
        return carry.nbytes
    return carry.numel() * carry.element_size()


class IncrementalEncoder:
    """Window passes that also return the carry, and single-event steps from a carry.

    Args:
        model: FoundationModel in eval mode (GRU or transformer encoder).
    """

    def __init__(self, model: Any):
        self.model = model
        self.encoder = model.encoder
        if not supports(model):
            raise ValueError(f"no incremental state for encoder_type {model.config.encoder_type!r}")
        self.kind = model.config.encoder_type if model.config.encoder_type in KINDS else "step"

    def embed(self, batch: Mapping[str, torch.Tensor], offsets: int | torch.Tensor = 0) -> torch.Tensor:
        """(B, T, H) event embeddings of a batch whose row b starts at position offsets[b] of its window (only
        learned index positions depend on it; an int: every row)."""
        emb = self.model.embeddings
        if emb.position is None or (isinstance(offsets, int) and offsets == 0):
            return emb(batch)
        mask = batch["attention_mask"].bool()
        x = emb.content(batch) + emb.time(batch, mask) + emb.entity_type(batch["entity_type"]).unsqueeze(1)
        start = torch.as_tensor(offsets, device=x.device).reshape(-1, 1)  # (B or 1, 1)
        positions = (start + torch.arange(mask.shape[1], device=x.device)).clamp(max=emb.position.num_embeddings - 1)
        return emb.dropout(emb.layer_norm(x + emb.position(positions)))  # (B, T, H)

    @torch.inference_mode()
    def prefill(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Carry]:
        """The state after the last event of a one-row window batch, and the carry after it.

        Returns:
            (H,) state, carry.
        """
        hidden, carries = self.prefill_many(batch)
        return hidden[0], carries[0]

    @torch.inference_mode()
    def prefill_many(self, batch: Mapping[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[Carry]]:
        """Window passes of B entities at once: a right-padded (B, T) batch, row b the window of entity b from
        its start, `lengths` events.

        Returns:
            per entity the (H,) state after its last event and its carry (its own tensors, not views of the batch).
        """
        n = batch["attention_mask"].shape[0]
        if self.kind in ("gru", "step"):  # a window pass is an advance from the initial state
            dtype = self.encoder.final_norm.weight.dtype
            initial = (torch.zeros(self.encoder.gru.num_layers, 1, self.encoder.gru.hidden_size, dtype=dtype)
                       if self.kind == "gru" else self.encoder.initial_state(batch_size=1))
            return self.advance(batch, torch.zeros(n, dtype=torch.long), [initial] * n)
        x = self.embed(batch, 0)  # (B, T, H)
        lengths = batch["attention_mask"].sum(1)  # (B,)
        # causal and padding masks folded in: a real event never attends a padded one
        bias = (time_alibi_bias(batch["event_time"], batch["attention_mask"], self.encoder.num_heads)
                if self.encoder.time_alibi else None)
        keys, values = [], []
        for block in self.encoder.blocks:
            k, v, y = _attend(block.attention, block.attention_norm(x), None, None, bias, None)
            keys.append(k)
            values.append(v)
            x = x + y
            x = x + block.mlp(block.mlp_norm(x))
        hidden = self.encoder.final_norm(x[torch.arange(n), lengths - 1])  # (B, H)
        times = batch["event_time"].to(torch.int64)  # (B, T)
        carries = []
        for b, length in enumerate(lengths.tolist()):
            carries.append(TransformerCarry(tuple(k[b:b + 1, :, :length].clone() for k in keys),
                                            tuple(v[b:b + 1, :, :length].clone() for v in values),
                                            times[b, :length].clone()))
        return list(hidden), carries

    @torch.inference_mode()
    def step(self, batch: Mapping[str, torch.Tensor], offset: int, carry: Carry) -> tuple[torch.Tensor, Carry]:
        """Advance one entity by the events of a one-row batch, the first at position `offset` of the carry's
        window.

        Returns:
            (H,) state after the last event, the new carry (the old one is left unchanged).
        """
        hidden, carries = self.advance(batch, torch.tensor([offset]), [carry])
        return hidden[0], carries[0]

    @torch.inference_mode()
    def advance(self, batch: Mapping[str, torch.Tensor], offsets: torch.Tensor, carries: Sequence[Carry]
                ) -> tuple[list[torch.Tensor], list[Carry]]:
        """Advance B entities at once by the new events of each (a right-padded (B, T) batch, `lengths` events
        in row b, the first at position offsets[b] of that entity's window).

        Returns:
            per entity the (H,) state after its last new event and its new carry (old carries unchanged).
        """
        x = self.embed(batch, offsets)  # (B, T, H)
        lengths = batch["attention_mask"].sum(1).tolist()
        if self.kind == "gru":
            # Packed: each row's h_n is taken after its own last event, whatever the padding.
            packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                                       enforce_sorted=False)
            output, h_n = self.encoder.gru(packed, torch.cat(list(carries), dim=1))  # h_n (L, B, H)
            output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True)  # (B, T, H)
            last = output[torch.arange(len(lengths)), torch.tensor(lengths) - 1]  # (B, H)
            hidden = self.encoder.final_norm(last)
            return list(hidden), [h_n[:, b:b + 1].clone() for b in range(len(lengths))]
        if self.kind == "step":
            state, hidden = torch.cat(list(carries)), [None] * len(lengths)
            for t in range(max(lengths)):
                active = torch.tensor([n > t for n in lengths])
                new_state, out = self.encoder.step(state[active], x[active, t])
                state = state.clone()
                state[active] = new_state
                for row, b in enumerate(active.nonzero().flatten().tolist()):
                    hidden[b] = out[row]
            return hidden, [state[b:b + 1].clone() for b in range(len(lengths))]
        times = batch["event_time"].to(torch.int64)  # (B, T)
        hidden, out = [], []
        for b, carry in enumerate(carries):
            for t in range(lengths[b]):
                state, carry = self._attend_new(x[b:b + 1, t:t + 1], times[b, t:t + 1], carry)
            hidden.append(state)
            out.append(carry)
        return hidden, out

    def _attend_new(self, x: torch.Tensor, time: torch.Tensor, carry: TransformerCarry
                    ) -> tuple[torch.Tensor, TransformerCarry]:
        """One transformer step: x (1, 1, H) the new event's embedding, time (1,) its epoch ms."""
        times = torch.cat([carry.times, time])  # (T + 1,)
        bias = None
        if self.encoder.time_alibi:
            # the new query's row of time_alibi_bias: gaps in int64 first, as there
            gap = (time - times).abs().float() / MS_PER_MINUTE  # (T + 1,)
            slopes = alibi_slopes(self.encoder.num_heads).to(gap.device)
            bias = (-slopes.view(1, -1, 1, 1) * torch.log1p(gap).view(1, 1, 1, -1))  # (1, nh, 1, T + 1)
        keys, values = [], []
        for layer, block in enumerate(self.encoder.blocks):
            k, v, y = _attend(block.attention, block.attention_norm(x), carry.keys[layer], carry.values[layer],
                              bias, True)
            keys.append(k)
            values.append(v)
            x = x + y
            x = x + block.mlp(block.mlp_norm(x))
        return self.encoder.final_norm(x[0, -1]), TransformerCarry(tuple(keys), tuple(values), times)


def _attend(attention: Any, h: torch.Tensor, past_k: torch.Tensor | None, past_v: torch.Tensor | None,
            bias: torch.Tensor | None, single: bool | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`CausalSelfAttention.forward` that also returns its keys and values (past ones prepended).

    Args:
        attention: a CausalSelfAttention module.
        h: (1, T, H) normalised input; T = 1 when `single` (a step over a cache).
        past_k, past_v: (1, nh, P, hd) cached keys/values or None.
        bias: additive bias (1, nh, T, P + T) or None (plain causal).
    Returns:
        keys (1, nh, P + T, hd), values (same), attention output (1, T, H).
    """
    batch_size, seq_len, hidden = h.shape
    q, k, v = attention.qkv(h).split(hidden, dim=-1)
    q, k, v = (t.view(batch_size, seq_len, attention.num_heads, -1).transpose(1, 2) for t in (q, k, v))
    if past_k is not None:
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    if bias is not None:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    else:
        # one query over every cached key needs no mask; a window pass is causal
        y = F.scaled_dot_product_attention(q, k, v, is_causal=not single)
    y = y.transpose(1, 2).reshape(batch_size, seq_len, hidden)  # (1, T, H)
    return k, v, attention.out(y)
