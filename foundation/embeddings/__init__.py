"""Entity embeddings for downstream teams: parquet exports and the `Embedder` API.

- `export`: parquet (entity_type, entity_id, as_of, embedding) per entity or per event.
- `api`: `Embedder.from_pretrained(run).embed(events)` and the `scripts/embed.py` job.

The states themselves come from `foundation.pointintime` (the window rule, as-of lookups, the encoder pass).
"""

from foundation.embeddings.api import Embedder, embed
from foundation.embeddings.export import ExportSummary, embedding_schema, export_embeddings, read_embeddings

__all__ = ["Embedder", "ExportSummary", "embed", "embedding_schema", "export_embeddings", "read_embeddings"]
