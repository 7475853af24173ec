"""The embeddings + incumbent blend: rank average, weight chosen on validation only, members from the run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from foundation.evaluation.metrics import pr_auc
from foundation.finetuning.blend import Blend, best_weight, rank_scores
from foundation.finetuning.run import Predictions


def test_rank_scores_ignore_calibration():
    np.testing.assert_allclose(rank_scores(np.array([0.9, 0.1, 0.5])), [1.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(rank_scores(np.array([10.0, -3.0, 2.0])), rank_scores(np.array([0.9, 0.1, 0.5])))


def test_best_weight_is_the_validation_pr_auc_argmax():
    labels = np.array([0, 0, 0, 1, 1, 0, 0, 1])
    good = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.4, 0.2, 0.7])
    bad = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.6, 0.8, 0.3])
    assert best_weight(labels, good, bad, [0.0, 0.5, 1.0]) == 1.0
    assert best_weight(labels, bad, good, [0.0, 0.5, 1.0]) == 0.0
    assert best_weight(labels, good, good, [0.3, 0.5]) == 0.3, "ties go to the smaller weight"


def _run(validation_first, validation_second, test_first, test_second, y_val, y_test):
    table = lambda y: pa.table({"row": np.arange(len(y)), "label": np.asarray(y, dtype=float),  # noqa: E731
                                "event_id": [str(i) for i in range(len(y))]})
    return SimpleNamespace(
        examples={"fraud": {"validation": table(y_val), "test": table(y_test)}},
        predictions={"fraud": {"a": Predictions(validation_first, test_first, 10),
                               "b": Predictions(validation_second, test_second, 10)}})


def test_the_blend_uses_validation_to_pick_and_never_the_test_labels(monkeypatch):
    import foundation.finetuning.blend as blend

    captured = {}
    monkeypatch.setattr(blend.ModelResult, "from_examples", classmethod(
        lambda cls, test, task, name, scores, fraction, n_train, extra: captured.update(
            scores=scores, extra=extra, n_train=n_train) or "result"))
    y_val = np.array([0, 0, 1, 1, 0, 0])
    y_test = np.array([1, 1, 0, 0, 0, 0])   # test would prefer the member validation rejects
    first_val = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.1])   # perfect on validation
    second_val = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.4])  # wrong on validation
    first_test, second_test = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.4]), np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.4])
    fr = _run(first_val, second_val, first_test, second_test, y_val, y_test)
    task = SimpleNamespace(name="fraud")
    assert Blend(members=["a", "b"], weights=[0.0, 1.0]).train("ab", fr, task, None) == ["result"]
    assert captured["extra"] == {"members": ["a", "b"], "weight": 1.0}
    np.testing.assert_allclose(captured["scores"], rank_scores(first_test))
    assert pr_auc(y_test, captured["scores"]) < pr_auc(y_test, second_test)


def test_a_blend_names_a_member_the_run_did_not_train():
    fr = SimpleNamespace(predictions={"fraud": {"a": None}}, examples={})
    with pytest.raises(ValueError, match=r"member\(s\) \['c'\] were not trained"):
        Blend(members=["a", "c"]).train("ac", fr, SimpleNamespace(name="fraud"), None)
    with pytest.raises(ValueError, match="two members"):
        Blend(members=["a"])
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        Blend(members=["a", "b"], weights=[1.5])
