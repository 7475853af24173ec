"""The json.dumps hook shared by metrics.json and head.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from foundation.json_encoding import json_default


def test_numpy_values_and_paths_become_json():
    document = {"auc": np.float32(0.5), "n": np.int64(3), "curve": np.arange(3), "dir": Path("/tmp/run")}
    assert json.loads(json.dumps(document, default=json_default("metrics.json"))) == {
        "auc": 0.5, "n": 3, "curve": [0, 1, 2], "dir": "/tmp/run"}


def test_other_types_are_an_error_naming_the_file():
    with pytest.raises(TypeError, match=r"^head\.json: cannot serialise set$"):
        json.dumps({"x": {1}}, default=json_default("head.json"))
