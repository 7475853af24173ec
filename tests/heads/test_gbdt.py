"""The LightGBM head: fit with early stopping, validation threshold, save/load round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from foundation.heads.gbdt import GBDTHead, best_f1_threshold


def _f1_at_every_threshold(y: np.ndarray, s: np.ndarray) -> dict[float, float]:
    """Brute force: F1 of flagging scores >= t, for every distinct score t."""
    thresholds = np.unique(s)
    flagged = s[None, :] >= thresholds[:, None]  # (T, N)
    tp = (flagged & (y[None, :] == 1)).sum(axis=1)
    return dict(zip(thresholds, 2 * tp / (flagged.sum(axis=1) + y.sum())))


FAST = {"num_threads": 2, "min_data_in_leaf": 10, "num_leaves": 7, "learning_rate": 0.2}


def _data(n: int, seed: int, rate: float = 0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 3] = rng.integers(0, 5, n)  # a categorical code; category 4 is risky
    logit = 2.0 * X[:, 0] - X[:, 1] + 2.0 * (X[:, 3] == 4) + np.log(rate / (1 - rate))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X[rng.random(n) < 0.05, 2] = np.nan  # missing values are fine
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X_train, y_train = _data(2000, 0)
    X_val, y_val = _data(600, 1)
    head = GBDTHead(FAST, num_boost_round=300, early_stopping_rounds=20).fit(
        X_train, y_train, X_val, y_val, feature_names=["a", "b", "c", "kind"], categorical_features=["kind"])
    return head, (X_val, y_val)


def test_fit_learns_stops_early_and_picks_the_validation_threshold(fitted):
    head, (X_val, y_val) = fitted
    X_test, y_test = _data(1000, 2)
    assert roc_auc_score(y_test, head.predict_proba(X_test)) > 0.8
    assert 1 <= head.info["best_iteration"] < 300
    n_pos = head.info["n_train_positive"]
    assert head.info["scale_pos_weight"] == pytest.approx((head.info["n_train"] - n_pos) / n_pos)
    # the stored threshold is the F1-best one on validation
    val_scores = head.predict_proba(X_val)
    best = max(_f1_at_every_threshold(y_val, val_scores).values())
    assert f1_score(y_val, head.predict(X_val)) == pytest.approx(best)
    assert head.info["validation_f1_at_threshold"] == pytest.approx(best)


def test_save_load_round_trip(fitted, tmp_path):
    head, _ = fitted
    X_test, _ = _data(300, 3)
    head.save(tmp_path / "fraud" / "gbdt", task="fraud", entity_types=["customer", "merchant"],
              feature_layout={"kind": "velocity"})
    meta = json.loads((tmp_path / "fraud" / "gbdt" / "head.json").read_text())
    assert (meta["head"], meta["task"], meta["threshold"]) == ("gbdt", "fraud", head.threshold)
    assert meta["feature_names"] == ["a", "b", "c", "kind"] and meta["categorical_features"] == ["kind"]
    loaded = GBDTHead.load(tmp_path / "fraud" / "gbdt")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), head.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), head.predict(X_test))
    assert loaded.metadata["entity_types"] == ["customer", "merchant"]


def test_bad_inputs_raise(fitted, tmp_path):
    head, (X_val, y_val) = fitted
    with pytest.raises(ValueError, match="expected 4 feature columns, got 3"):
        head.predict_proba(X_val[:, :3])
    with pytest.raises(ValueError, match="single class"):
        GBDTHead(FAST).fit(X_val, np.zeros(len(y_val)), X_val, y_val)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        GBDTHead(FAST).fit(X_val, y_val * 2, X_val, y_val)
    with pytest.raises(ValueError, match="categorical features \\['kinds'\\]"):
        GBDTHead(FAST).fit(X_val, y_val, X_val, y_val, ["a", "b", "c", "kind"], ["kinds"])
    with pytest.raises(FileNotFoundError, match="model.txt"):
        GBDTHead.load(tmp_path)
    with pytest.raises(RuntimeError, match="not fitted"):
        GBDTHead().predict_proba(X_val)
    with pytest.raises(ValueError, match="unknown keys"):
        GBDTHead.from_config({"param": {}})


def test_best_f1_threshold_against_brute_force():
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.2).astype(int)
    s = np.round(rng.random(300) + 0.5 * y, 2)
    threshold, f1 = best_f1_threshold(y, s)
    brute = _f1_at_every_threshold(y, s)
    assert brute[np.unique(s)[5]] == pytest.approx(f1_score(y, s >= np.unique(s)[5]))
    assert f1 == pytest.approx(max(brute.values()))
    assert brute[threshold] == pytest.approx(f1)
