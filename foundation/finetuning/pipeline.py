"""`finetune(cfg)`: instantiate the heads, fit them on the examples, evaluate on the test period, report."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.evaluation.report import SCRATCH_BASELINE, ModelResult, log_report_to_wandb, write_report
from foundation.finetuning.blend import Blend
from foundation.finetuning.config import ALL_TASKS, finetune_config, save_config, task_specs
from foundation.finetuning.diagnostics import diagnostics_markdown, write_diagnostics
from foundation.finetuning.recipes import FullFinetune
from foundation.finetuning.run import FinetuneRun
from foundation.finetuning.summary import results_table, trait_embeddings

log = logging.getLogger(__name__)


def instantiate_models(cfg: DictConfig) -> dict[str, Any]:
    """name -> training recipe: the heads of `cfg.heads` (conf/head/*.yaml), then the baselines.

    `baselines.scratch: true` adds the first `FullFinetune` head from a random encoder; any other baseline
    is a recipe block like a head's (false/null: off).
    """
    models = {name: hydra.utils.instantiate(block, _convert_="all") for name, block in (cfg.get("heads") or {}).items()}
    for name, block in (cfg.get("baselines") or {}).items():
        if name == SCRATCH_BASELINE:
            full = next((m for m in models.values() if isinstance(m, FullFinetune) and m.pretrained), None)
            if block and full is not None:
                models[name] = full.from_scratch()
        elif OmegaConf.is_config(block):
            models[name] = hydra.utils.instantiate(block, _convert_="all")
        elif block not in (None, False):
            raise ValueError(f"baselines.{name}: expected a recipe block with _target_ or false, got {block!r}")
    return models


def _start(cfg: DictConfig) -> Path:
    if not cfg.get("checkpoint"):
        raise ValueError("checkpoint: required, e.g. checkpoint=checkpoints/<pretraining run>")
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    out_dir = Path(cfg.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _wandb(cfg: DictConfig, paths: dict[str, Path]) -> None:
    logger_cfg = (cfg.get("logger") or {}).get("wandb")
    if logger_cfg is None:
        return
    logger = hydra.utils.instantiate(logger_cfg)
    log_report_to_wandb(logger, paths)
    logger.experiment.finish()


def run_finetune(cfg: DictConfig, task_names: Sequence[str] | None = None) -> tuple[Path, list[ModelResult]]:
    """Everything behind finetune/finetune_all. Returns (run folder, results).

    Args:
        cfg: a finetune config (conf/finetune.yaml).
        task_names: conf/task/<name>.yaml of each task to run (None: cfg.task alone).
    """
    out_dir = _start(cfg)
    models = instantiate_models(cfg)
    fr = FinetuneRun(cfg, task_specs(cfg, task_names))
    results: list[ModelResult] = []
    # Blends read the scores of models trained before them: they go last.
    ordered = sorted(models.items(), key=lambda item: isinstance(item[1], Blend))
    for task in fr.tasks:
        for name, model in ordered:
            results += model.train(name, fr, task, out_dir)
            fr.tick(f"{task.name}/{name}")
    report = cfg.get("report") or {}
    found = write_diagnostics(out_dir, fr, results, float(report.get("drift_threshold", 0.2)))
    paths = write_report(out_dir, results, loss_log=fr.run.loss_log,
                         embeddings=trait_embeddings(fr, int(report.get("trait_customers", 2000))),
                         n_bootstrap=int(report.get("n_bootstrap", 1000)), seed=int(cfg.seed),
                         sections=diagnostics_markdown(found))
    fr.tick("report")
    _wandb(cfg, paths)
    summary = {"checkpoint": str(fr.run.hf_dir), "tasks": [t.name for t in fr.tasks], "heads": list(models),
               "timings_s": fr.timings, "cpu_s": fr.cpu_timings, "events_through_encoder": fr.encoder.events_read,
               "examples": {t: {s: tab.num_rows for s, tab in splits.items()} for t, splits in fr.examples.items()}}
    (out_dir / "finetune.json").write_text(json.dumps(summary, indent=2))
    save_config(cfg, out_dir / "config.yaml")
    log.info("fine-tune wall seconds %s; CPU seconds %s", fr.timings, fr.cpu_timings)
    return out_dir, results


def finetune(cfg: DictConfig) -> Path:
    """scripts/finetune.py: one task (cfg.task), the heads of cfg.heads, baselines, report. Returns the run folder.

    An entity task (`kind: entity`, e.g. task=merchant_risk) runs `foundation.entitytasks.run_entity_tasks`.
    """
    if cfg.task.get("kind") == "entity":
        from foundation.entitytasks.pipeline import run_entity_tasks
        from foundation.entitytasks.report import entity_table

        out_dir = _start(cfg)
        summary = run_entity_tasks(cfg, [cfg.task], out_dir)
        save_config(cfg, out_dir / "config.yaml")
        if not summary["tasks"]:  # the one task asked for does not fit the data: say why, not an empty table
            raise ValueError(f"task={cfg.task.name} skipped: {summary['skipped'][cfg.task.name]}")
        print(entity_table(summary))
        return out_dir
    out_dir, _ = run_finetune(cfg)
    print(results_table(out_dir / "metrics.json"))
    return out_dir


def finetune_all(cfg: DictConfig) -> tuple[Path, str]:
    """Fraud and authorization, every head and baseline in one go (what the quickstart runs).

    Args:
        cfg: a finetune config (conf/finetune.yaml, e.g. `finetune_config([f"checkpoint={run_dir}"])`); its
            `heads` default to all of them.
    Returns:
        (run folder, the results table as text).
    """
    with open_dict(cfg):
        if not cfg.get("heads"):
            cfg.heads = finetune_config(["head=all"]).heads
    out_dir, _ = run_finetune(cfg, ALL_TASKS)
    return out_dir, results_table(out_dir / "metrics.json")
