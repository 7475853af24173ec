"""The pretrained model's own survival curve: how likely an entity is to stay silent over a horizon.

The next-event objective predicts, from the state after an entity's last event, when its next event comes (the
tokenizer's log-spaced time-gap bins, `TimeEncoder.edges_s`). As of a date the entity has already been silent for
e = as_of - its last event. With S(t) = P(gap > t | state), the model's survival curve, an entity task embedding
can carry, for each horizon h of the task config's `embedding.hazard`:

    log P(no event in (as_of, as_of + h] | silent until as_of) = log S(e + h) - log S(e)

and log S(e), how unusual the silence already is for this entity. A churn-like target ("no attempt in the next
30 days") is such a survival; the counters a hand-written churn model holds (recency, rhythm) are what the time
head learnt to predict from. Read off the pretraining heads: self-supervised, no label, nothing hand-made, and
nothing after as_of (the state and e are the as-of embedding's own inputs).

Inside a gap bin the probability is spread uniformly in log time (linearly in the first bin, which starts at 0);
beyond the last edge (90 days by default) the tail falls as 1/t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from foundation.tokenization.encoders import FIRST_ID

DAY_MS = 86_400_000
TIME_FIELD = "time"
LOG_FLOOR = -30.0  # log-probabilities below this are clipped (a survival of ~1e-13)


def hazard_names(horizons_ms: Sequence[int]) -> list[str]:
    """Column names: log_survival_now, then log_survival_next_<days>d per horizon."""
    return ["log_survival_now"] + [f"log_survival_next_{ms / DAY_MS:g}d" for ms in horizons_ms]


class GapHazard:
    """Survival columns from the next-event time head.

    Args:
        time_head: the next-event objective's `time` field head (Linear H -> num_bins), in eval mode.
        edges_s: the tokenizer's gap bin edges in seconds (`TimeEncoder.edges_s`).
        horizons_ms: the horizons h (ms).
    """

    def __init__(self, time_head: torch.nn.Module, edges_s: Sequence[float], horizons_ms: Sequence[int]):
        self.head = time_head.eval()
        self.edges_s = np.asarray(edges_s, np.float64)
        self.horizons_ms = tuple(int(h) for h in horizons_ms)
        self.names = hazard_names(self.horizons_ms)

    @classmethod
    def from_run(cls, surprise: Any, tokenizer: Any, horizons_ms: Sequence[int]) -> GapHazard:
        """From a run's EventSurprise (its next-event heads) and tokenizer; a clear error without a time head."""
        heads = getattr(surprise, "heads", None)
        if heads is None or TIME_FIELD not in heads.fields:
            raise ValueError("embedding.hazard needs the pretrained model's next-event time head "
                             "(next_event_heads.safetensors, written when pretraining uses the next_event objective); "
                             "this checkpoint has none: drop embedding.hazard or pretrain with objective=next_event")
        return cls(heads.fields[TIME_FIELD], tokenizer.time.edges_s, horizons_ms)

    def gap_probabilities(self, hidden: np.ndarray) -> np.ndarray:
        """(Q, len(edges) + 1) probabilities of the real gap bins (renormalised without padding/first-event)."""
        with torch.inference_mode():
            logits = self.head(torch.as_tensor(np.asarray(hidden), dtype=torch.float32))
        probs = torch.softmax(logits.double(), dim=-1)[:, FIRST_ID:].numpy()
        return probs / np.maximum(probs.sum(1, keepdims=True), 1e-300)

    def survival(self, probs: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """(Q,) S(t) = P(gap > t) under each row's bin probabilities, t in seconds (>= 0)."""
        edges, t = self.edges_s, np.maximum(np.asarray(t_s, np.float64), 0.0)
        n = len(edges)
        k = np.searchsorted(edges, t, side="right")  # the bin holding t: 0 .. n
        after = np.concatenate([np.cumsum(probs[:, ::-1], axis=1)[:, ::-1][:, 1:], np.zeros((len(probs), 1))], 1)
        rows = np.arange(len(probs))
        lo = np.where(k > 0, edges[np.maximum(k - 1, 0)], 0.0)
        hi = np.where(k < n, edges[np.minimum(k, n - 1)], np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = np.where(k == 0, (hi - t) / hi,
                              np.where(k == n, lo / np.maximum(t, lo),
                                       np.log(hi / np.maximum(t, lo)) / np.log(hi / np.maximum(lo, 1e-300))))
        return after[rows, k] + probs[rows, k] * np.clip(inside, 0.0, 1.0)

    def __call__(self, hidden: np.ndarray, elapsed_ms: np.ndarray, has_history: np.ndarray) -> np.ndarray:
        """(Q, 1 + len(horizons)) float32: log S(e), then log S(e + h) - log S(e) per horizon; 0 without history.

        Args:
            hidden: (Q, H) states after each entity's last event; elapsed_ms: (Q,) ms from it to as_of.
            has_history: (Q,) bool.
        """
        probs = self.gap_probabilities(hidden)
        e_s = np.maximum(np.asarray(elapsed_ms, np.float64), 0.0) / 1000.0

        def log_s(t: np.ndarray) -> np.ndarray:
            return np.maximum(np.log(np.maximum(self.survival(probs, t), 1e-300)), LOG_FLOOR)

        now = log_s(e_s)
        columns = [now] + [np.minimum(log_s(e_s + h / 1000.0) - now, 0.0) for h in self.horizons_ms]
        return (np.stack(columns, axis=1) * np.asarray(has_history, bool)[:, None]).astype(np.float32)
