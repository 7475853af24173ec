"""What the benchmark sections share: composed configs, the prepared default data, and a small pretraining run
with fine-tuned heads (embedding export and serving need a real checkpoint, made the way a user makes one).

Everything is cached: the prepared data by `foundation.preparation` itself, the runs under
`<work_dir>/runs/<name>/` keyed by a hash of their overrides and the prepared data, so re-running one section
(`python scripts/benchmark.py sections=[serving]`) does not retrain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.preparation import PreparedData

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
KEY_FILE = "benchmark_key.txt"


def compose_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/<name>.yaml with overrides, inside a running Hydra app of this repo or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(folder: Path, key: str, marker: str) -> bool:
    """Whether `folder` holds a finished run (its `marker` file) made with the same `key`."""
    stamp = folder / KEY_FILE
    return (folder / marker).exists() and stamp.exists() and stamp.read_text().strip() == key


class BenchContext:
    """Lazily built artifacts shared by the benchmark sections.

    Args:
        cfg: the composed conf/benchmark.yaml (reads paths, work_dir, prepared, checkpoint).
    """

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.root = Path(str(cfg.paths.root_dir)).resolve()
        self.work_dir = Path(str(cfg.work_dir)).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def pretrain_config(self, overrides: Sequence[str] = (), run_dir: Path | None = None) -> DictConfig:
        """conf/pretrain.yaml with the benchmark's data overrides (`prepared.overrides`) and `overrides`."""
        base = [f"paths.root_dir={self.root}", *[str(o) for o in self.cfg.prepared.overrides]]
        cfg = compose_config("pretrain", [*base, *overrides])
        with open_dict(cfg):
            # `${hydra:runtime.output_dir}` only resolves inside the pretraining app itself.
            cfg.paths.output_dir = str((run_dir or self.work_dir) / "hydra")
            if run_dir is not None:
                cfg.run_dir = str(run_dir)
                cfg.run_name = run_dir.name
        return cfg

    @cached_property
    def prepared(self) -> PreparedData:
        """The default synthetic world (the quickstart's data), prepared once; `sequences/all` encoded too."""
        from foundation.preparation import prepare

        return prepare(self.pretrain_config(), encode_periods=("pretrain", "all"))

    def encoded(self, entity_type: str, period: str = "pretrain") -> pa.Table:
        """The encoded sequences of one entity type and period as one arrow table."""
        folder = self.prepared.root / "encoded" / period / entity_type
        files = sorted(folder.glob("part-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{folder}: no encoded shards of entity type {entity_type!r}")
        return pa.concat_tables([pq.read_table(f) for f in files])

    @cached_property
    def pretrained_run(self) -> Path:
        """A pretraining run of the `checkpoint` preset (windows of `checkpoint.max_len` events) trained for
        `checkpoint.steps` steps through `foundation.training.pretrain`; reused when already there."""
        from foundation.training import pretrain

        ck = self.cfg.checkpoint
        overrides = [f"model={ck.preset}", f"model.max_position={int(ck.max_len)}",
                     f"datamodule.batch_size={int(ck.batch_size)}", "trainer.max_epochs=1",
                     f"datamodule.batches_per_epoch={int(ck.steps)}", "datamodule.val_batches=2", "logger=csv",
                     "trainer.enable_progress_bar=false", *[str(o) for o in ck.overrides]]
        run_dir = self.work_dir / "runs" / f"pretrain-{ck.preset}"
        key = _key(overrides, list(self.cfg.prepared.overrides), self.prepared.root.name)
        if _cached(run_dir, key, "hf/model.safetensors"):
            log.info("reusing the pretraining run %s", run_dir)
            return run_dir
        if run_dir.exists():
            shutil.rmtree(run_dir)  # made by an earlier benchmark with other settings
        pretrain(self.pretrain_config(overrides, run_dir))
        (run_dir / KEY_FILE).write_text(key + "\n")
        return run_dir

    @cached_property
    def finetune_run(self) -> Path:
        """GBDT heads for fraud and authorization on `pretrained_run` (what the service serves), with
        `checkpoint.finetune` overrides bounding the examples; reused when already there."""
        from foundation.finetuning import ALL_TASKS, finetune_config, run_finetune

        checkpoint = self.pretrained_run
        ft_dir = self.work_dir / "runs" / f"finetune-{checkpoint.name}"
        overrides = [f"checkpoint={checkpoint}", f"paths.root_dir={self.root}", f"run_dir={ft_dir}",
                     "head=gbdt", "logger=none", *[str(o) for o in self.cfg.checkpoint.finetune]]
        key = _key(overrides, (checkpoint / KEY_FILE).read_text().strip())
        if _cached(ft_dir, key, "finetune.json"):
            log.info("reusing the fine-tune run %s", ft_dir)
            return ft_dir
        if ft_dir.exists():
            shutil.rmtree(ft_dir)
        cfg = finetune_config(overrides)
        with open_dict(cfg):
            cfg.run_name = ft_dir.name
            cfg.paths.output_dir = str(ft_dir / "hydra")
        run_finetune(cfg, ALL_TASKS)
        (ft_dir / KEY_FILE).write_text(key + "\n")
        return ft_dir

    def resolved(self, node: Any) -> Any:
        """A config node as plain Python (for results.json)."""
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
