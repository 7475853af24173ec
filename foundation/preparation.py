"""Data preparation shared by every job: source files -> validated events -> sequence store -> tokenizer ->
encoded HF datasets. Every product is cached under `<data_dir>/<dataset>/prepared/<fingerprint>/`, keyed by the
data config and the source files, so a second run memory-maps instead of rebuilding.

Layout of a prepared folder:
    sequences/pretrain/<entity_type>/part-*.parquet   pretraining period only (the tokenizer is fitted here)
    sequences/all/<entity_type>/part-*.parquet        every event before the end of the test period
    tokenizer/                                        EventTokenizer fitted on sequences/pretrain
    encoded/<period>/<entity_type>/part-*.parquet     tokenizer.encode of the sequences
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from foundation.data.events import read_events
from foundation.data.prepared_layout import PERIODS, fingerprint
from foundation.data.schema import DataSchema
from foundation.data.sequences import SequenceManifest, build_sequences
from foundation.data.validate import ValidationResult, validate
from foundation.tokenization import EventTokenizer

log = logging.getLogger(__name__)



@dataclass
class PreparedData:
    """What preparation produced: the schema, the folder, the fitted tokenizer and encoded datasets."""

    schema: DataSchema
    root: Path
    tokenizer: EventTokenizer
    encoded: dict[str, datasets.Dataset] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)

    def sequence_dir(self, period: str) -> Path:
        return self.root / "sequences" / period


def ensure_source(cfg: DictConfig) -> None:
    """Generate the synthetic world when the data config is the synthetic one and its files are missing."""
    if str(cfg.data.get("name")) != "synthetic" or cfg.get("synthetic") is None:
        return
    from foundation.data.synthetic import ensure_synthetic

    ensure_synthetic(cfg.synthetic, out_dir=str(cfg.data.source.path))


def load_events(schema: DataSchema) -> tuple[pa.Table, ValidationResult]:
    """Read and validate the source; prints quarantine counts (nothing is dropped silently)."""
    result = validate(read_events(schema), schema)
    if result.n_quarantined:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(result.quarantine_counts.items()))
        print(f"quarantined {result.n_quarantined} rows ({counts}) -> {schema.validation.quarantine_dir}")
    return result.table, result


def _complete(folder: Path) -> bool:
    return (folder / "manifest.json").exists()


def build_sequence_store(schema: DataSchema, root: Path, events: pa.Table | None = None) -> None:
    """Build the `pretrain` and `all` sequence folders unless they exist."""
    todo = [p for p in PERIODS if not _complete(root / "sequences" / p)]
    if not todo:
        return
    if events is None:
        events, _ = load_events(schema)
    test_end = schema.splits.period("test").end
    pretrain_dir = root / "sequences" / "pretrain"
    if not _complete(pretrain_dir):
        build_sequences(events, schema, pretrain_dir, period="pretrain")
    # The aggregate columns (which event types are counted) are chosen on the pretraining period, so
    # nothing about later periods shapes the features.
    pinned = {t: s.count_values for t, s in SequenceManifest.read(pretrain_dir).entity_types.items()
              if s.count_values}
    if not _complete(root / "sequences" / "all"):
        build_sequences(events, schema, root / "sequences" / "all", until=test_end, count_values=pinned or None)


def sequence_files(seq_dir: Path, entity_type: str) -> list[Path]:
    return sorted((seq_dir / entity_type).glob("part-*.parquet"))


def fit_tokenizer(schema: DataSchema, root: Path, options: dict[str, Any] | None = None) -> EventTokenizer:
    """Fit (or load the cached) EventTokenizer on the pretraining-period sequences only."""
    folder = root / "tokenizer"
    if (folder / "tokenizer_config.json").exists():
        return EventTokenizer.from_pretrained(folder)
    seq_dir = root / "sequences" / "pretrain"
    manifest = SequenceManifest.read(seq_dir)
    files = [f for t in manifest.entity_types for f in sequence_files(seq_dir, t)]
    tokenizer = EventTokenizer.fit((pq.read_table(f) for f in files), schema, **(options or {}))
    tokenizer.save_pretrained(folder)
    return tokenizer


def encode_period(tokenizer: EventTokenizer, root: Path, period: str, out_root: Path | None = None) -> Path:
    """Encode every shard of `sequences/<period>` into `encoded/<period>` (shard by shard, bounded memory)."""
    seq_dir = root / "sequences" / period
    out_dir = (out_root or root / "encoded") / period
    if _complete(out_dir):
        return out_dir
    manifest = SequenceManifest.read(seq_dir)
    shards = [(t, f) for t in manifest.entity_types for f in sequence_files(seq_dir, t)]
    for entity_type, path in tqdm(shards, desc=f"encode {period}", unit="shard"):
        target = out_dir / entity_type / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tokenizer.encode(pq.read_table(path)), target)
    (out_dir / "manifest.json").write_text(manifest.to_json())
    return out_dir


def load_encoded(encoded_dir: Path, entity_types: list[str] | None = None) -> dict[str, datasets.Dataset]:
    """Encoded shards as HF datasets (Arrow, memory-mapped; cached next to the shards)."""
    out = {}
    for folder in sorted(p for p in encoded_dir.iterdir() if p.is_dir()):
        if entity_types and folder.name not in entity_types:
            continue
        files = [str(f) for f in sorted(folder.glob("part-*.parquet"))]
        if files:
            out[folder.name] = datasets.Dataset.from_parquet(files, cache_dir=str(encoded_dir / ".hf_cache"))
    return out


def prepare(cfg: DictConfig, encode_periods: tuple[str, ...] = ("pretrain",)) -> PreparedData:
    """Everything before the model: source -> validated events -> sequences -> tokenizer -> encoded.

    Args:
        cfg: a composed config with `data` (the schema), `paths`, and optionally `synthetic`.
        encode_periods: which sequence periods to encode and load as datasets.
    Returns:
        PreparedData with `encoded` holding the first period of `encode_periods` per entity type.
    """
    ensure_source(cfg)
    schema = DataSchema.from_config(cfg.data)
    root = Path(cfg.paths.data_dir) / schema.name / "prepared" / fingerprint(cfg.data, schema)
    build_sequence_store(schema, root)
    tokenizer = fit_tokenizer(schema, root, OmegaConf.to_container(cfg.get("tokenizer") or {}, resolve=True))
    encoded: dict[str, datasets.Dataset] = {}
    for i, period in enumerate(encode_periods):
        out_dir = encode_period(tokenizer, root, period)
        if i == 0:
            encoded = load_encoded(out_dir)
    return PreparedData(schema=schema, root=root, tokenizer=tokenizer, encoded=encoded)


def prepare_pretraining_data(cfg: DictConfig) -> PreparedData:
    """Prepared data whose `encoded` datasets cover the pretraining period only."""
    return prepare(cfg, ("pretrain",))
