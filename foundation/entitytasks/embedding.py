"""The entity embedding as of a date: what every entity task head reads, in batch and in the service.

(Q, H + 2) columns: the pretrained model's state after the entity's last event at or before as_of (zeros without
history), a has-history flag, and log(1 + days from that last event to as_of). The state alone cannot tell a
customer seen yesterday from one silent for three weeks (it is computed at its last event); the elapsed time is
the query's own input, as the time gap is an attempt's in the event tasks.

With a `lookback` (the task's `embedding.lookback`, e.g. [7d, 30d]) the same H + 2 columns follow as of each
earlier date (as_of - 7d, as_of - 30d): where the entity was, so a head sees its trajectory (a customer slowing
down, a merchant whose state turned) and not only where it is. Still the model's states alone, nothing
hand-crafted; the service builds the same columns from its durable log.

With a `hazard` (the task's `embedding.hazard`, e.g. [7d, 30d]; foundation.entitytasks.hazard) each block also
holds the pretrained time head's survival columns: log P(the silence so far) and, per horizon, log P(no event in
the next h | silent until as_of), read off the state and the elapsed time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from foundation.entitytasks.hazard import GapHazard

DAY_MS = 86_400_000
EXTRA_COLUMNS = ("has_history", "log_days_since_last_event")


def elapsed_feature(last_ms: np.ndarray, as_of_ms: np.ndarray) -> np.ndarray:
    """(Q,) log(1 + days from the last event to as_of); 0 without history (last_ms < 0)."""
    last_ms, as_of_ms = np.asarray(last_ms, np.int64), np.asarray(as_of_ms, np.int64)
    days = np.maximum(as_of_ms - last_ms, 0) / DAY_MS
    return np.where(last_ms >= 0, np.log1p(days), 0.0).astype(np.float32)


def last_event_times(store: Any, entity: str, ids: pa.Array, index: np.ndarray) -> np.ndarray:
    """(Q,) epoch ms of each query's last included event (-1 without history)."""
    out = np.full(len(ids), -1, dtype=np.int64)
    for shard in store.shards(entity):
        keys = store.keys(shard)
        row = pc.fill_null(pc.index_in(ids, value_set=keys["entity_id"].combine_chunks()), -1)
        row = row.to_numpy(zero_copy_only=False).astype(np.int64)
        mine = np.flatnonzero((row >= 0) & (index >= 0))
        times = keys["event_time"].combine_chunks()
        values = pc.cast(times.values, pa.int64()).to_numpy(zero_copy_only=False)
        out[mine] = values[times.offsets.to_numpy()[row[mine]] + index[mine]]
    return out


def embedding_names(width: int, lookback: tuple[int, ...] = (), hazard: Sequence[str] = ()) -> list[str]:
    """Column names of a (Q, width) entity embedding: embedding_<i>, the extra columns, the hazard columns, then
    the same with a `_<days>d_before` suffix per lookback."""
    block = width // (1 + len(lookback))
    extra = list(EXTRA_COLUMNS) + list(hazard)
    names = [f"embedding_{i}" for i in range(block - len(extra))] + extra
    return names + [f"{n}_{ms / DAY_MS:g}d_before" for ms in lookback for n in names]


def entity_embeddings(store: Any, encoder: Any, entity: str, entity_ids: pa.Array, as_of: np.ndarray,
                      lookback: tuple[int, ...] = (), hazard: GapHazard | None = None) -> np.ndarray:
    """(Q, (H + 2 [+ hazard columns]) x (1 + len(lookback))) entity embeddings as of each date (module docstring).

    No event after as_of enters them: the state is `PointInTimeStates.as_of` strictly before as_of + 1 ms.

    Args:
        store: the SequenceStore; encoder: the PointInTimeEncoder of the model.
        entity: entity type; entity_ids: (Q,) ids; as_of: (Q,) epoch ms.
        lookback: ms before as_of of the earlier states to add.
        hazard: the survival columns to add to each block (None: none).
    """
    as_of = np.asarray(as_of, np.int64)
    return np.hstack([_embeddings_at(store, encoder, entity, entity_ids, as_of - back, hazard)
                      for back in (0, *lookback)])


def _embeddings_at(store: Any, encoder: Any, entity: str, entity_ids: pa.Array, as_of: np.ndarray,
                   hazard: GapHazard | None = None) -> np.ndarray:
    from foundation.pointintime import PointInTimeStates

    ids = pc.cast(entity_ids, pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    as_of = np.asarray(as_of, np.int64)
    states = PointInTimeStates(store, encoder).as_of(entity, ids, as_of + 1)
    last = last_event_times(store, entity, ids, states.index)
    columns = [states.hidden, states.has_history[:, None].astype(np.float32), elapsed_feature(last, as_of)[:, None]]
    if hazard is not None:
        columns.append(hazard(states.hidden, as_of - last, states.has_history))
    return np.hstack(columns)
