"""Every entity head kind (probe, mlp, gbdt) on every problem: learns a planted signal, saves and loads."""

import numpy as np
import pytest

from foundation.entitytasks.heads import HEAD_KINDS, build_head
from foundation.entitytasks.metrics import point_metrics
from foundation.heads import load_head


def _problem(problem: str, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    signal = X[:, 0] + 0.5 * X[:, 1]
    if problem == "binary":
        y = (signal + rng.normal(scale=0.5, size=n) > 0.5).astype(np.int64)
    elif problem == "regression":
        y = 3.0 * signal + 10.0 + rng.normal(scale=0.5, size=n)
    else:
        y = np.digitize(signal + rng.normal(scale=0.3, size=n), [-0.5, 0.5]).astype(np.int64)
    return X[:400], y[:400], X[400:500], y[400:500], X[500:], y[500:]


@pytest.mark.parametrize("problem", ["binary", "regression", "multiclass"])
@pytest.mark.parametrize("kind", sorted(HEAD_KINDS))
def test_heads_learn_and_round_trip(kind, problem, tmp_path):
    X, y, Xv, yv, Xt, yt = _problem(problem)
    settings = {"num_boost_round": 200, "params": {"min_data_in_leaf": 10}} if kind == "gbdt" else {"max_epochs": 30}
    head = build_head(kind, problem, 3, settings)
    head.fit(X, y, Xv, yv)
    scores = head.predict_proba(Xt)
    assert scores.shape == ((len(Xt), 3) if problem == "multiclass" else (len(Xt),))
    metrics = point_metrics(problem, yt, scores)
    majority = np.bincount(yt).max() / len(yt) if problem == "multiclass" else 0
    chance = {"binary": ("roc_auc", 0.8), "regression": ("r2", 0.7), "multiclass": ("accuracy", majority + 0.1)}
    assert metrics[chance[problem][0]] > chance[problem][1], metrics
    head.save(tmp_path / "head", task="t", kind="entity", problem=problem)
    loaded = load_head(tmp_path / "head")
    assert type(loaded) is type(head) and loaded.metadata["problem"] == problem
    np.testing.assert_allclose(loaded.predict_proba(Xt), scores, rtol=1e-6, atol=1e-9)
