"""Ranking metrics for binary scores, with stratified bootstrap confidence intervals.

Every metric is a function of the counts of positives and negatives at or above each distinct score
threshold, so one sort serves the point estimate and all bootstrap resamples. A stratified resample only
changes how many times each example is drawn; grouping the examples into cells (a threshold that holds
positives, or a run of negative-only thresholds) makes a resample a vector of multinomial draw counts per cell,
and its curves are cumulative sums of those counts: all resamples at once, no loop over them in Python.
The point estimates equal scikit-learn's (`roc_auc_score`, `average_precision_score`, `roc_curve`).

Argument order follows scikit-learn everywhere: labels first, scores second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC_NAMES = ("roc_auc", "pr_auc", "recall_at_fpr")
_CHUNK_CELLS = 4_000_000  # resamples x cells (or draws) per bootstrap chunk: ~32 MB per work array


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (labels as int8 0/1, scores as float64), both (N,)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"labels ({len(y)}) and scores ({len(s)}) differ in length")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf values")
    values = np.unique(y)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"labels must be 0/1, got values {values[:5]} (did you swap labels and scores?)")
    if len(values) < 2:
        only = "no examples" if len(values) == 0 else f"only class {int(values[0])}"
        raise ValueError(f"metrics need both classes in labels; got {only} (n={len(y)})")
    return y.astype(np.int8), s


@dataclass(frozen=True)
class _SortedScores:
    """Scores sorted descending and grouped into distinct thresholds (runs of tied scores).

    Attributes:
        thresholds: (K,) the distinct scores, descending.
        tps, fps: (K,) float64 positives / negatives scoring at or above each threshold.
    """

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray

    @classmethod
    def build(cls, y: np.ndarray, s: np.ndarray) -> _SortedScores:
        order = np.argsort(s, kind="mergesort")[::-1]
        sorted_scores = s[order]
        ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(s) - 1]
        tps = np.cumsum(y[order], dtype=np.float64)[ends]
        return cls(sorted_scores[ends], tps, ends + 1.0 - tps)

    def metrics(self, fpr_target: float) -> dict[str, float]:
        """Point estimates, computed in the same floating-point order as scikit-learn."""
        tps, fps = self.tps, self.fps
        # roc_auc_score drops collinear ROC points before the trapezoid; dropping them here too keeps the
        # floating-point sum identical (the area is the same either way)
        # (a constant score is one threshold: one ROC point besides the origin)
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True][:len(tps)]
        tpr = np.r_[0.0, tps[keep] / tps[-1]]
        fpr = np.r_[0.0, fps[keep] / fps[-1]]
        roc = float(np.trapezoid(tpr, fpr))
        predicted = tps + fps
        precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
        recall = tps / tps[-1]
        pr = float(-np.sum(np.diff(np.r_[recall[::-1], 0.0]) * precision[::-1]))
        all_fpr = np.r_[0.0, fps / fps[-1]]
        all_tpr = np.r_[0.0, recall]
        # interpolation-free: the best recall among thresholds whose FPR does not exceed the target
        at_fpr = float(all_tpr[all_fpr <= fpr_target].max())
        return {"roc_auc": roc, "pr_auc": pr, "recall_at_fpr": at_fpr}

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Example counts per bootstrap cell: thresholds holding positives, and the negative runs between.

        Thresholds without positives are merged into the run before the next positive threshold: every
        metric is a function of the counts at the thresholds that hold positives, so a resample only needs
        how many draws fall into each cell.

        Returns:
            pos (J,), neg_at (J,), neg_before (J + 1,): positives and negatives at each of the J thresholds
            holding positives, negatives in the run before each of them (the last entry: after the last).
        """
        pos = np.diff(np.r_[0.0, self.tps])
        neg = np.diff(np.r_[0.0, self.fps])
        holds = pos > 0
        run_id = np.cumsum(holds) - holds  # threshold k belongs to the run before positive threshold run_id
        neg_before = np.bincount(run_id[~holds], weights=neg[~holds], minlength=int(holds.sum()) + 1)
        return pos[holds], neg[holds], neg_before


