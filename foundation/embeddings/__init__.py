"""Point-in-time entity embeddings (docs/architecture.md section 8) for downstream teams and task heads.

- `windows`: the section-8 window rule (`window_start`, shared with the online scorer) as batch plans.
- `pointintime`: exact hidden states of any events of a sequence store, shard by shard; as-of lookups.
- `export`: parquet (entity_type, entity_id, as_of, embedding) per entity or per event.
- `api`: `Embedder.from_pretrained(run).embed(events)` and the `scripts/embed.py` job.
"""

from foundation.embeddings.api import Embedder, embed
from foundation.embeddings.checkpoint import PretrainedRun, locate_checkpoint
from foundation.embeddings.export import ExportSummary, embedding_schema, export_embeddings, read_embeddings
from foundation.embeddings.pointintime import (
    AsOfStates,
    PointInTimeEncoder,
    PointInTimeStates,
    SequenceStore,
    as_of_index,
)
from foundation.embeddings.windows import WindowPlan, block_windows, plan_windows, window_start

__all__ = [
    "AsOfStates",
    "Embedder",
    "ExportSummary",
    "PointInTimeEncoder",
    "PointInTimeStates",
    "PretrainedRun",
    "SequenceStore",
    "WindowPlan",
    "as_of_index",
    "block_windows",
    "embed",
    "embedding_schema",
    "export_embeddings",
    "locate_checkpoint",
    "plan_windows",
    "read_embeddings",
    "window_start",
]
