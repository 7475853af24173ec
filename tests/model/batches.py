"""Tiny synthetic batches in the collate format (docs/architecture.md section 5), built from field specs.

Events are not uniform noise: each entity has a preferred value per field and descriptor (taken 70% of
the time by default), so history predicts the next or a hidden event and the objectives have something to
learn. Times are real epoch milliseconds with log-uniform gaps (1 minute .. 10 days).
"""

from __future__ import annotations

import numpy as np
import torch

from foundation.model import FoundationConfig

ENTITY_TYPES = ["customer", "merchant"]
BASE_TIME_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000


def tiny_fields() -> list[dict]:
    """Field specs of every kind; `agg_amount_sum` is the kind of field a customer batch lacks."""
    return [
        {"name": "event_type", "kind": "categorical", "vocab_size": 6},
        {"name": "mcc", "kind": "categorical", "vocab_size": 14},
        {"name": "amount", "kind": "numeric", "num_bins": 10},
        {"name": "descriptor", "kind": "text", "vocab_size": 30, "max_tokens": 4},
        {"name": "agg_amount_sum", "kind": "numeric", "num_bins": 8},
        {"name": "time", "kind": "time", "num_bins": 12},
    ]


def tiny_config(**overrides) -> FoundationConfig:
    """Hidden 32, 2 layers: the house size for tests. Dropout off so outputs are comparable."""
    settings = {
        "fields": tiny_fields(), "entity_types": ENTITY_TYPES, "hidden_size": 32, "num_layers": 2,
        "num_heads": 2, "intermediate_size": 64, "max_position": 64, "dropout": 0.0,
    }
    return FoundationConfig(**{**settings, **overrides})


def _history(
    rng: np.random.Generator, fields: list[dict], n_events: int, signal: float
) -> dict[str, np.ndarray]:
    """One entity's full history: (n_events,) per key, (n_events, K) for text; `signal` is the share of
    events that take the entity's preferred values."""
    gap_seconds = np.exp(rng.uniform(np.log(60), np.log(10 * 86_400), n_events))
    times = BASE_TIME_MS + rng.integers(0, 30 * MS_PER_DAY) + np.cumsum(gap_seconds * 1000).astype(np.int64)
    history: dict[str, np.ndarray] = {"event_time": times}
    for spec in fields:
        name, kind = spec["name"], spec["kind"]
        if kind == "time":
            time_gap = np.log1p(np.diff(times, prepend=times[0]) / 1000.0).astype(np.float32)
            n_bins = spec["num_bins"]
            history["time_gap"] = time_gap
            history["time_gap_bin"] = np.clip(2 + (time_gap / 14.0 * (n_bins - 2)).astype(np.int64), 2, n_bins - 1)
            history["time_gap_bin"][0] = 1  # no previous event
            history["hour"] = (times // MS_PER_HOUR) % 24 + 1
            history["dow"] = (times // MS_PER_DAY + 3) % 7 + 1  # 1970-01-01 was a Thursday; Monday = 1
        elif kind == "categorical":
            size = spec["vocab_size"]
            preferred = rng.integers(2, size)
            history[name] = np.where(rng.random(n_events) < signal, preferred, rng.integers(1, size, n_events))
        elif kind == "numeric":
            size = spec["num_bins"]
            level = rng.integers(2, size)
            spread = np.where(rng.random(n_events) < signal, rng.integers(-1, 2, n_events), rng.integers(-size, size, n_events))
            bins = np.clip(level + spread, 2, size - 1)
            history[f"{name}_bin"] = bins
            history[f"{name}_value"] = ((bins - size / 2) / size + rng.normal(0, 0.05, n_events)).astype(np.float32)
        elif kind == "text":
            size, k = spec["vocab_size"], spec["max_tokens"]
            preferred = rng.integers(2, size, k)
            tokens = np.where(rng.random((n_events, 1)) < signal, preferred, rng.integers(2, size, (n_events, k)))
            n_tokens = rng.integers(1, k + 1, n_events)
            history[f"{name}_tokens"] = np.where(np.arange(k) < n_tokens[:, None], tokens, 0)
    return history


def make_batch(
    fields: list[dict] | None = None,
    batch_size: int = 4,
    seq_len: int = 12,
    views_per_entity: int = 1,
    seed: int = 0,
    lengths: list[int] | None = None,
    entity_type: int = 0,
    signal: float = 0.7,
) -> dict[str, torch.Tensor]:
    """A right-padded batch dict.

    Args:
        fields: field specs to generate (default `tiny_fields()` minus `agg_amount_sum`).
        batch_size: rows B; with views_per_entity > 1, B / views_per_entity entities.
        seq_len: T.
        views_per_entity: rows per entity, each a random window of that entity's longer history
            (`entity_index` tells which rows belong together).
        seed: numpy seed.
        lengths: real events per row (default random in [T/2, T], row 0 full).
        entity_type: index into ENTITY_TYPES for every row.
        signal: share of events taking their entity's preferred values (0 = uniform noise).
    """
    if fields is None:
        fields = [spec for spec in tiny_fields() if spec["name"] != "agg_amount_sum"]
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = rng.integers(seq_len // 2, seq_len + 1, batch_size).tolist()
        lengths[0] = seq_len
    n_entities = batch_size // views_per_entity
    histories = [_history(rng, fields, 2 * seq_len, signal) for _ in range(n_entities)]
    rows, entity_index = [], []
    for row in range(batch_size):
        entity = row // views_per_entity
        start = rng.integers(0, seq_len + 1) if views_per_entity > 1 else 0
        rows.append({key: value[start:start + lengths[row]] for key, value in histories[entity].items()})
        entity_index.append(entity)
    batch: dict[str, torch.Tensor] = {}
    for key, first in rows[0].items():
        dtype = torch.float32 if first.dtype == np.float32 else torch.long
        padded = torch.zeros((batch_size, seq_len, *first.shape[1:]), dtype=dtype)
        for row, values in enumerate(rows):
            padded[row, : len(values[key])] = torch.as_tensor(values[key], dtype=dtype)
        batch[key] = padded
    length_tensor = torch.tensor(lengths, dtype=torch.long)
    batch["lengths"] = length_tensor
    batch["attention_mask"] = torch.arange(seq_len).unsqueeze(0) < length_tensor.unsqueeze(1)
    batch["entity_type"] = torch.full((batch_size,), entity_type, dtype=torch.long)
    batch["entity_index"] = torch.tensor(entity_index, dtype=torch.long)
    return batch