def _cell_metrics(
    pos: np.ndarray, neg_at: np.ndarray, neg_before: np.ndarray, fpr_target: float
) -> dict[str, np.ndarray]:
    """Metrics of B weighted resamples from per-cell counts.

    Args:
        pos, neg_at: (B, J) draws of positives / negatives at each threshold holding positives.
        neg_before: (B, J + 1) draws of negatives in the run before each such threshold (last: after all).
        fpr_target: target FPR of recall_at_fpr.

    Returns:
        metric name -> (B,) values.
    """
    n_pos = pos.sum(axis=1)
    n_neg = neg_at.sum(axis=1) + neg_before.sum(axis=1)
    neg_step = neg_at + neg_before[:, :-1]  # negatives entering at each threshold holding positives
    tps = np.cumsum(pos, axis=1)  # (B, J) counts at each threshold holding positives
    fps = np.cumsum(neg_step, axis=1)
    # ROC area in counts: each negative sees the positives strictly above it plus half of those tied with it;
    # negatives after the last positive threshold see them all
    area = np.einsum("bj,bj->b", neg_step, tps - pos) + 0.5 * np.einsum("bj,bj->b", neg_at, pos)
    area += neg_before[:, -1] * n_pos
    roc_auc = area / (n_pos * n_neg)
    # tps + fps is 0 only where tps is 0, so clamping the denominator at 1 leaves precision 0 there
    pr_auc = np.einsum("bj,bj->b", pos, tps / np.maximum(tps + fps, 1.0)) / n_pos
    # fps is non-decreasing: the thresholds within the FPR budget are a prefix, the last has the best recall
    n_reachable = (fps <= (fpr_target * n_neg)[:, None]).sum(axis=1)
    best = np.take_along_axis(tps, np.maximum(n_reachable - 1, 0)[:, None], axis=1)[:, 0]
    recall = np.where(n_reachable > 0, best, 0.0) / n_pos
    return {name: np.clip(v, 0.0, 1.0) for name, v in
            (("roc_auc", roc_auc), ("pr_auc", pr_auc), ("recall_at_fpr", recall))}


def _draw_cells(rng: np.random.Generator, sizes: np.ndarray, n_resamples: int) -> np.ndarray:
    """Multinomial resample counts: draw sum(sizes) items with replacement, count the draws per cell.

    Args:
        sizes: (L,) items per cell (empty cells allowed).

    Returns:
        (n_resamples, L) float64 draw counts per cell.
    """
    out = np.zeros((n_resamples, len(sizes)))
    filled = np.flatnonzero(sizes)
    n = int(sizes.sum())
    if n == 0:
        return out
    # few cells: one binomial per cell and resample; many cells: draw the items and count them per cell
    if len(filled) * 30 < n:
        out[:, filled] = rng.multinomial(n, sizes[filled] / n, size=n_resamples)
        return out
    cell_of_item = np.repeat(np.arange(len(filled)), sizes[filled].astype(np.int64))
    items = cell_of_item[rng.integers(0, n, size=(n_resamples, n))]  # (B, n) cell of each draw
    flat = (np.arange(n_resamples)[:, None] * len(filled) + items).ravel()
    out[:, filled] = np.bincount(flat, minlength=n_resamples * len(filled)).reshape(n_resamples, -1)
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half). labels (N,) 0/1, scores (N,)."""
    return _SortedScores.build(*_check(labels, scores)).metrics(0.0)["roc_auc"]


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve). labels (N,) 0/1, scores (N,)."""
    return _SortedScores.build(*_check(labels, scores)).metrics(0.0)["pr_auc"]


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """The highest recall (TPR) at a score threshold whose false positive rate is <= fpr.

    No interpolation between thresholds: a group of tied scores is either all flagged or not at all.

    Args:
        labels: (N,) 0/1.
        scores: (N,) higher = more likely positive.
        fpr: the target false positive rate in [0, 1].
    """
    _check_fpr(fpr)
    return _SortedScores.build(*_check(labels, scores)).metrics(fpr)["recall_at_fpr"]


def _check_fpr(fpr: float) -> None:
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct threshold: (fpr, tpr, thresholds), each (K + 1,), from (0, 0) at +inf."""
    curve = _SortedScores.build(*_check(labels, scores))
    fpr = np.r_[0.0, curve.fps / curve.fps[-1]]
    tpr = np.r_[0.0, curve.tps / curve.tps[-1]]
    return fpr, tpr, np.r_[np.inf, curve.thresholds]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points at every distinct threshold, by decreasing threshold.

    Returns:
        (recall, precision, thresholds), each (K,).
    """
    curve = _SortedScores.build(*_check(labels, scores))
    return curve.tps / curve.tps[-1], curve.tps / (curve.tps + curve.fps), curve.thresholds


def metric_key(name: str, fpr: float) -> str:
    """The report key of a metric: recall_at_fpr at 0.01 becomes `recall_at_1pct_fpr`."""
    return f"recall_at_{fpr * 100:g}pct_fpr" if name == "recall_at_fpr" else name


