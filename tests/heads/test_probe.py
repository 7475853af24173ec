"""The linear probe: learns a planted linear signal, stops early on validation PR-AUC, thresholds on
validation, and round-trips through its files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from foundation.heads.probe import ProbeHead


def planted(n: int, seed: int, rate: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Features with a linear logit on columns 0 and 1 (plus a constant column and noise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 5] = 1.0  # constant column: standardisation must not divide by zero
    logit = 3.0 * X[:, 0] - 2.0 * X[:, 1] + np.log(rate / (1 - rate))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = planted(3000, 0)
    Xv, yv = planted(1000, 1)
    return ProbeHead(max_epochs=15, patience=3, batch_size=256).fit(X, y, Xv, yv), (Xv, yv)


def test_beats_chance_and_thresholds_on_validation(fitted):
    head, (Xv, yv) = fitted
    Xt, yt = planted(2000, 2)
    assert roc_auc_score(yt, head.predict_proba(Xt)) > 0.9
    assert 1 <= head.info["best_epoch"] <= head.info["epochs"] <= 15
    assert head.info["pos_weight"] == pytest.approx((head.info["n_train"] - head.info["n_train_positive"])
                                                     / head.info["n_train_positive"])
    # the threshold is the F1-best one on validation
    scores = head.predict_proba(Xv)
    best = max(f1_score(yv, scores >= t) for t in np.unique(scores))
    assert f1_score(yv, head.predict(Xv)) == pytest.approx(best)


def test_save_load_gives_identical_probabilities(fitted, tmp_path):
    head, (Xv, _) = fitted
    head.save(tmp_path / "probe", task="fraud", entity_types=["customer", "merchant"])
    meta = json.loads((tmp_path / "probe" / "head.json").read_text())
    assert (meta["head"], meta["task"], meta["n_features"]) == ("probe", "fraud", 6)
    loaded = ProbeHead.load(tmp_path / "probe")
    np.testing.assert_array_equal(loaded.predict_proba(Xv), head.predict_proba(Xv))
    assert loaded.threshold == head.threshold and loaded.metadata["entity_types"] == ["customer", "merchant"]


def test_bad_inputs_are_clear_errors(fitted):
    head, (Xv, yv) = fitted
    with pytest.raises(ValueError, match="expected 6 feature columns, got 5"):
        head.predict_proba(Xv[:, :5])
    bad = Xv.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ProbeHead().fit(bad, yv, Xv, yv)
    with pytest.raises(ValueError, match="single class"):
        ProbeHead().fit(Xv, np.zeros_like(yv), Xv, yv)
    with pytest.raises(ValueError, match="bad settings"):
        ProbeHead.from_config({"learning_rate": 1.0})
