"""`pretrain(cfg)`: the importable, testable pretraining entry point behind scripts/pretrain.py."""

from __future__ import annotations

import logging
import sys
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.lightning.loggers import finish_loggers
from foundation.lightning.pretraining import PretrainingModule
from foundation.model.card import write_model_card
from foundation.model.presets import PRESETS
from foundation.preparation import PreparedData, prepare_pretraining_data
from foundation.resume import CONFIG_FILE, OVERRIDES_FILE, ConfigError, check_run, resolve_ckpt_path

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "build_model_config", "pretrain"]


def build_model_config(cfg: DictConfig, field_specs: list[dict], entity_types: list[str]):
    """Instantiate the model preset named in `cfg.model` with the tokenizer's fields and the objectives."""
    target = str(cfg.model.get("_target_", ""))
    preset = target.rsplit(".", 1)[-1]
    if preset not in PRESETS:
        raise ConfigError(f"model: unknown size preset {preset!r}; valid presets: {sorted(PRESETS)}")
    builder = hydra.utils.instantiate(cfg.model)
    weights = {str(k): float(v) for k, v in cfg.objective.weights.items()}
    return builder(fields=field_specs, entity_types=entity_types, objectives=weights)




def swept_values(job_overrides: list[str]) -> str:
    """The overrides of this job that the sweep varies (`model=gru,optimizer.lr=0.001`): keys given with
    several values on the command line or listed in `hydra.sweeper.params`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        swept = {o.key_or_group for o in parser.parse_overrides(args) if o.is_sweep_override()}
        swept |= {str(k) for k in (OmegaConf.select(HydraConfig.get().sweeper, "params") or {})}
        return ",".join(o.input_line for o in parser.parse_overrides(job_overrides) if o.key_or_group in swept)
    except HydraException:
        return ""


def name_sweep_job(cfg: DictConfig) -> None:
    """In a --multirun sweep, job N runs in `checkpoints/<run_name>/N` (with its Hydra record), is labelled
    with its swept values (`run_label`, the wandb run name) and grouped under the sweep (`sweep_name`)."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return
    job = HydraConfig.get().job
    base = str(cfg.run_name)
    values = swept_values([str(o) for o in HydraConfig.get().overrides.task])
    with open_dict(cfg):
        cfg.run_name = f"{base}/{job.num}"
        cfg.sweep_name = base
        cfg.run_label = f"{base}/{job.num}" + (f" {values}" if values else "")


def _invocation() -> tuple[list[str] | None, str | None]:
    """This invocation's command-line overrides and primary config name; (None, None) outside Hydra."""
    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    return [str(o) for o in hydra_cfg.overrides.task], hydra_cfg.job.config_name


def save_run_config(cfg: DictConfig, run_dir: Path, overrides: list[str] | None, new_run: bool) -> None:
    """Write `config.yaml` (resolved) and, for a new run, `overrides.yaml` and a fresh wandb run id that a
    resume reads back (so it continues the same wandb run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if new_run:
        with open_dict(cfg):
            for logger_cfg in (cfg.get("logger") or {}).values():
                if logger_cfg is not None and "Wandb" in str(logger_cfg.get("_target_")) and logger_cfg.get("id") is None:
                    logger_cfg.id = uuid.uuid4().hex[:12]
        started = [o for o in (overrides or []) if not o.startswith("ckpt_path=")]
        OmegaConf.save(OmegaConf.create(started), run_dir / OVERRIDES_FILE)
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)


class _DropMessages(logging.Filter):
    """Drops log records containing one of `fragments` (advertising tips, not information)."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


_LIGHTNING_TIPS = _DropMessages("litlogger", "litmodels")


def drop_lightning_tips() -> None:
    """Lightning advertises its cloud logger on every Trainer; drop those records (idempotent)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        if _LIGHTNING_TIPS not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_LIGHTNING_TIPS)


@contextmanager
def quiet_fit(new_run: bool):
    """Silence Lightning's own deprecation of torch's `LeafSpec` (nothing a user can act on) and, on a new
    run, "checkpoint directory exists and is not empty" (the run folder already holds the config and the
    Hydra record); on a resume that warning is kept."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        if new_run:
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        yield


def describe_model(module: PretrainingModule) -> str:
    """One line instead of Lightning's model summary table (whose FLOPs column reads 0 for this model)."""
    config = module.config
    n_params = sum(p.numel() for p in module.parameters())
    return (f"model: {n_params:,} parameters ({config.encoder_type}, hidden {config.hidden_size}, "
            f"{config.num_layers} layers); objectives {dict(config.objectives)}")


def export_model_card(cfg: DictConfig, data: PreparedData, trainer: pl.Trainer, module: PretrainingModule) -> None:
    """Write the model card `README.md` into the exported `hf/` folder (rank 0, after fit)."""
    hf_dir = Path(cfg.run_dir) / "hf"
    if not trainer.is_global_zero or not hf_dir.is_dir():
        return
    config = module.config
    splits = OmegaConf.to_container(cfg.data.get("splits") or {}, resolve=True)
    data_rows = {"dataset": data.schema.name, "source": cfg.data.source.path,
                 "entity types": ", ".join(data.tokenizer.entity_types),
                 "fields": ", ".join(f["name"] for f in config.fields),
                 "training": f"{trainer.global_step} steps, {trainer.current_epoch} epochs, seed {cfg.seed}"}
    architecture = {key: getattr(config, key) for key in
                    ("encoder_type", "hidden_size", "num_layers", "num_heads", "max_position", "time_encoding")}
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()
               if key.endswith("/loss") or "/loss_" in key}
    write_model_card(hf_dir, run_name=str(cfg.run_name), data=data_rows, objectives=dict(config.objectives),
                     periods={k: v for k, v in splits.items() if isinstance(v, dict)},
                     architecture=architecture, metrics=metrics)


def pretrain(cfg: DictConfig) -> Path:
    """Check the run, prepare data, build model + datamodule + trainer from config, fit, export to
    `<run_dir>/hf`. A resume (`ckpt_path=last`) continues with the run's own saved config.

    Returns:
        The run's checkpoint folder (`last.ckpt` for exact resume, `hf/` for from_pretrained).
    Raises:
        ConfigError: bad config, a resume override that would change the run, a missing or corrupt
            checkpoint, an unwritable run folder; raised before anything is written.
    """
    drop_lightning_tips()
    name_sweep_job(cfg)
    overrides, config_name = _invocation()
    cfg = check_run(cfg, overrides, config_name)
    ckpt_path = resolve_ckpt_path(cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.run_dir)

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
        compile=bool(cfg.get("compile", False)),
    )
    new_run = not any(run_dir.glob("*.ckpt"))
    save_run_config(cfg, run_dir, overrides, new_run=ckpt_path is None)
    # A null entry is switched off (`++callbacks.<name>=null` drops one on a resume).
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
        summary = cfg.trainer.get("enable_model_summary")
        trainer: pl.Trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, use_distributed_sampler=False,
            enable_model_summary=bool(summary) if summary is not None else False,
        )
        log.info(describe_model(module))
        with quiet_fit(new_run):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    finally:
        finish_loggers(loggers)  # a sweep's next job starts its own wandb run; wandb's summary prints now
    export_model_card(cfg, data, trainer, module)
    log.info("model saved to %s", run_dir / "hf")
    return run_dir