def bootstrap_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    fpr: float = 0.01,
) -> dict[str, np.ndarray]:
    """Every metric on `n_resamples` stratified bootstrap resamples of the examples.

    Positives and negatives are resampled separately (with replacement, class counts fixed), so every
    resample has both classes. Vectorised: one sort, then multinomial draw counts per cell of tied-score
    thresholds (see _SortedScores.cells) for all resamples at once.

    Args:
        labels: (N,) 0/1.
        scores: (N,).
        n_resamples: number of resamples (> 0).
        seed: random seed; the same seed gives the same resamples.
        fpr: target FPR of recall_at_fpr.

    Returns:
        metric name (METRIC_NAMES) -> (n_resamples,) values.
    """
    _check_fpr(fpr)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    y, s = _check(labels, scores)
    pos, neg_at, neg_before = _SortedScores.build(y, s).cells()
    neg = np.r_[neg_at, neg_before]
    rng = np.random.default_rng(seed)
    # resamples in chunks so the (B, cells) work arrays stay ~_CHUNK_CELLS entries
    chunk = max(1, _CHUNK_CELLS // max(len(neg), len(y)))
    parts = []
    for first in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - first)
        pos_draws = _draw_cells(rng, pos, b)  # (b, J)
        neg_draws = _draw_cells(rng, neg, b)  # (b, 2J + 1)
        parts.append(_cell_metrics(pos_draws, neg_draws[:, : len(pos)], neg_draws[:, len(pos):], fpr))
    return {name: np.concatenate([part[name] for part in parts]) for name in METRIC_NAMES}


def _weighted_pr_auc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """PR-AUC (average precision) of one score under (B, N) example weights (bootstrap draw counts)."""
    order = np.argsort(s, kind="mergesort")[::-1]
    sorted_scores = s[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(s) - 1]
    w = weights[:, order]
    tps = np.cumsum(w * y[order], axis=1)[:, ends]
    fps = np.cumsum(w * (1 - y[order]), axis=1)[:, ends]
    gained = np.diff(np.c_[np.zeros(len(w)), tps], axis=1)
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) > 0)
    return (gained * precision).sum(axis=1) / tps[:, -1]


def paired_pr_auc_delta(
    labels: np.ndarray,
    scores: np.ndarray,
    baseline_scores: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """PR-AUC of `scores` minus that of `baseline_scores` on the same examples, with a paired bootstrap interval.

    Both models are scored on the same stratified resamples (positives and negatives drawn separately), so
    the interval is that of the difference, much narrower than comparing two separate intervals.

    Returns:
        {"delta", "ci_low", "ci_high", "share_not_better"}: share_not_better is the fraction of resamples where
        the model does not beat the baseline (a one-sided bootstrap p-value).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    y, s = _check(labels, scores)
    _, b = _check(labels, baseline_scores)
    point = pr_auc(y, s) - pr_auc(y, b)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    chunk = max(1, _CHUNK_CELLS // len(y))
    deltas = []
    for first in range(0, n_resamples, chunk):
        n = min(chunk, n_resamples - first)
        weights = np.zeros((n, len(y)))
        for members in groups:
            draws = rng.integers(0, len(members), size=(n, len(members)))
            flat = (np.arange(n)[:, None] * len(members) + draws).ravel()
            weights[:, members] = np.bincount(flat, minlength=n * len(members)).reshape(n, -1)
        yf = y.astype(np.float64)
        deltas.append(_weighted_pr_auc(yf, s, weights) - _weighted_pr_auc(yf, b, weights))
    samples = np.concatenate(deltas)
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(samples, [alpha, 1.0 - alpha]))
    return {"delta": float(point), "ci_low": low, "ci_high": high,
            "share_not_better": float((samples <= 0).mean())}


def evaluate_scores(
    y: np.ndarray,
    p: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
    fpr: float = 0.01,
    confidence: float = 0.95,
) -> dict[str, dict[str, float] | int]:
    """Point estimates and percentile bootstrap confidence intervals of ROC-AUC, PR-AUC, recall at FPR.

    Args:
        y: (N,) 0/1 labels.
        p: (N,) scores (probabilities or any monotone score).
        n_bootstrap: stratified resamples for the intervals (0 -> intervals equal the point estimate).
        seed: bootstrap seed.
        fpr: target FPR of the recall metric.
        confidence: coverage of the interval.

    Returns:
        {"roc_auc": {"value", "ci_low", "ci_high"}, "pr_auc": {...}, "recall_at_1pct_fpr": {...},
         "n": int, "n_positive": int}.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    _check_fpr(fpr)
    yy, ss = _check(y, p)
    point = _SortedScores.build(yy, ss).metrics(fpr)
    samples = bootstrap_metrics(yy, ss, n_bootstrap, seed, fpr) if n_bootstrap > 0 else None
    alpha = (1.0 - confidence) / 2.0
    result: dict[str, dict[str, float] | int] = {}
    for name in METRIC_NAMES:
        value = point[name]
        if samples is None:
            low = high = value
        else:
            low, high = (float(q) for q in np.quantile(samples[name], [alpha, 1.0 - alpha]))
        result[metric_key(name, fpr)] = {"value": value, "ci_low": low, "ci_high": high}
    result["n"] = int(len(yy))
    result["n_positive"] = int(yy.sum())
    return result
