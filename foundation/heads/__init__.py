"""Downstream task heads on the foundation model's point-in-time features (docs/architecture.md section 8).

| head | file | features | trained |
|---|---|---|---|
| `probe` | probe.py | frozen section-8 task features | logistic regression (torch) |
| `mlp` | mlp.py | frozen section-8 task features | MLP (torch) |
| `full` | full.py | the same features, encoder fine-tuned | encoder + MLP end to end |
| `gbdt` | gbdt.py | frozen features + the event's raw fields (or velocity features) | LightGBM |

`load_head(dir)` reads `<dir>/head.json` and returns the head, whose `predict_proba(features (N, D)) -> (N,)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foundation.heads.full import FullHead
from foundation.heads.gbdt import GBDTHead
from foundation.heads.mlp import MLPHead
from foundation.heads.probe import ProbeHead

HEAD_LOADERS: dict[str, Callable[[Path], Any]] = {
    ProbeHead.head_type: ProbeHead.load,
    MLPHead.head_type: MLPHead.load,
    FullHead.head_type: FullHead.load,
    "gbdt": GBDTHead.load,
}


def load_head(directory: str | Path) -> Any:
    """Load a saved task head (`<run>/heads/<task>/<name>/`).

    Args:
        directory: a folder holding head.json (+ head.safetensors, encoder/ or model.txt).
    Returns:
        ProbeHead, MLPHead, FullHead or GBDTHead, each with `predict_proba(features) -> (N,)`, `threshold`
        and `n_features`. A `full` head also carries `.encoder`, the fine-tuned FoundationModel its features
        must be computed with; the others read features of the pretrained model.
    Raises:
        FileNotFoundError: no head.json. ValueError: an unknown head type (the message lists the known ones).
    """
    directory = Path(directory)
    meta_path = directory / "head.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a head folder (expected <run>/heads/<task>/<head>/)")
    kind = json.loads(meta_path.read_text()).get("head")
    if kind not in HEAD_LOADERS:
        raise ValueError(f"{meta_path}: unknown head type {kind!r}; known: {sorted(HEAD_LOADERS)}")
    return HEAD_LOADERS[kind](directory)


__all__ = ["HEAD_LOADERS", "FullHead", "GBDTHead", "MLPHead", "ProbeHead", "load_head"]
