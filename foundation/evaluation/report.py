"""The evaluation report: metrics.json, report.md and PNG plots of every model on every task.

A model is a name plus scores on a task's test examples (`ModelResult`); every model of a task must be
scored on the same examples, with the same labels, so their metrics and curves compare like with like.
`write_report` computes the metrics with bootstrap intervals and writes the files; `log_report_to_wandb`
sends the images and the metrics table to a wandb run the caller already has.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from foundation.evaluation import plots
from foundation.evaluation.metrics import METRIC_NAMES, evaluate_scores, metric_key, paired_pr_auc_delta
from foundation.json_encoding import json_default

log = logging.getLogger(__name__)

# Baseline (a), LightGBM on the velocity features alone (conf/finetune.yaml `baselines`); named so that it
# cannot be taken for the head `embeddings_velocity_lgbm` (the same LightGBM with the embeddings added).
VELOCITY_BASELINE = "velocity_lgbm_baseline"
SCRATCH_BASELINE = "scratch"          # baseline (b): the full head from a random encoder
BASELINES = (VELOCITY_BASELINE, SCRATCH_BASELINE)


@dataclass
class ModelResult:
    """One model's scores on one task's test examples.

    Attributes:
        task: task name (`fraud`, `authorization`).
        model: model or head name (`velocity_lgbm_baseline`, `probe`, `mlp`, `full`, `gbdt`, ...).
        labels: (N,) 0/1 test labels.
        scores: (N,) test scores, higher = more likely positive.
        label_fraction: fraction of the training labels the model was trained on.
        n_train: number of training examples (labels) it saw.
        event_ids: (N,) test event ids; when given, every model of the task must list the same ones.
        extra: anything else for metrics.json (threshold, validation metrics, ...); JSON-serialisable.
    """

    task: str
    model: str
    labels: np.ndarray
    scores: np.ndarray
    label_fraction: float = 1.0
    n_train: int | None = None
    event_ids: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_examples(
        cls,
        examples: pa.Table,
        task: str,
        model: str,
        scores: np.ndarray,
        label_fraction: float = 1.0,
        n_train: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ModelResult:
        """A result whose labels and event ids come from select_examples(..., "test").

        Args:
            examples: the task's test examples (columns `label`, `event_id`).
            scores: (N,) the model's scores, in the examples' row order.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(examples),):
            raise ValueError(f"{task}/{model}: {scores.shape} scores for {len(examples)} test examples")
        return cls(task, model, examples.column("label").to_numpy(), scores, label_fraction, n_train,
                   examples.column("event_id").to_numpy(zero_copy_only=False), dict(extra or {}))

    @property
    def label(self) -> str:
        """The model name with its label fraction when below 100% (`velocity_lgbm_baseline@10%`)."""
        return self.model if self.label_fraction >= 1.0 else f"{self.model}@{self.label_fraction:.0%}"


@dataclass
class TraitEmbeddings:
    """Entity embeddings with a known trait per entity, for the 2-D projection plot.

    Attributes:
        embeddings: (N, H).
        traits: (N,) trait value per entity (e.g. the synthetic customer's segment).
        trait_name: legend title.
        entity_type: whose embeddings these are.
    """

    embeddings: np.ndarray
    traits: np.ndarray
    trait_name: str = "trait"
    entity_type: str = "customer"


def _check_same_examples(results: Sequence[ModelResult]) -> None:
    """Raise ValueError naming the model when models of one task were scored on different examples."""
    first: dict[str, ModelResult] = {}
    for result in results:
        labels = np.asarray(result.labels)
        if np.asarray(result.scores).shape != labels.shape:
            raise ValueError(f"{result.task}/{result.label}: {np.shape(result.scores)} scores for "
                             f"{labels.shape} labels")
        reference = first.setdefault(result.task, result)
        if reference is result:
            continue
        same = labels.shape == np.shape(reference.labels) and np.array_equal(labels, reference.labels)
        if same and result.event_ids is not None and reference.event_ids is not None:
            same = np.array_equal(np.asarray(result.event_ids), np.asarray(reference.event_ids))
        if not same:
            raise ValueError(f"task {result.task}: model {result.label} was not scored on the same test "
                             f"examples as {reference.label} (labels or event ids differ)")


def baseline_comparisons(results: Sequence[ModelResult], n_bootstrap: int, seed: int,
                         confidence: float) -> list[dict[str, Any]]:
    """The questions the report answers, as paired PR-AUC differences on the same test examples:
    (a) every model trained on all labels against the velocity LightGBM trained on all labels;
    (b) every pretrained model trained on 10% (and 1%) of the labels against the scratch network on all labels.
    A model "beats" a baseline when the lower end of the paired interval is above zero.
    """
    found = {(r.task, r.model, round(r.label_fraction, 6)): r for r in results}
    out = []
    for r in results:
        if r.model in BASELINES:
            continue
        pairs = []
        if r.label_fraction == 1.0:
            pairs.append((VELOCITY_BASELINE, 1.0))
        if r.label_fraction < 1.0:
            pairs.append((SCRATCH_BASELINE, 1.0))
        for baseline, fraction in pairs:
            base = found.get((r.task, baseline, fraction))
            if base is None or n_bootstrap < 1:
                continue
            delta = paired_pr_auc_delta(r.labels, r.scores, base.scores, n_bootstrap, seed, confidence)
            out.append({"task": r.task, "model": r.model, "label_fraction": float(r.label_fraction),
                        "baseline": baseline, "baseline_label_fraction": fraction, "metric": "pr_auc",
                        **delta, "beats_baseline": delta["ci_low"] > 0})
    return out


