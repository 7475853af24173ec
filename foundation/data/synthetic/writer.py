"""Write the synthetic world to parquet parts plus a manifest; skip the work when it is already there.

Layout: `<events_dir>/part-00000.parquet, ...` (one row group per block of customers, rows sorted by
(card_id, ts)) and `<events_dir>/_manifest.json` (config, config hash, file sizes, summary; readers skip
files starting with "_"). Parts are written to a hidden sibling folder and moved into place only when
complete, so a crash never leaves a half dataset that looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.data.synthetic.catalog import DECLINE, DISPUTE, EVENT_TYPES
from foundation.data.synthetic.config import SyntheticConfig, config_hash, synthetic_config
from foundation.data.synthetic.simulation import simulate_block
from foundation.data.synthetic.table import EVENT_SCHEMA
from foundation.data.synthetic.world import build_world

MANIFEST = "_manifest.json"
# Low-cardinality columns; dictionary-encoding unique ids, times and amounts only costs time.
DICTIONARY_COLUMNS = ["card_id", "merchant_id", "issuer_id", "event_type", "currency", "mcc", "merchant_country",
                      "card_country", "channel", "merchant_descriptor", "decline_code", "fraud_pattern"]


@dataclass
class GenerationSummary:
    """What a generation produced.

    Attributes:
        path: folder of the parquet parts.
        n_events: rows written.
        event_type_counts: rows per event type.
        fraud_rate: fraudulent share of attempts (charges + declines).
        decline_rate: declined share of attempts.
        dispute_rate: disputes / all events.
        n_customers, n_merchants, n_issuers: entities.
        files: part file names.
        config_hash: `config_hash(config)` of the generating config.
        seconds, events_per_second: wall time of the generation that wrote the files.
        generated: False when `ensure_synthetic` found matching files and skipped the work.
    """

    path: str
    n_events: int
    event_type_counts: dict[str, int]
    fraud_rate: float
    decline_rate: float
    dispute_rate: float
    n_customers: int
    n_merchants: int
    n_issuers: int
    files: list[str] = field(default_factory=list)
    config_hash: str = ""
    seconds: float = 0.0
    events_per_second: float = 0.0
    generated: bool = True


def resolve_config(cfg: Any, events_dir: str | Path | None = None) -> SyntheticConfig:
    """A `SyntheticConfig` from a composed Hydra config (with a `synthetic` node), that node, or itself.

    Args:
        cfg: SyntheticConfig, DictConfig or mapping.
        events_dir: overrides `events_dir` of the config when given.
    """
    if isinstance(cfg, SyntheticConfig):
        config = cfg
    else:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            values = OmegaConf.to_container(cfg.synthetic if "synthetic" in cfg else cfg, resolve=True)
        elif isinstance(cfg, Mapping):
            values = dict(cfg.get("synthetic", cfg))
        else:
            raise TypeError(f"expected a SyntheticConfig or a config with a `synthetic` node, got {type(cfg).__name__}")
        config = synthetic_config(**values)
    return config if events_dir is None else dataclasses.replace(config, events_dir=str(events_dir))


def write_synthetic(config: SyntheticConfig, progress: bool = True) -> GenerationSummary:
    """Generate the world of `config` and write it to `config.events_dir` (replacing an older generation).

    Args:
        config: generator config.
        progress: show a tqdm bar over blocks of customers.

    Returns:
        The summary (also stored in the manifest).
    """
    began = time.perf_counter()
    events = Path(config.events_dir)
    events.parent.mkdir(parents=True, exist_ok=True)
    tmp = events.parent / f".{events.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files, type_counts, n_fraud, next_id = _write_parts(config, tmp, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - began
    attempts = int(type_counts[: DECLINE + 1].sum())
    summary = GenerationSummary(
        path=str(events), n_events=next_id,
        event_type_counts={name: int(c) for name, c in zip(EVENT_TYPES, type_counts)},
        fraud_rate=n_fraud / max(attempts, 1), decline_rate=int(type_counts[DECLINE]) / max(attempts, 1),
        dispute_rate=int(type_counts[DISPUTE]) / max(next_id, 1),
        n_customers=config.n_customers, n_merchants=config.n_merchants, n_issuers=config.n_issuers,
        files=files, config_hash=config_hash(config), seconds=seconds, events_per_second=next_id / seconds,
    )
    manifest = {"config_hash": summary.config_hash, "config": dataclasses.asdict(config),
                "file_sizes": {f: (tmp / f).stat().st_size for f in files},
                "summary": dataclasses.asdict(summary)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _remove_generation(events)
    tmp.rename(events)
    return summary


def _write_parts(config: SyntheticConfig, folder: Path, progress: bool) -> tuple[list[str], np.ndarray, int, int]:
    """Simulate every block and write the parts into `folder`.

    Returns:
        Part names, events per type (4,), fraudulent attempts, events written.
    """
    world = build_world(config)
    type_counts = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    n_fraud, next_id = 0, 0
    files: list[str] = []
    writer: pq.ParquetWriter | None = None
    pending: Future | None = None
    bar = tqdm(range(config.n_blocks), desc="synthetic world", unit="block", disable=not progress)
    # Parquet encoding releases the GIL: block b is written on a thread while block b + 1 is simulated
    # (at most one block waits, so memory stays bounded by two blocks).
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for block in bar:
                result = simulate_block(config, world, block, next_id)
                if pending is not None:
                    pending.result()
                if block % config.blocks_per_file == 0:
                    if writer is not None:
                        writer.close()
                    files.append(f"part-{len(files):05d}.parquet")
                    writer = pq.ParquetWriter(folder / files[-1], EVENT_SCHEMA, compression=config.compression,
                                              use_dictionary=DICTIONARY_COLUMNS)
                pending = pool.submit(writer.write_table, result.table)
                next_id += result.table.num_rows
                type_counts += result.type_counts
                n_fraud += result.n_fraud_attempts
                bar.set_postfix(events=f"{next_id:,}")
        finally:
            if pending is not None:
                pending.result()  # never close the writer under a running write
            if writer is not None:
                writer.close()
            bar.close()
    return files, type_counts, n_fraud, next_id


def _remove_generation(events: Path) -> None:
    """Remove an older generation; refuse to touch a folder holding files the generator did not write."""
    if not events.exists():
        return
    foreign = [p.name for p in events.iterdir()
               if p.name != MANIFEST and not (p.name.startswith("part-") and p.suffix == ".parquet")]
    if foreign:
        raise FileExistsError(f"{events} holds files the generator did not write ({sorted(foreign)[:3]}); "
                              "move them or choose another `synthetic.events_dir`")
    shutil.rmtree(events)


def read_manifest(events_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a generated events folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(events_dir) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(config: SyntheticConfig) -> bool:
    """True when `config.events_dir` holds every part of a generation with this config's hash."""
    manifest = read_manifest(config.events_dir)
    if manifest is None or manifest.get("config_hash") != config_hash(config):
        return False
    events = Path(config.events_dir)
    return all((events / f).is_file() and (events / f).stat().st_size == size
               for f, size in manifest["file_sizes"].items())


def generate(cfg: Any) -> GenerationSummary:
    """Hydra entry (scripts/generate_data.py): generate the world of `cfg.synthetic`, always rewriting.

    Args:
        cfg: composed config (conf/generate.yaml), its `synthetic` node, or a SyntheticConfig.

    Returns:
        The generation summary.
    """
    return write_synthetic(resolve_config(cfg))


def ensure_synthetic(cfg: Any, out_dir: str | Path | None = None, progress: bool = True) -> GenerationSummary:
    """Generate the synthetic world unless its files exist with a manifest of the same config hash.

    Args:
        cfg: as for `generate`.
        out_dir: folder of the parquet parts; default the config's `events_dir`.
        progress: show a progress bar when generating.

    Returns:
        The summary; `generated` is False when existing files were reused.
    """
    config = resolve_config(cfg, out_dir)
    if is_current(config):
        summary = GenerationSummary(**read_manifest(config.events_dir)["summary"])
        summary.path, summary.generated = config.events_dir, False
        return summary
    return write_synthetic(config, progress=progress)
