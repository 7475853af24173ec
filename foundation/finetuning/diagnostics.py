"""See why: the per-example scores file, metrics per slice and feature drift of a fine-tune run.

- `scores.parquet`: one row per (task, test example): event id, entity ids, time, task, label, one
  `score_<model>` column per model trained on all labels, and the slice columns (foundation.evaluation.scores).
- slices: PR-AUC / ROC-AUC per value of the task's `slices:` columns (canonical fields, or columns of the raw
  source the schema does not map, such as the synthetic world's `fraud_pattern`, joined by event id), per amount
  quartile and per customer history length (prior events), with a PNG per task.
- drift: the population stability index of every incumbent feature between the train and test examples,
  flagged above the threshold (foundation.evaluation.drift), with a PNG per task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.source import open_dataset
from foundation.evaluation.drift import plot_drift, population_stability
from foundation.evaluation.metrics import pr_auc, recall_at_fpr
from foundation.evaluation.report import ModelResult
from foundation.evaluation.scores import scores_table, stack_scores_tables, write_scores_table
from foundation.evaluation.slices import plot_slice_pr_auc, slices_from_scores
from foundation.evaluation.splits import TaskSpec
from foundation.pointintime import example_keys

log = logging.getLogger(__name__)
HISTORY = "history_length"
AMOUNT = "amount"


def _source_columns(fr: Any, names: Sequence[str], event_ids: pa.Array) -> dict[str, pa.Array]:
    """Raw source columns the schema does not map (e.g. a planted-pattern annotation), aligned on event ids."""
    if not names:
        return {}
    dataset = open_dataset(fr.schema.source)
    id_column = fr.schema.event_id
    available = [n for n in names if n in dataset.schema.names] if id_column else []
    missing = sorted(set(names) - set(available))
    if missing:  # a task config is shared by datasets: a slice one of them lacks is skipped, and said
        log.warning("slices %s: neither a field of dataset %s nor a column of its source%s; not sliced", missing,
                    fr.schema.name, "" if id_column else " (no event_id column to join the source on)")
    if not available:
        return {}
    raw = dataset.to_table(columns=[id_column, *available])
    position = pc.index_in(pc.cast(event_ids, pa.string()), value_set=pc.cast(raw[id_column], pa.string()))
    return {n: raw[n].combine_chunks().take(position) for n in available}


def _slice_columns(fr: Any, task: TaskSpec, test: pa.Table) -> dict[str, Any]:
    """amount, history_length and the task's slice columns of the test examples, in their order."""
    rows = test.column("row")
    columns: dict[str, Any] = {}
    amount_field = (task.velocity or {}).get("amount_field", AMOUNT)
    if amount_field in fr.events.column_names:
        columns[AMOUNT] = fr.events.column(amount_field).take(rows)
    if "customer" in fr.frozen.states:
        index = fr.states_of(test).states["customer"].index
        columns[HISTORY] = pa.array(np.asarray(index) + 1, pa.int64())  # events strictly before the example
    wanted = list(getattr(task, "slices", ()) or ())
    mapped = [n for n in wanted if n in fr.events.column_names]
    columns.update({n: fr.events.column(n).take(rows) for n in mapped})
    columns.update(_source_columns(fr, [n for n in wanted if n not in mapped], test.column("event_id")))
    return columns


def write_diagnostics(out_dir: Path, fr: Any, results: Sequence[ModelResult], drift_threshold: float = 0.2
                      ) -> dict[str, Any]:
    """Write scores.parquet, the slice and drift tables and plots; return what the report shows.

    Args:
        out_dir: the fine-tune run folder.
        fr: the FinetuneRun (events, examples, frozen states, incumbent features).
        results: every ModelResult of the run (those on all labels are kept).
        drift_threshold: PSI above which a feature is flagged as drifting.
    Returns:
        {"scores": path, "slices": {task: DataFrame}, "kinds": {(task, column): DataFrame}, "drift": {task:
        DataFrame}, "plots": [paths]}. A slice column set only on positives (the synthetic world's
        `fraud_pattern`) is reported per kind: that kind's positives against all negatives.
    """
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables, out = [], {"slices": {}, "drift": {}, "plots": []}
    for task in fr.tasks:
        mine = [r for r in results if r.task == task.name and r.label_fraction == 1.0]
        if not mine:
            continue
        test = fr.examples[task.name]["test"]
        keys = example_keys(fr.events, test, [e for e in task.entities if f"{e}_id" in fr.events.column_names])
        extra = _slice_columns(fr, task, test)
        table = scores_table(mine, keys, extra={"task": pa.array([task.name] * test.num_rows), **extra})
        models = [r.label for r in mine]
        labels = table.column("label").to_numpy()
        wanted = [c for c in extra if c not in (AMOUNT, HISTORY)]
        annotations = [c for c in wanted if _annotates_positives(extra[c], labels)]
        metrics = slices_from_scores(table, models, [c for c in wanted if c not in annotations],
                                     amount=AMOUNT if AMOUNT in extra else None,
                                     history=HISTORY if HISTORY in extra else None)
        for column in annotations:
            out.setdefault("kinds", {})[(task.name, column)] = positive_kinds(table, models, column)
        out["slices"][task.name] = metrics
        out["plots"].append(plot_slice_pr_auc(plots_dir / f"{task.name}_slices.png", metrics,
                                              title=f"{task.name}: PR-AUC per slice"))
        drift = _drift(fr, task, drift_threshold)
        out["drift"][task.name] = drift
        out["plots"].append(plot_drift(plots_dir / f"{task.name}_drift.png", drift, threshold=drift_threshold))
        tables.append(table)
    if tables:
        out["scores"] = write_scores_table(out_dir / "scores.parquet", stack_scores_tables(tables))
    return out