def _format(metric: dict[str, float]) -> str:
    return f"{metric['value']:.4f} [{metric['ci_low']:.4f}, {metric['ci_high']:.4f}]"


def _metric_row(result: ModelResult, keys: Sequence[str], n_bootstrap: int, seed: int, fpr: float,
                confidence: float) -> dict[str, Any]:
    """metrics.json row of one model: its test metrics with intervals, then its `extra`."""
    metrics = evaluate_scores(result.labels, result.scores, n_bootstrap, seed, fpr, confidence)
    log.info("%s / %s: %s", result.task, result.label, "  ".join(f"{k} {_format(metrics[k])}" for k in keys))
    return {
        "task": result.task,
        "model": result.model,
        "label_fraction": float(result.label_fraction),
        "n_train": None if result.n_train is None else int(result.n_train),
        "n_test": metrics["n"],
        "n_test_positive": metrics["n_positive"],
        **{key: metrics[key] for key in keys},
        **result.extra,
    }


def _task_plots(plot_dir: Path, task: str, entries: list[tuple[ModelResult, dict]]) -> dict[str, Path]:
    """Curves and score histograms of each model at its largest label fraction; PR-AUC by label fraction."""
    paths: dict[str, Path] = {}
    best: dict[str, ModelResult] = {}
    for result, _ in entries:
        if result.model not in best or result.label_fraction > best[result.model].label_fraction:
            best[result.model] = result
    curves = {r.label: (np.asarray(r.labels), np.asarray(r.scores, dtype=np.float64)) for r in best.values()}
    paths[f"curves_{task}"] = plots.plot_curves(plot_dir / f"{task}_curves.png", task, curves)
    paths[f"scores_{task}"] = plots.plot_score_distributions(plot_dir / f"{task}_scores.png", task, curves)
    series: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for result, row in entries:
        series[result.model].append((result.label_fraction, row["pr_auc"]))
    if any(len(points) > 1 for points in series.values()):
        paths[f"label_efficiency_{task}"] = plots.plot_label_efficiency(
            plot_dir / f"{task}_label_efficiency.png", task, series)
    return paths


def write_report(
    run_dir: str | Path,
    results: Sequence[ModelResult],
    loss_log: str | Path | None = None,
    embeddings: TraitEmbeddings | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    fpr: float = 0.01,
    confidence: float = 0.95,
    sections: Sequence[str] = (),
) -> dict[str, Path]:
    """Compute every model's test metrics and write metrics.json, report.md and the plots.

    Args:
        run_dir: output folder (created); plots go to run_dir/plots/.
        results: one ModelResult per (task, model, label fraction).
        loss_log: a Lightning CSVLogger metrics.csv of the pretraining run (optional).
        embeddings: entity embeddings + a known trait for the projection plot (optional).
        n_bootstrap: stratified bootstrap resamples per interval.
        seed: bootstrap seed (the same for every model: paired resamples of the same examples).
        fpr: target FPR of the recall metric.
        confidence: interval coverage.
        sections: further markdown lines appended to report.md (e.g. slices and drift).

    Returns:
        name -> path: `metrics_json`, `report_md`, and one entry per PNG (`curves_<task>`,
        `scores_<task>`, `label_efficiency_<task>`, `pretraining_loss`, `embedding_projection`).
    """
    if not results:
        raise ValueError("write_report: no results to report")
    _check_same_examples(results)
    run_dir = Path(run_dir)
    plot_dir = run_dir / "plots"
    run_dir.mkdir(parents=True, exist_ok=True)
    keys = [metric_key(name, fpr) for name in METRIC_NAMES]

    rows = [_metric_row(result, keys, n_bootstrap, seed, fpr, confidence) for result in results]
    comparisons = baseline_comparisons(results, n_bootstrap, seed, confidence)
    for c in comparisons:
        log.info("%s / %s@%.0f%% - %s@%.0f%%: PR-AUC %+.4f [%+.4f, %+.4f]", c["task"], c["model"],
                 100 * c["label_fraction"], c["baseline"], 100 * c["baseline_label_fraction"], c["delta"],
                 c["ci_low"], c["ci_high"])

    paths: dict[str, Path] = {}
    by_task: dict[str, list[tuple[ModelResult, dict]]] = defaultdict(list)
    for result, row in zip(results, rows):
        by_task[result.task].append((result, row))
    for task, entries in by_task.items():
        paths.update(_task_plots(plot_dir, task, entries))
    if loss_log is not None:
        paths["pretraining_loss"] = plots.plot_loss_curves(plot_dir / "pretraining_loss.png", loss_log)
    if embeddings is not None:
        paths["embedding_projection"] = plots.plot_embedding_projection(
            plot_dir / f"{embeddings.entity_type}_embeddings.png", embeddings.embeddings, embeddings.traits,
            embeddings.trait_name, embeddings.entity_type)

    document = {
        "protocol": {
            "bootstrap": {"n_resamples": n_bootstrap, "seed": seed, "confidence": confidence, "stratified": True},
            "recall_at_fpr": fpr,
        },
        "results": rows,
        "comparisons": comparisons,
    }
    paths["metrics_json"] = run_dir / "metrics.json"
    paths["metrics_json"].write_text(json.dumps(document, indent=2, default=json_default("metrics.json")))
    paths["report_md"] = run_dir / "report.md"
    markdown = _markdown(by_task, keys, paths, run_dir, n_bootstrap, confidence, comparisons)
    paths["report_md"].write_text("\n".join([markdown.rstrip("\n"), *sections]) + "\n")
    return paths


