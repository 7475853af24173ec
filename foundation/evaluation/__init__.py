"""Evaluation: task examples under the out-of-time protocol, metrics with bootstrap intervals,
and the report (metrics.json, report.md, plots). See docs/guide/evaluation.md."""

from foundation.evaluation.metrics import (
    bootstrap_metrics,
    evaluate_scores,
    pr_auc,
    pr_curve,
    recall_at_fpr,
    roc_auc,
    roc_curve,
)
from foundation.evaluation.report import ModelResult, TraitEmbeddings, log_report_to_wandb, write_report
from foundation.evaluation.splits import (
    ExampleFilter,
    LeakageError,
    TaskSpec,
    check_no_leakage,
    select_examples,
    subsample_labels,
)

__all__ = [
    "ExampleFilter",
    "LeakageError",
    "ModelResult",
    "TaskSpec",
    "TraitEmbeddings",
    "bootstrap_metrics",
    "check_no_leakage",
    "evaluate_scores",
    "log_report_to_wandb",
    "pr_auc",
    "pr_curve",
    "recall_at_fpr",
    "roc_auc",
    "roc_curve",
    "select_examples",
    "subsample_labels",
    "write_report",
]
