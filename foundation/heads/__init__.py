"""Downstream task heads on the foundation model's point-in-time task features.

| head | file | features | trained |
|---|---|---|---|
| `probe` | probe.py | frozen task features | logistic regression (torch) |
| `mlp` | mlp.py | frozen task features | MLP (torch) |
| `full` | full.py | the same features, encoder fine-tuned | encoder + MLP end to end |
| `gbdt` | gbdt.py | frozen features + the event's raw fields (or velocity features) | LightGBM |
| `fusion` | fusion.py | frozen features + the event's raw fields (categorical ones embedded) | MLP (torch) |

Every head is a `Head` (base.py): `predict_proba(features (N, D)) -> (N,)`, a validation `threshold`, the
columns it reads (`inputs`, a `HeadInputs`) and one save/load. conf/head/<name>.yaml builds them with
`_target_`; `load_head(dir)` reads `<dir>/head.json` and returns the head.
"""

from __future__ import annotations

import json
from pathlib import Path

from foundation.heads.base import Head, head_class
from foundation.heads.full import FullHead
from foundation.heads.fusion import FusionHead
from foundation.heads.gbdt import GBDTHead
from foundation.heads.inputs import HeadInputs
from foundation.heads.mlp import MLPHead
from foundation.heads.probe import ProbeHead


def load_head(directory: str | Path) -> Head:
    """Load a saved task head (`<run>/heads/<task>/<name>/`).

    Args:
        directory: a folder holding head.json (+ head.safetensors, encoder/ or model.txt).
    Returns:
        The head (ProbeHead, MLPHead, FullHead, GBDTHead or any other Head subclass head.json names), with
        `predict_proba(features) -> (N,)`, `threshold`, `n_features` and `inputs`. A `full` head also carries
        `.encoder`, the fine-tuned FoundationModel its features must be computed with; the others read
        features of the pretrained model.
    Raises:
        FileNotFoundError: no head.json. ValueError: an unknown head type (the message lists the known ones).
    """
    directory = Path(directory)
    meta_path = directory / "head.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a head folder (expected <run>/heads/<task>/<head>/)")
    return head_class(json.loads(meta_path.read_text()), meta_path).load(directory)


__all__ = ["FullHead", "FusionHead", "GBDTHead", "Head", "HeadInputs", "MLPHead", "ProbeHead", "load_head"]
