"""The MLP head learns a signal a linear probe cannot (an interaction), with the probe's training and files."""

from __future__ import annotations

import numpy as np
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
