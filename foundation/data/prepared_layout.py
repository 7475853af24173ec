"""Where prepared data lives: `<data_dir>/<dataset>/prepared/<fingerprint>/sequences/<period>/`.

Both sequence backends (pyarrow through `foundation.preparation`, Spark with `prepared: true`) write into the
same folders, so the fingerprint and the periods are defined here, below both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from foundation.data.schema import DataSchema
from foundation.data.source import open_dataset

PERIODS = ("pretrain", "all")


def fingerprint(data_cfg: DictConfig | dict, schema: DataSchema) -> str:
    """A short hash of the resolved data config and the source files (paths, sizes, mtimes)."""
    resolved = OmegaConf.to_container(data_cfg, resolve=True) if isinstance(data_cfg, DictConfig) else data_cfg
    files = sorted(open_dataset(schema.source).files)
    stats = [(f, Path(f).stat().st_size, int(Path(f).stat().st_mtime)) for f in files]
    blob = json.dumps({"config": resolved, "files": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
