"""The sequence folder's manifest: what `build_sequences` wrote, per entity type (both backends write it).

Layout of a sequence folder (the sequence shard contract):
```
<out_dir>/manifest.json
<out_dir>/<entity_type>/part-00000.parquet, part-00001.parquet, ...
```
The manifest is written last: its presence marks a complete folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ROW_GROUP_ENTITIES = 1024  # entities per parquet row group: bounds the memory of a streaming reader


def shard_file(entity_type: str, shard: int) -> str:
    """Path of a shard relative to the sequence folder: `<entity_type>/part-00000.parquet`."""
    return f"{entity_type}/part-{shard:05d}.parquet"


@dataclass
class EntitySequenceStats:
    """What was written for one entity type.

    Args:
        representation: "events" or "aggregate".
        key_column: canonical key column (`<entity_type>_id`).
        entities: number of entities (rows over all shards).
        events: list elements over all shards (raw events, or buckets for an aggregate type).
        source_events: raw events that went into the sequences.
        skipped_null_key: in-period rows without a key for this type (e.g. refunds with no issuer).
        skipped_partial_bucket: in-period rows of buckets cut by the period bounds (aggregate only).
        shards: shard paths relative to the sequence folder, in order.
        columns: output column names, in order.
        bucket_ms, count_by, count_values: the aggregate spec (aggregate only).
    """

    representation: str
    key_column: str
    entities: int
    events: int
    source_events: int
    skipped_null_key: int
    skipped_partial_bucket: int
    shards: list[str]
    columns: list[str]
    bucket_ms: int | None = None
    count_by: str | None = None
    count_values: list[str] | None = None


@dataclass
class SequenceManifest:
    """`manifest.json` of a sequence folder.

    Args:
        schema: schema name.
        period: split name or None.
        start, end: ISO bounds of the half-open time window, None when open.
        entities_per_shard: entities per shard.
        entity_types: entity type -> EntitySequenceStats, in schema order.
    """

    schema: str
    period: str | None
    start: str | None
    end: str | None
    entities_per_shard: int
    entity_types: dict[str, EntitySequenceStats] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, seq_dir: str | os.PathLike) -> Path:
        path = Path(seq_dir) / MANIFEST
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, seq_dir: str | os.PathLike) -> SequenceManifest:
        """Load `<seq_dir>/manifest.json`."""
        path = Path(seq_dir) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"{path}: no sequence manifest (run build_sequences first)")
        raw = json.loads(path.read_text())
        raw["entity_types"] = {k: EntitySequenceStats(**v) for k, v in raw["entity_types"].items()}
        return cls(**raw)
