"""load_head (docs/architecture.md section 8): every head type comes back with identical probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foundation.heads import FullHead, GBDTHead, MLPHead, ProbeHead, load_head
from foundation.model import FoundationModel, tiny
from tests.heads.test_probe import planted

FIELDS = [{"name": "time", "kind": "time", "num_bins": 10},
          {"name": "mcc", "kind": "categorical", "vocab_size": 12, "outcome": False},
          {"name": "event_type", "kind": "categorical", "vocab_size": 6, "outcome": True}]


@pytest.mark.parametrize("kind", ["probe", "mlp", "gbdt", "full"])
def test_round_trip_gives_identical_probabilities(kind, tmp_path):
    X, y = planted(1500, 0)
    Xv, yv = planted(500, 1)
    if kind == "probe":
        head = ProbeHead(max_epochs=3).fit(X, y, Xv, yv)
    elif kind == "mlp":
        head = MLPHead(hidden_sizes=[8], max_epochs=3).fit(X, y, Xv, yv)
    elif kind == "gbdt":
        head = GBDTHead({"num_threads": 1, "min_data_in_leaf": 10}, num_boost_round=20).fit(X, y, Xv, yv)
    else:  # an untrained full head on a tiny encoder: 2 entities of width 2 + event 2 + 2 flags = 8 features
        X, Xv = np.hstack([X, X[:, :2]]), np.hstack([Xv, Xv[:, :2]])
        encoder = FoundationModel(tiny(FIELDS, ["customer", "merchant"], hidden_size=2, num_heads=1))
        head = FullHead(encoder, FIELDS, ["customer", "merchant"], hidden_sizes=[4])
        head.choose_threshold(yv, head.predict_proba(Xv))
    head.save(tmp_path / kind, task="fraud", entity_types=["customer", "merchant"])
    loaded = load_head(tmp_path / kind)
    assert type(loaded) is type(head)
    assert loaded.n_features == X.shape[1] and loaded.threshold == head.threshold
    np.testing.assert_array_equal(loaded.predict_proba(Xv), head.predict_proba(Xv))


def test_unknown_or_missing_heads_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="head.json"):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({"head": "svm"}))
    with pytest.raises(ValueError, match="unknown head type 'svm'.*probe"):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({"head": "probe", "n_features": 3}))
    with pytest.raises(FileNotFoundError, match="head.safetensors"):
        load_head(tmp_path)
