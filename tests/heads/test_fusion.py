"""The fusion head reads categorical codes through embeddings and NaN as missing, and round-trips on disk."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from foundation.heads import FusionHead, load_head


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[2 embedding-like numbers, an amount with missing values, a 20-code category]; risky codes are 3 and 17
    (not ordered: a linear read of the code column cannot find them), large amounts add risk."""
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=(n, 2))
    amount = rng.lognormal(3, 1, n)
    code = rng.integers(0, 20, n).astype(float)
    logit = -2.5 + 3.0 * np.isin(code, [3, 17]) + 0.8 * (np.log(amount) > 4) + 0.5 * embedding[:, 0]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    amount[rng.random(n) < 0.2] = np.nan  # missing amounts
    code[rng.random(n) < 0.05] = np.nan   # unknown category
    return np.column_stack([embedding, amount, code]), y


def test_fusion_learns_a_categorical_signal_with_missing_values(tmp_path):
    (X, y), (Xv, yv), (Xt, yt) = rows(4000, 0), rows(1000, 1), rows(2000, 2)
    names = ["event_0", "event_1", "amount", "channel"]
    head = FusionHead(hidden_sizes=[32], embedding_dim=4, max_epochs=20, patience=4, lr=3e-3).fit(
        X, y, Xv, yv, feature_names=names, categorical_features=["channel"])
    scores = head.predict_proba(Xt)
    assert np.isfinite(scores).all() and head.n_features == 4
    assert roc_auc_score(yt, scores) > 0.74  # the true logit itself scores 0.786 on these rows
    risky = np.isin(Xt[:, 3], [3, 17])  # unordered codes: found through their embeddings
    assert scores[risky].mean() > scores[~risky].mean() + 0.2
    unseen = Xt[:5].copy()
    unseen[:, 3] = 99  # a code never seen in training embeds like an unknown one
    assert np.isfinite(head.predict_proba(unseen)).all()
    head.save(tmp_path / "fusion", task="fraud")
    loaded = load_head(tmp_path / "fusion")
    assert isinstance(loaded, FusionHead) and loaded.categorical == [3] and loaded.cardinalities == [20]
    np.testing.assert_array_equal(loaded.predict_proba(Xt), scores)


def test_fusion_names_a_categorical_column_it_cannot_find():
    X, y = rows(200, 0)
    with pytest.raises(ValueError, match="not among the feature names"):
        FusionHead(max_epochs=1).fit(X, y, X, y, feature_names=["a", "b", "c", "d"], categorical_features=["mcc"])
