"""Metrics: exact agreement with scikit-learn, edge cases, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from foundation.evaluation import metrics
from foundation.evaluation.metrics import (
    bootstrap_metrics,
    evaluate_scores,
    pr_auc,
    pr_curve,
    recall_at_fpr,
    roc_auc,
    roc_curve,
)


def _sample(seed: int, n: int = 500, rate: float = 0.1, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    y[:2] = [0, 1]
    s = rng.random(n) + 0.8 * y
    return y, (np.round(s, decimals) if decimals is not None else s)


@pytest.mark.parametrize(("seed", "n", "rate", "decimals"),
                         [(0, 500, 0.1, None), (1, 300, 0.5, 1), (2, 1000, 0.02, None), (3, 50, 0.9, 2)])
def test_point_estimates_equal_sklearn_exactly(seed, n, rate, decimals):
    y, s = _sample(seed, n, rate, decimals)
    assert roc_auc(y, s) == roc_auc_score(y, s)
    assert pr_auc(y, s) == average_precision_score(y, s)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    for target in (0.0, 0.01, 0.1, 0.5):
        assert recall_at_fpr(y, s, target) == tpr[fpr <= target].max()
    ours_fpr, ours_tpr, _ = roc_curve(y, s)
    np.testing.assert_array_equal(ours_fpr, fpr)
    np.testing.assert_array_equal(ours_tpr, tpr)
    precision, recall, thresholds = precision_recall_curve(y, s)
    ours_recall, ours_precision, ours_thresholds = pr_curve(y, s)  # by decreasing threshold, no (0, 1) end
    np.testing.assert_array_equal(ours_recall, recall[-2::-1])
    np.testing.assert_array_equal(ours_precision, precision[-2::-1])
    np.testing.assert_array_equal(ours_thresholds, thresholds[::-1])


def test_constant_scores_match_sklearn_and_bootstrap():
    # A head that learned nothing (e.g. one tree on 1% of labels) scores every example the same.
    y = np.array([0, 1, 0, 0, 1, 0, 0, 0])
    s = np.full(len(y), 0.3)
    assert roc_auc(y, s) == roc_auc_score(y, s) == 0.5
    assert pr_auc(y, s) == average_precision_score(y, s)
    assert recall_at_fpr(y, s, 0.01) == 0.0
    result = evaluate_scores(y, s, n_bootstrap=50, seed=0)
    assert result["roc_auc"]["value"] == 0.5


def test_recall_at_fpr_does_not_interpolate_across_ties():
    # 10 negatives; the score 0.5 ties one positive with two negatives
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    s = np.array([.9, .8, .7, .5, .5, .5, .4, .3, .2, .2, .1, .1, .05, .01])
    assert recall_at_fpr(y, s, fpr=0.1) == 0.5  # flagging >= 0.7: 2 of 4 positives, FPR 1/10
    assert recall_at_fpr(y, s, fpr=0.2) == 0.5  # >= 0.5 would be FPR 3/10: not allowed, no partial tie
    assert recall_at_fpr(y, s, fpr=0.3) == 0.75
    assert recall_at_fpr(y, s, fpr=0.0) == 0.5
    assert recall_at_fpr(y, s, fpr=1.0) == 1.0


def test_curves_are_monotone_and_end_at_full_recall():
    y, s = _sample(4)
    recall, precision, thresholds = pr_curve(y, s)
    assert np.all(np.diff(recall) >= 0) and recall[-1] == 1.0
    assert precision[-1] == pytest.approx(y.mean())
    assert np.all(np.diff(thresholds) < 0)


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "only class 0"),
        ([1, 1], [0.1, 0.2], "only class 1"),
        ([], [], "no examples"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN"),
        ([0.2, 0.7, 0.9], [0, 1, 1], "did you swap labels and scores"),
        ([0, 1], [0.1, 0.2, 0.3], "differ in length"),
    ],
)
def test_bad_inputs_raise_clear_errors(y, s, message):
    with pytest.raises(ValueError, match=message):
        evaluate_scores(np.array(y), np.array(s, dtype=float), n_bootstrap=10)


def test_cells_reproduce_the_point_estimates():
    # one resample drawing every example exactly once must give the point estimates
    for seed, decimals in ((5, None), (6, 1)):
        y, s = _sample(seed, 400, 0.3, decimals)
        cells = metrics._Cells.build(y.astype(np.int8), s)
        counts = cells.counts(cells.cell[y == 1][None, :], cells.cell[y == 0][None, :])
        values = metrics._cell_metrics(*counts, 0.05)
        assert values["roc_auc"][0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert values["pr_auc"][0] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert values["recall_at_fpr"][0] == pytest.approx(recall_at_fpr(y, s, 0.05), abs=1e-12)


def test_cell_statistic_equals_sklearn_on_every_resample():
    # the hand-written statistic against scikit-learn on drawn resamples with repeats and cross-class ties
    y, s = _sample(9, 300, 0.1, decimals=2)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(0)
    pos_idx, neg_idx = rng.choice(pos, (20, len(pos))), rng.choice(neg, (20, len(neg)))
    cells = metrics._Cells.build(y.astype(np.int8), s)
    values = metrics._cell_metrics(*cells.counts(cells.cell[pos_idx], cells.cell[neg_idx]), 0.05)
    for b in range(20):
        idx = np.r_[pos_idx[b], neg_idx[b]]
        assert values["roc_auc"][b] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
        assert values["pr_auc"][b] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)
        assert values["recall_at_fpr"][b] == pytest.approx(recall_at_fpr(y[idx], s[idx], 0.05), abs=1e-12)


def test_bootstrap_matches_a_naive_stratified_bootstrap():
    y, s = _sample(7, 400, 0.15)
    ours = bootstrap_metrics(y, s, n_resamples=1000, seed=0)
    rng = np.random.default_rng(123)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    naive = {"roc_auc": [], "pr_auc": []}
    for _ in range(200):  # the slow reference: one sklearn call per resample
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        naive["roc_auc"].append(roc_auc_score(y[idx], s[idx]))
        naive["pr_auc"].append(average_precision_score(y[idx], s[idx]))
    for name, values in naive.items():
        assert np.std(ours[name]) == pytest.approx(np.std(values), rel=0.2)
        assert np.mean(ours[name]) == pytest.approx(np.mean(values), abs=0.01)


def test_evaluate_scores_is_seeded_and_brackets_the_estimate():
    y, s = _sample(8, 600, 0.1)
    result = evaluate_scores(y, s, n_bootstrap=200, seed=1)
    assert set(result) == {"roc_auc", "pr_auc", "recall_at_1pct_fpr", "n", "n_positive"}
    assert result == evaluate_scores(y, s, n_bootstrap=200, seed=1)
    assert result != evaluate_scores(y, s, n_bootstrap=200, seed=2)
    for key in ("roc_auc", "pr_auc", "recall_at_1pct_fpr"):
        metric = result[key]
        assert 0.0 <= metric["ci_low"] <= metric["value"] <= metric["ci_high"] <= 1.0
        assert metric["ci_low"] < metric["ci_high"]
    assert result["roc_auc"]["value"] == roc_auc_score(y, s)
    assert (result["n"], result["n_positive"]) == (600, int(y.sum()))
    fixed = evaluate_scores(y, s, n_bootstrap=0, fpr=0.05)
    assert fixed["recall_at_5pct_fpr"]["ci_low"] == fixed["recall_at_5pct_fpr"]["value"]


def test_a_class_of_one_example_is_kept_in_every_resample():
    # scipy resamples samples of two or more; a lone positive must still be in every resample, once
    y = np.r_[1, np.zeros(99, dtype=int)]
    s = np.r_[0.5, np.linspace(0.0, 1.0, 99)]
    samples = bootstrap_metrics(y, s, n_resamples=200, seed=0)
    assert samples["roc_auc"].min() >= 0.0 and samples["roc_auc"].std() > 0
    assert np.all(np.isin(samples["pr_auc"], 1.0 / np.arange(1, 101)))  # one positive: AP = 1 / its rank
    both_single = evaluate_scores(np.array([0, 1]), np.array([0.2, 0.9]), n_bootstrap=10)
    assert both_single["roc_auc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_paired_delta_matches_a_naive_paired_bootstrap():
    y, s = _sample(4, n=300, rate=0.2)
    baseline = np.random.default_rng(5).random(len(y)) + 0.3 * y
    result = metrics.paired_pr_auc_delta(y, s, baseline, n_resamples=400, seed=0)
    assert result["delta"] == pytest.approx(average_precision_score(y, s) - average_precision_score(y, baseline))
    # the same resamples drawn example by example, each scored by scikit-learn
    rng = np.random.default_rng(1)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    naive = []
    for _ in range(400):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        naive.append(average_precision_score(y[idx], s[idx]) - average_precision_score(y[idx], baseline[idx]))
    low, high = np.quantile(naive, [0.025, 0.975])
    assert result["ci_low"] == pytest.approx(low, abs=0.03)
    assert result["ci_high"] == pytest.approx(high, abs=0.03)
    assert result["ci_low"] > 0 and result["share_not_better"] < 0.025  # s separates far better


def test_paired_delta_of_a_model_with_itself_is_zero():
    y, s = _sample(6)
    result = metrics.paired_pr_auc_delta(y, s, s.copy(), n_resamples=100, seed=0)
    assert result["delta"] == result["ci_low"] == result["ci_high"] == 0.0
    assert result["share_not_better"] == 1.0
