"""Head (one base type, one save/load) and HeadInputs (what a head declares it reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from foundation.heads import GBDTHead, Head, HeadInputs, load_head
from foundation.pointintime import FeatureLayout


class MeanHead(Head):
    """A head defined outside foundation/heads: the mean of the columns, squashed."""

    head_type = "mean_test"
    file_format = "npy"
    weight_files = ("scale.npy",)

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale, self.width = float(scale), None

    @property
    def n_features(self) -> int:
        return int(self.width)

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> MeanHead:
        self.width, self.threshold = X.shape[1], 0.5
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-self.scale * np.asarray(X).mean(axis=1)))

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        np.save(directory / "scale.npy", np.array([self.scale, self.width]))
        return {}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> MeanHead:
        scale, width = np.load(directory / "scale.npy")
        head = cls(scale)
        head.width = int(width)
        return head


def test_a_new_head_saves_and_loads_through_the_base(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3))
    head = MeanHead(2.0).fit(X, None, X, None)
    head.inputs = HeadInputs.of(FeatureLayout(("customer",), 1))
    head.save(tmp_path / "mean", task="fraud")
    meta = json.loads((tmp_path / "mean" / "head.json").read_text())
    assert meta["class"] == f"{__name__}.MeanHead" and meta["feature_layout"]["kind"] == "section8"
    loaded = load_head(tmp_path / "mean")
    assert type(loaded) is MeanHead and loaded.metadata == {"task": "fraud", "feature_layout": meta["feature_layout"]}
    assert loaded.inputs == head.inputs and loaded.threshold == 0.5
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))


def test_folders_written_before_the_class_was_recorded_still_load(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 3)), rng.integers(0, 2, 300)
    head = GBDTHead({"num_threads": 1, "min_data_in_leaf": 5}, num_boost_round=5).fit(X, y, X, y)
    head.save(tmp_path, feature_layout={"kind": "section8+velocity", "entities": ["customer"], "hidden_size": 1,
                                        "velocity_names": ["n_1h"]})
    meta = json.loads((tmp_path / "head.json").read_text())
    del meta["class"]
    (tmp_path / "head.json").write_text(json.dumps(meta))
    loaded = load_head(tmp_path)
    assert isinstance(loaded, GBDTHead) and not loaded.inputs.servable and loaded.inputs.velocity_names == ("n_1h",)
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))


@pytest.mark.parametrize("layout, servable, raw", [
    ({"kind": "section8", "entities": ["customer", "merchant"], "hidden_size": 4, "surprise": ["s"]}, True, None),
    ({"kind": "section8+raw", "entities": ["customer"], "hidden_size": 4, "raw": {"names": ["mcc"]}}, True,
     {"names": ["mcc"]}),
    ({"kind": "section8+velocity", "entities": ["customer"], "hidden_size": 4, "velocity_names": []}, False, None),
    ({"kind": "velocity", "names": ["n_1h"]}, False, None),
])
def test_inputs_read_every_layout_heads_have_written(layout, servable, raw):
    inputs = HeadInputs.from_dict(layout)
    assert inputs.servable is servable and inputs.raw == raw and inputs.kind == layout["kind"]
    assert HeadInputs.from_dict(inputs.to_dict()) == inputs
    if inputs.embeddings:
        n = len(inputs.entities) * 5 + 4 + len(inputs.surprise)
        assert inputs.to_dict()["n_features"] == n


def test_an_unknown_layout_or_head_class_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'section9'"):
        HeadInputs.from_dict({"kind": "section9"})
    (tmp_path / "head.json").write_text(json.dumps({"head": "probe", "class": "foundation.heads.Nope"}))
    with pytest.raises(ValueError, match="head class 'foundation.heads.Nope' cannot be imported"):
        load_head(tmp_path)
