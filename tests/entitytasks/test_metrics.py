"""Entity task metrics against scikit-learn; cluster-bootstrap intervals and paired differences."""

import numpy as np
import pytest
from sklearn import metrics as sk

from foundation.entitytasks.metrics import beats, bootstrap_metrics, paired_difference, point_metrics


def _data(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 80, n).astype(str)
    y_bin = (rng.random(n) < 0.3).astype(int)
    s_bin = y_bin * 0.5 + rng.random(n)
    y_reg = rng.normal(size=n)
    s_reg = y_reg + rng.normal(scale=0.7, size=n)
    y_cls = rng.integers(0, 3, n)
    p_cls = rng.dirichlet(np.ones(3), n) + np.eye(3)[y_cls] * 0.4
    return groups, (y_bin, s_bin), (y_reg, s_reg), (y_cls, p_cls / p_cls.sum(1, keepdims=True))


def test_point_metrics_equal_scikit_learn():
    _, (yb, sb), (yr, sr), (yc, pc) = _data()
    binary = point_metrics("binary", yb, sb)
    assert binary["roc_auc"] == pytest.approx(sk.roc_auc_score(yb, sb))
    assert binary["pr_auc"] == pytest.approx(sk.average_precision_score(yb, sb))
    regression = point_metrics("regression", yr, sr)
    assert regression["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(yr, sr)))
    assert regression["mae"] == pytest.approx(sk.mean_absolute_error(yr, sr))
    assert regression["r2"] == pytest.approx(sk.r2_score(yr, sr))
    multi = point_metrics("multiclass", yc, pc)
    assert multi["accuracy"] == pytest.approx(sk.accuracy_score(yc, pc.argmax(1)))
    assert multi["macro_f1"] == pytest.approx(sk.f1_score(yc, pc.argmax(1), average="macro"))
    assert multi["macro_auc"] == pytest.approx(sk.roc_auc_score(yc, pc, multi_class="ovr", average="macro"))
    # a class never predicted counts with F1 0, as scikit-learn's macro average does
    never = np.tile([0.9, 0.05, 0.05], (len(yc), 1))
    assert point_metrics("multiclass", yc, never)["macro_f1"] == pytest.approx(
        sk.f1_score(yc, never.argmax(1), average="macro", zero_division=0))


def test_bootstrap_intervals_and_paired_differences():
    groups, (yb, sb), (yr, sr), _ = _data()
    ci = bootstrap_metrics("binary", yb, sb, groups, n_bootstrap=200, seed=1)
    for m in ci.values():
        assert m["ci_low"] < m["value"] < m["ci_high"]
    assert bootstrap_metrics("binary", yb, sb, groups, 200, seed=1) == ci  # seeded
    # a model against itself: zero difference, zero width
    same = paired_difference("regression", yr, sr, sr, groups, n_bootstrap=100)
    assert all(m["value"] == m["ci_low"] == m["ci_high"] == 0 for m in same.values())
    # a clearly better model beats a noisy one beyond the interval (RMSE: lower is better)
    noisy = sr + np.random.default_rng(2).normal(scale=2.0, size=len(sr))
    diff = paired_difference("regression", yr, sr, noisy, groups, n_bootstrap=200)
    assert beats("rmse", diff["rmse"]) and beats("r2", diff["r2"]) and not beats("r2", same["r2"])


def test_the_bootstrap_resamples_entities_not_examples():
    # every example of an entity shares its label and score: a cluster bootstrap is as wide as one with one
    # example per entity, an example bootstrap would be narrower
    rng = np.random.default_rng(0)
    y1, s1 = rng.normal(size=50), rng.normal(size=50)
    groups = np.repeat(np.arange(50), 10)
    clustered = bootstrap_metrics("regression", np.repeat(y1, 10), np.repeat(s1, 10), groups, 300)["mae"]
    single = bootstrap_metrics("regression", y1, s1, np.arange(50), 300)["mae"]
    assert clustered["ci_high"] - clustered["ci_low"] == pytest.approx(single["ci_high"] - single["ci_low"], rel=0.25)
    examples = bootstrap_metrics("regression", np.repeat(y1, 10), np.repeat(s1, 10), np.arange(500), 300)["mae"]
    assert examples["ci_high"] - examples["ci_low"] < 0.6 * (clustered["ci_high"] - clustered["ci_low"])


def test_a_test_set_of_one_class_gives_missing_ranking_metrics_not_an_error():
    y, s = np.zeros(20, int), np.linspace(0, 1, 20)
    out = bootstrap_metrics("binary", y, s, np.arange(20), n_bootstrap=20)
    assert all(np.isnan(m["value"]) and np.isnan(m["ci_low"]) for m in out.values())
    assert np.isnan(paired_difference("binary", y, s, s[::-1], np.arange(20), n_bootstrap=20)["pr_auc"]["value"])
