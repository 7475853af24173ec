"""The MLP head learns a signal a linear probe cannot (an interaction), with the probe's training and files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from foundation.heads.mlp import MLPHead
from foundation.heads.probe import ProbeHead


def xor(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)
    y[rng.random(n) < 0.05] ^= 1  # label noise
    return X, y


def test_mlp_learns_an_interaction_the_probe_cannot(tmp_path):
    X, y = xor(3000, 0)
    Xv, yv = xor(800, 1)
    Xt, yt = xor(1500, 2)
    mlp = MLPHead(hidden_sizes=[32, 16], max_epochs=25, patience=5, lr=3e-3).fit(X, y, Xv, yv)
    probe = ProbeHead(max_epochs=10).fit(X, y, Xv, yv)
    assert roc_auc_score(yt, mlp.predict_proba(Xt)) > 0.9
    assert roc_auc_score(yt, probe.predict_proba(Xt)) < 0.65
    mlp.save(tmp_path / "mlp", task="authorization")
    loaded = MLPHead.load(tmp_path / "mlp")
    assert loaded.hidden_sizes == [32, 16]
    np.testing.assert_array_equal(loaded.predict_proba(Xt), mlp.predict_proba(Xt))


def test_an_ensemble_scores_the_mean_probability_of_members_trained_alone(tmp_path):
    X, y = xor(1500, 0)
    Xv, yv = xor(500, 1)
    Xt, _ = xor(400, 2)
    settings = {"hidden_sizes": [16], "max_epochs": 6, "patience": 2, "lr": 3e-3, "seed": 7}
    ensemble = MLPHead(members=3, **settings).fit(X, y, Xv, yv)
    alone = [MLPHead(**{**settings, "seed": 7 + i}).fit(X, y, Xv, yv).predict_proba(Xt) for i in range(3)]
    assert not np.allclose(alone[0], alone[1]), "members differ (their own seeds)"
    np.testing.assert_allclose(ensemble.predict_proba(Xt), np.mean(alone, axis=0), rtol=1e-5, atol=1e-6)
    assert len(ensemble.info["best_epoch"]) == 3
    ensemble.save(tmp_path / "mlp", task="fraud")
    loaded = MLPHead.load(tmp_path / "mlp")
    assert loaded.members == 3
    np.testing.assert_array_equal(loaded.predict_proba(Xt), ensemble.predict_proba(Xt))


def test_members_must_be_positive():
    with pytest.raises(ValueError, match="members must be >= 1"):
        MLPHead(members=0)