def _markdown(by_task: dict[str, list[tuple[ModelResult, dict]]], keys: list[str], paths: dict[str, Path],
              run_dir: Path, n_bootstrap: int, confidence: float, comparisons: Sequence[dict]) -> str:
    titles = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
    lines = ["# Evaluation report", "",
             f"Out-of-time test period; value [{confidence:.0%} CI] from {n_bootstrap} stratified bootstrap "
             "resamples of the test examples.", ""]
    for task, entries in by_task.items():
        first = entries[0][1]
        rate = first["n_test_positive"] / first["n_test"]
        lines += [f"## {task}", "",
                  f"{first['n_test']} test examples, {first['n_test_positive']} positive (base rate {rate:.4f}: "
                  "the PR-AUC of a random score).", ""]
        header = ["model", "labels", "n_train"] + [titles.get(k, k.replace("_", " ")) for k in keys]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for result, row in sorted(entries, key=lambda e: (e[0].model, -e[0].label_fraction)):
            n_train = "" if row["n_train"] is None else str(row["n_train"])
            cells = [result.model, f"{result.label_fraction:.0%}", n_train] + [_format(row[k]) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        mine = [c for c in comparisons if c["task"] == task]
        if mine:
            lines += [f"Against the baselines: paired PR-AUC difference on the same test examples [{confidence:.0%} "
                      "CI]; a model beats the baseline when the whole interval is above zero.", "",
                      "| model | labels | baseline | PR-AUC difference | beats it |", "|---|---|---|---|---|"]
            for c in mine:
                lines.append(f"| {c['model']} | {c['label_fraction']:.0%} | {c['baseline']} "
                             f"({c['baseline_label_fraction']:.0%}) | {c['delta']:+.4f} [{c['ci_low']:+.4f}, "
                             f"{c['ci_high']:+.4f}] | {'yes' if c['beats_baseline'] else 'no'} |")
            lines.append("")
        for name in (f"curves_{task}", f"scores_{task}", f"label_efficiency_{task}"):
            if name in paths:
                lines += [f"![{name}]({paths[name].relative_to(run_dir).as_posix()})", ""]
    for name in ("pretraining_loss", "embedding_projection"):
        if name in paths:
            lines += [f"## {name.replace('_', ' ')}", "", f"![{name}]({paths[name].relative_to(run_dir).as_posix()})",
                      ""]
    return "\n".join(lines)


def log_report_to_wandb(logger_or_run: Any, paths: dict[str, Path]) -> dict[str, Any]:
    """Log the report's images and metrics table to wandb.

    Args:
        logger_or_run: a wandb run, a Lightning WandbLogger (its `.experiment` is used), or None (no-op).
        paths: the return value of write_report.

    Returns:
        The dict passed to run.log (empty when no run was given).
    """
    if logger_or_run is None:
        return {}
    run = getattr(logger_or_run, "experiment", logger_or_run)
    if not hasattr(run, "log"):
        raise TypeError(f"log_report_to_wandb: {type(logger_or_run).__name__} is neither a wandb run nor a "
                        "WandbLogger")
    import wandb

    payload: dict[str, Any] = {}
    for name, path in paths.items():
        if Path(path).suffix == ".png":
            payload[f"report/{name}"] = wandb.Image(str(path), caption=name)
    if "metrics_json" in paths:
        rows = json.loads(Path(paths["metrics_json"]).read_text())["results"]
        metric_keys = [k for k in rows[0] if isinstance(rows[0][k], dict) and "value" in rows[0][k]]
        columns = ["task", "model", "label_fraction", "n_train", "n_test"]
        columns += [f"{k}{suffix}" for k in metric_keys for suffix in ("", "_ci_low", "_ci_high")]
        data = [[row["task"], row["model"], row["label_fraction"], row["n_train"], row["n_test"]]
                + [row[k][part] for k in metric_keys for part in ("value", "ci_low", "ci_high")] for row in rows]
        payload["report/metrics"] = wandb.Table(columns=columns, data=data)
    run.log(payload)
    return payload