def _annotates_positives(values: Any, labels: np.ndarray) -> bool:
    """A column set only on positive examples (e.g. which planted pattern made a fraud): a slice of it holds one
    class, so it is evaluated as each kind's positives against all negatives instead."""
    present = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), bool)
    return bool(present.any()) and not (present & (labels == 0)).any()


def positive_kinds(table: pa.Table, models: Sequence[str], column: str, fpr: float = 0.01) -> pd.DataFrame:
    """Per value of a positives-only column: positives, and each model's PR-AUC and recall at `fpr` FPR on that
    value's positives against every negative example (how well each model catches each kind of fraud)."""
    labels = table.column("label").to_numpy()
    kinds = np.asarray(table.column(column).to_pylist(), dtype=object)
    rows = []
    for kind in sorted({k for k in kinds if k is not None}):
        keep = (labels == 0) | (kinds == kind)
        for model in models:
            scores = table.column(f"score_{model}").to_numpy()[keep]
            rows.append({"kind": kind, "model": model, "positives": int((kinds == kind).sum()),
                         "pr_auc": pr_auc(labels[keep], scores), "recall_at_fpr": recall_at_fpr(labels[keep], scores, fpr)})
    return pd.DataFrame(rows)


def _drift(fr: Any, task: TaskSpec, threshold: float) -> pd.DataFrame:
    """PSI of the incumbent's features between the task's train and test examples."""
    features = fr.velocity_features(task)
    splits = fr.examples[task.name]
    train = pd.DataFrame(features.values[splits["train"].column("row").to_numpy()], columns=features.names)
    test = pd.DataFrame(features.values[splits["test"].column("row").to_numpy()], columns=features.names)
    for name in features.categorical:  # category codes are categories, not magnitudes
        train[name], test[name] = train[name].astype("Int64").astype(str), test[name].astype("Int64").astype(str)
    return population_stability(train, test, threshold=threshold)


def diagnostics_markdown(found: dict[str, Any], top: int = 8) -> list[str]:
    """The report's slices and drift sections."""
    lines: list[str] = []
    for task, metrics in found.get("slices", {}).items():
        lines += ["", f"## {task}: PR-AUC per slice", "", f"![{task} slices](plots/{task}_slices.png)", ""]
        wide = metrics.pivot_table(index=["slice", "value"], columns="model", values="pr_auc", sort=False)
        counts = metrics.groupby(["slice", "value"], sort=False)[["n", "positives"]].first()
        lines.append("| slice | value | n | positives | " + " | ".join(wide.columns) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(wide.columns))
        for (name, value), row in wide.iterrows():
            n, pos = counts.loc[(name, value)]
            cells = " | ".join("-" if pd.isna(v) else f"{v:.3f}" for v in row)
            lines.append(f"| {name} | {value} | {int(n)} | {int(pos)} | {cells} |")
    for (task, column), kinds in found.get("kinds", {}).items():
        wide = kinds.pivot_table(index="kind", columns="model", values="pr_auc", sort=False)
        recall = kinds.pivot_table(index="kind", columns="model", values="recall_at_fpr", sort=False)
        positives = kinds.groupby("kind", sort=False)["positives"].first()
        lines += ["", f"## {task}: PR-AUC per `{column}` (its positives against all negatives; recall at 1% FPR "
                  "in brackets)", "", "| " + column + " | positives | " + " | ".join(wide.columns) + " |",
                  "|---|---|" + "---|" * len(wide.columns)]
        for kind, row in wide.iterrows():
            cells = " | ".join(f"{v:.3f} ({recall.loc[kind, m]:.2f})" for m, v in row.items())
            lines.append(f"| {kind} | {int(positives[kind])} | {cells} |")
    for task, drift in found.get("drift", {}).items():
        flagged = drift[drift["status"] == "drift"]
        lines += ["", f"## {task}: feature drift between the train and test examples (PSI)", "",
                  f"{len(flagged)} of {len(drift)} features drift (PSI > threshold): "
                  + (", ".join(f"`{f}` {p:.2f}" for f, p in zip(flagged["feature"], flagged["psi"])) or "none"),
                  "", f"![{task} drift](plots/{task}_drift.png)"]
        lines += ["", "| feature | PSI | status |", "|---|---|---|"]
        lines += [f"| {f} | {p:.3f} | {s} |" for f, p, s in
                  zip(drift["feature"][:top], drift["psi"][:top], drift["status"][:top])]
    return lines
