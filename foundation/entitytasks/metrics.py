"""Metrics of entity tasks with bootstrap confidence intervals and paired differences.

binary: ROC-AUC and PR-AUC (scikit-learn's definitions, `foundation.evaluation.metrics`); regression: RMSE, MAE,
R^2; multiclass: accuracy and macro-F1 of the argmax class, and the macro one-vs-rest ROC-AUC of the probabilities
(a model that always answers the dominant class ties on macro-F1 with every other such model; the AUC still
tells whether its probabilities rank). The bootstrap resamples entities, not examples: one
entity's examples at successive as-of dates are correlated, so a resample draws entities with replacement and
takes all their examples (a cluster bootstrap). A paired difference scores two models on the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from foundation.evaluation.metrics import pr_auc, roc_auc

PRIMARY = {"binary": "pr_auc", "regression": "r2", "multiclass": "macro_f1"}
LOWER_IS_BETTER = {"rmse", "mae"}


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - pred) ** 2)))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - pred)))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    y = np.asarray(y, float)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - pred) ** 2) / total) if total > 0 else float("nan")


def accuracy(y: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def macro_auc(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over the classes present in y of the one-vs-rest ROC-AUC of their probability: whether the scores
    rank, whatever the decision rule (scikit-learn's multi_class="ovr", average="macro" when all are present)."""
    present = [k for k in np.unique(y) if 0 < np.sum(y == k) < len(y)]
    return float(np.mean([roc_auc((y == k).astype(int), probabilities[:, k]) for k in present])) if present else \
        float("nan")


def macro_f1(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Unweighted mean over the classes present in y or predicted of each class's F1 (scikit-learn's macro)."""
    predicted = np.argmax(probabilities, axis=1)
    scores = []
    for k in np.union1d(np.unique(y), np.unique(predicted)):
        tp = np.sum((predicted == k) & (y == k))
        denominator = np.sum(predicted == k) + np.sum(y == k)
        scores.append(2.0 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


METRICS: dict[str, dict[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "binary": {"roc_auc": roc_auc, "pr_auc": pr_auc},
    "regression": {"rmse": rmse, "mae": mae, "r2": r2},
    "multiclass": {"accuracy": accuracy, "macro_f1": macro_f1, "macro_auc": macro_auc},
}


def point_metrics(problem: str, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Every metric of the problem on the test examples."""
    return {name: fn(y, scores) for name, fn in METRICS[problem].items()}


def _resamples(groups: np.ndarray, n: int, seed: int) -> Iterator[np.ndarray]:
    """n cluster-bootstrap resamples: the example indices of entities drawn with replacement (each drawn entity
    brings all its examples, as often as it was drawn). The same seed gives the same draws."""
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups, rows = int(inverse.max()) + 1 if len(inverse) else 0, np.arange(len(groups))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield np.repeat(rows, counts[inverse])


def _usable(problem: str, y: np.ndarray) -> bool:
    return problem != "binary" or 0 < int(np.sum(y)) < len(y)


def _interval(values: list[float], point: float, confidence: float) -> dict[str, float]:
    values = np.asarray([v for v in values if np.isfinite(v)])
    alpha = (1.0 - confidence) / 2
    low, high = (np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan))
    return {"value": float(point), "ci_low": float(low), "ci_high": float(high)}


def bootstrap_metrics(problem: str, y: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_bootstrap: int = 1000,
                      seed: int = 0, confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """metric -> {value, ci_low, ci_high}: the point estimate and its entity-clustered percentile interval."""
    values: dict[str, list[float]] = {name: [] for name in METRICS[problem]}
    for d in _resamples(groups, n_bootstrap, seed):
        if _usable(problem, y[d]):
            for name, fn in METRICS[problem].items():
                values[name].append(fn(y[d], scores[d]))
    usable = _usable(problem, y)
    return {name: _interval(values[name], fn(y, scores) if usable else float("nan"), confidence)
            for name, fn in METRICS[problem].items()}


def paired_difference(problem: str, y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, groups: np.ndarray,
                      n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """metric -> {value, ci_low, ci_high} of metric(a) - metric(b) on the same entity draws.

    `a` beats `b` beyond the interval when ci_low > 0 (ci_high < 0 for RMSE and MAE, where lower is better).
    """
    values: dict[str, list[float]] = {name: [] for name in METRICS[problem]}
    for d in _resamples(groups, n_bootstrap, seed):
        if _usable(problem, y[d]):
            for name, fn in METRICS[problem].items():
                values[name].append(fn(y[d], scores_a[d]) - fn(y[d], scores_b[d]))
    usable = _usable(problem, y)
    return {name: _interval(values[name], fn(y, scores_a) - fn(y, scores_b) if usable else float("nan"), confidence)
            for name, fn in METRICS[problem].items()}


def beats(metric: str, difference: dict[str, float]) -> bool:
    """Whether a paired difference (a - b) shows a better than b beyond its interval."""
    return difference["ci_high"] < 0 if metric in LOWER_IS_BETTER else difference["ci_low"] > 0
