"""`quickstart(cfg)`: every stage of the framework once, on the configured dataset (the embedded synthetic
world by default)."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from foundation.data.schema import DataSchema
from foundation.data.summary import describe_sequences, format_summary
from foundation.preparation import prepare


def _banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def data_banner(cfg: DictConfig) -> str:
    """The data stage's title, naming the dataset of `cfg.data` and where its events come from."""
    schema = DataSchema.from_config(cfg.data)
    generated = schema.name == "synthetic" and cfg.get("synthetic") is not None  # foundation.preparation.ensure_source
    origin = f"synthetic payments world in {schema.source.path}" if generated else schema.source.path
    return f"data: dataset {schema.name} ({origin}) -> validated events -> sequences -> tokenizer"


def quickstart(cfg: DictConfig) -> Path:
    """Prepare the data and print its summary, pretrain, then fine-tune and print the results table.

    Returns:
        The fine-tuning report folder (the last line printed).
    """
    started = time.perf_counter()
    _banner(data_banner(cfg))
    prepared = prepare(cfg)
    print(format_summary(describe_sequences(prepared.sequence_dir("all"))))
    print(f"tokenizer (fitted on the pretraining period): {prepared.root / 'tokenizer'}")

    _banner("pretraining")
    from foundation.training import pretrain

    run_dir = pretrain(cfg)
    print(f"model saved to {run_dir / 'hf'}")

    _banner("fine-tuning: fraud and authorization heads, baselines, out-of-time evaluation")
    from foundation.finetuning import finetune_all, finetune_config

    finetune_cfg = finetune_config([f"checkpoint={run_dir}", f"paths.root_dir={cfg.paths.root_dir}",
                                    f"seed={cfg.seed}", *cfg.get("finetune_overrides", [])])
    report_dir, table = finetune_all(finetune_cfg)
    print(table)
    print(f"report (metrics.json, report.md, plots): {report_dir}")

    entity_tasks = list(cfg.get("entity_tasks", ["merchant_risk"]))  # +entity_tasks=[] skips the block
    if entity_tasks:
        _banner(f"entity tasks ({', '.join(entity_tasks)}): heads on the entity embedding vs aggregates LightGBM")
        from foundation.entitytasks.pipeline import quickstart_entity_tasks

        print(quickstart_entity_tasks(finetune_cfg, report_dir, entity_tasks))
        print(f"entity report (entity_metrics.json, entity_report.md): {report_dir}")
    print(f"quickstart finished in {time.perf_counter() - started:.0f} s")
    return report_dir
