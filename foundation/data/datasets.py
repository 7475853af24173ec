"""Loading sequence shards: HF `datasets` (memory-mapped Arrow) for training, a shard-by-shard stream for tools.

`load_sequence_dataset` converts the parquet shards once into an Arrow cache under `<seq_dir>/.hf_cache`;
later loads of the same shards memory-map that cache instead of re-reading parquet (build_sequences clears
the cache when it rewrites the shards). Column types are those of the shards (architecture.md section 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from foundation.data.sequences import HF_CACHE, SequenceManifest


def _shard_paths(seq_dir: Path, manifest: SequenceManifest, entity_type: str) -> list[str]:
    if entity_type not in manifest.entity_types:
        raise ValueError(f"{seq_dir}: no entity type {entity_type!r} (have {sorted(manifest.entity_types)})")
    paths = [seq_dir / p for p in manifest.entity_types[entity_type].shards]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{seq_dir}: shards listed in the manifest are missing: {missing[:3]}")
    return [str(p) for p in paths]


def load_sequence_dataset(seq_dir: str | os.PathLike, entity_types: Sequence[str] | None = None) -> datasets.Dataset:
    """Sequences of one or more entity types as one memory-mapped HF Dataset.

    Rows are in manifest order: entity types in the order given (default: the manifest's), then shard
    order, i.e. sorted entity ids within a type.

    Args:
        seq_dir: a folder written by build_sequences (holds manifest.json).
        entity_types: types to load (default: all). They must share one column layout: an aggregate type
            (bucket fields `agg_*`) cannot be mixed with raw-event types; load it on its own.
    Returns:
        datasets.Dataset with the shard columns (`entity_type`, `entity_id`, `length`, list columns).
    """
    seq_dir = Path(seq_dir)
    manifest = SequenceManifest.read(seq_dir)
    types = list(manifest.entity_types) if entity_types is None else list(entity_types)
    if not types:
        raise ValueError(f"{seq_dir}: no entity types to load")
    layouts = {t: tuple(manifest.entity_types[t].columns) for t in types if t in manifest.entity_types}
    if len(set(layouts.values())) > 1:
        groups: dict[tuple[str, ...], list[str]] = {}
        for t, cols in layouts.items():
            groups.setdefault(cols, []).append(t)
        raise ValueError(
            f"{seq_dir}: entity types {list(groups.values())} have different columns "
            "(aggregate vs raw events); load each group with its own load_sequence_dataset call"
        )
    files = [p for t in types for p in _shard_paths(seq_dir, manifest, t)]
    features = datasets.Features.from_arrow_schema(pq.read_schema(files[0]))
    return datasets.Dataset.from_parquet(files, features=features, cache_dir=str(seq_dir / HF_CACHE))


def iter_sequence_tables(seq_dir: str | os.PathLike, entity_type: str, batch_size: int = 1024) -> Iterator[pa.Table]:
    """Stream the sequences of one entity type shard by shard, never loading more than one batch.

    Args:
        seq_dir: a folder written by build_sequences.
        entity_type: e.g. "customer".
        batch_size: entities per yielded table (a batch never spans two shards).
    Yields:
        pa.Table of up to `batch_size` entity rows with the shard columns, in shard order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seq_dir = Path(seq_dir)
    for path in _shard_paths(seq_dir, SequenceManifest.read(seq_dir), entity_type):
        shard = pq.ParquetFile(path)
        for batch in shard.iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([batch])
