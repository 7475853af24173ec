"""The entity tasks' report: entity_metrics.json, entity_report.md and plots/entity_<task>_*.png in the run folder.

Every model gets its metrics with entity-clustered bootstrap intervals at every label fraction; every other
model at 100% labels gets its paired difference against the baseline (the aggregate LightGBM) on the same draws.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foundation.entitytasks.metrics import PRIMARY, beats, bootstrap_metrics, paired_difference
from foundation.json_encoding import json_default


def _task_summary(results: Sequence[Any], baseline: str, n_bootstrap: int, seed: int) -> dict[str, Any]:
    first = results[0]
    problem = first.problem
    metric = PRIMARY[problem]
    models: dict[str, Any] = {}
    for r in results:
        entry = models.setdefault(r.model, {"by_fraction": {}})
        entry["by_fraction"][str(r.fraction)] = {"n_train": r.n_train,
                                                 **bootstrap_metrics(problem, r.y, r.scores, r.groups, n_bootstrap,
                                                                     seed)}
    full = {r.model: r for r in results if r.fraction == 1.0}
    if baseline in full:
        for name, r in full.items():
            if name != baseline:
                diff = paired_difference(problem, r.y, r.scores, full[baseline].scores, r.groups, n_bootstrap, seed)
                models[name]["vs_" + baseline] = diff
                models[name]["beats_" + baseline] = beats(metric, diff[metric])
    y = first.y
    return {"problem": problem, "primary_metric": metric, "n_test": int(len(y)),
            "n_test_entities": int(len(np.unique(first.groups))), "classes": list(first.classes),
            "test_target_mean": float(np.mean(y)), "models": models}


def _plots(plot_dir: Path, task: str, results: Sequence[Any], summary: dict[str, Any]) -> list[str]:
    from foundation.evaluation.plots import plot_curves, plot_label_efficiency

    plot_dir.mkdir(parents=True, exist_ok=True)
    metric = summary["primary_metric"]
    points = {name: [(float(f), m[metric]) for f, m in entry["by_fraction"].items()]
              for name, entry in summary["models"].items()}
    paths = [plot_label_efficiency(plot_dir / f"entity_{task}_label_efficiency.png", task, points, metric)]
    if summary["problem"] == "binary":
        curves = {r.model: (r.y, r.scores) for r in results if r.fraction == 1.0}
        paths.append(plot_curves(plot_dir / f"entity_{task}_curves.png", task, curves))
    return [str(p) for p in paths]


def _fmt(m: dict[str, float]) -> str:
    return f"{m['value']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def entity_table(summary: dict[str, Any]) -> str:
    """The results as a markdown table: per task and model at 100% labels, the primary metric with its 95% CI
    and the paired difference against the baseline."""
    lines = ["| task (entity, problem) | model | n_train | metric | value [95% CI] | vs baseline [95% CI] |",
             "|---|---|---|---|---|---|"]
    for task, s in summary["tasks"].items():
        metric = s["primary_metric"]
        for name, entry in s["models"].items():
            at_full = entry["by_fraction"].get("1.0")
            if at_full is None:
                continue
            vs = entry.get("vs_" + summary["baseline"], {}).get(metric)
            mark = " *" if entry.get("beats_" + summary["baseline"]) else ""
            lines.append(f"| {task} ({s['entity']}, {s['problem']}) | {name} | {at_full['n_train']} | {metric} | "
                         f"{_fmt(at_full[metric])} | {(_fmt(vs) + mark) if vs else '-'} |")
    for task, why in summary.get("skipped", {}).items():
        lines.append(f"| {task} | skipped: {why} | | | | |")
    return "\n".join(lines)


def write_entity_report(out_dir: Path, results: Sequence[Any], baseline: str, n_bootstrap: int, seed: int,
                        skipped: dict[str, str] | None = None, dataset: str = "") -> dict[str, Any]:
    """Metrics, paired differences, plots and markdown of entity task results.

    Returns:
        The summary written to entity_metrics.json.
    """
    out_dir = Path(out_dir)
    by_task: dict[str, list[Any]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r)
    summary: dict[str, Any] = {"dataset": dataset, "baseline": baseline, "n_bootstrap": n_bootstrap,
                               "tasks": {}, "skipped": dict(skipped or {})}
    for task, task_results in by_task.items():
        s = _task_summary(task_results, baseline, n_bootstrap, seed)
        s["entity"] = task_results[0].entity
        s["plots"] = _plots(out_dir / "plots", task, task_results, s)
        summary["tasks"][task] = s
    (out_dir / "entity_metrics.json").write_text(json.dumps(summary, indent=2,
                                                            default=json_default("entity_metrics.json")))
    text = [f"# Entity tasks on {dataset}", "",
            f"Test period; 95% intervals from {n_bootstrap} entity-clustered bootstrap resamples; `*`: better than "
            f"`{baseline}` beyond the paired interval.", "", entity_table(summary), ""]
    for task, s in summary["tasks"].items():
        text += [f"## {task}", "", f"{s['n_test']} test examples of {s['n_test_entities']} {s['entity']} entities; "
                 f"mean target {s['test_target_mean']:.4f}.", ""]
        text += [f"![{Path(p).stem}](plots/{Path(p).name})" for p in s["plots"]] + [""]
    (out_dir / "entity_report.md").write_text("\n".join(text))
    return summary
