"""`pretrain(cfg)`: the importable, testable pretraining entry point behind scripts/pretrain.py."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.lightning.pretraining import PretrainingModule
from foundation.model.presets import PRESETS
from foundation.preparation import prepare_pretraining_data

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A Hydra override or config value that cannot work, with the key and the valid choices."""


def build_model_config(cfg: DictConfig, field_specs: list[dict], entity_types: list[str]):
    """Instantiate the model preset named in `cfg.model` with the tokenizer's fields and the objectives."""
    target = str(cfg.model.get("_target_", ""))
    preset = target.rsplit(".", 1)[-1]
    if preset not in PRESETS:
        raise ConfigError(f"model: unknown size preset {preset!r}; valid presets: {sorted(PRESETS)}")
    builder = hydra.utils.instantiate(cfg.model)
    weights = {str(k): float(v) for k, v in cfg.objective.weights.items()}
    return builder(fields=field_specs, entity_types=entity_types, objectives=weights)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` resumes `<run_dir>/last.ckpt`; any other value is a path; null starts fresh."""
    if cfg.ckpt_path in (None, ""):
        return None
    path = Path(cfg.run_dir) / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.exists():
        raise ConfigError(f"ckpt_path: {path} does not exist (run_name={cfg.run_name!r}; set it to the run to resume)")
    return str(path)


def separate_sweep_runs(cfg: DictConfig) -> None:
    """In a --multirun sweep every job gets its own run folder (`<run_name>-<job number>`)."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.run_name = f"{cfg.run_name}-{HydraConfig.get().job.num}"


def pretrain(cfg: DictConfig) -> Path:
    """Prepare data, build model + datamodule + trainer from config, fit, export to `<run_dir>/hf`.

    Returns:
        The run's checkpoint folder (`last.ckpt` for exact resume, `hf/` for from_pretrained).
    """
    separate_sweep_runs(cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_ckpt_path(cfg)

    data = prepare_pretraining_data(cfg)
    model_config = build_model_config(cfg, data.tokenizer.field_specs(), list(data.tokenizer.entity_types))
    datamodule = hydra.utils.instantiate(
        cfg.datamodule,
        encoded=data.encoded,
        tokenizer=data.tokenizer,
        max_len=int(cfg.datamodule.max_len or model_config.max_position),
        views=int(cfg.objective.views),
        seed=int(cfg.seed),
        _recursive_=False,
    )
    module = PretrainingModule(
        model_config=model_config.to_dict(),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        seed=int(cfg.seed),
    )
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, use_distributed_sampler=False
    )
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    log.info("model saved to %s", run_dir / "hf")
    return run_dir
