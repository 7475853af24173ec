"""`Head`: the one base type of task heads, with their one save/load.

A head maps features (N, D) to positive-class probabilities (N,), carries the decision threshold chosen on
validation and declares what it reads (`inputs`, a `HeadInputs`). On disk a head is a folder with
`head.json` (written here, once for every head type) and the weight files of its type:

    head.json       {"head": <type>, "class": <import path>, "format", "threshold", "n_features",
                     <the type's own keys>, "training": info, "feature_layout": inputs, <caller metadata>}
    <weights>       head.safetensors, model.txt, encoder/ ... (`weight_files`)

A new head is a subclass in one file (setting `head_type`, `weight_files`, `_write_weights`, `_read`) and a
conf/head/<name>.yaml naming it with `_target_`; `load_head` finds it from head.json (`class`, or the
`head` type of folders written before the class was recorded).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from foundation.heads.inputs import HeadInputs
from foundation.json_encoding import json_default


def check_xy(X: np.ndarray, y: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (N, D) and optional 0/1 labels (N,) holding both classes; a clear error naming `name`."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name}: features must be 2-D (N, D), got shape {X.shape}")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ValueError(f"{name}: labels must have shape ({len(X)},), got {y.shape}")
    values = np.unique(y)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"{name}: labels must be 0/1, got values {values[:5]}")
    if len(values) < 2:
        raise ValueError(f"{name}: labels hold a single class ({values}); a binary head needs both")
    return X, y.astype(np.float64)


def check_width(X: np.ndarray, n_features: int) -> np.ndarray:
    """X as float32 (N, n_features), or a clear error with the expected and the given shape."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"expected features of shape (N, {n_features}), got {X.shape}")
    return X


def check_train_validation(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`check_xy` of the train and validation sets, which must also have the same number of features D.

    Args:
        X_train: (N, D); y_train: (N,) 0/1. X_val: (M, D); y_val: (M,) 0/1.
    Returns:
        (X_train, y_train, X_val, y_val), labels as float64.
    """
    X_train, y_train = check_xy(X_train, y_train, "train")
    X_val, y_val = check_xy(X_val, y_val, "validation")
    if X_train.shape[1] != X_val.shape[1]:
        raise ValueError(f"train has {X_train.shape[1]} features, validation {X_val.shape[1]}")
    return X_train, y_train, X_val, y_val


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The score threshold maximising F1 (flag scores >= threshold), and that F1.

    Args:
        labels: (N,) 0/1.
        scores: (N,).
    Returns:
        (threshold, f1).
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores, sorted_labels = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # last row of each tied score
    tps = np.cumsum(sorted_labels)[ends]
    flagged = ends + 1.0
    f1 = 2 * tps / (flagged + sorted_labels.sum())
    best = int(np.argmax(f1))
    return float(sorted_scores[ends[best]]), float(f1[best])


class Head:
    """Base of every task head: probabilities, a validation threshold, declared inputs, one file format.

    Subclasses set `head_type` (head.json `head`), `file_format` and `weight_files`, and implement
    `n_features`, `predict_proba`, `_write_weights` (weights -> the type's own head.json keys) and `_read`
    (head.json + weights -> an unfitted-looking instance with its weights).

    Attributes:
        threshold: F1-best score threshold on validation (None before fitting).
        info: training record (head.json `training`).
        metadata: what save(**metadata) stored besides the head's own keys (task, entity types, ...).
        inputs: the columns the head reads (None when it was saved without a feature layout).
    """

    head_type: ClassVar[str] = ""
    file_format: ClassVar[str] = ""
    weight_files: ClassVar[tuple[str, ...]] = ()
    own_keys: ClassVar[tuple[str, ...]] = ()  # head.json keys of the type (not metadata)
    registry: ClassVar[dict[str, type[Head]]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("head_type"):
            Head.registry[cls.head_type] = cls

    def __init__(self) -> None:
        self.threshold: float | None = None
        self.info: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.inputs: HeadInputs | None = None

    @classmethod
    def for_task(cls, task: Any, **settings: Any) -> Head:
        """Build for a task (conf/head/<name>.yaml `_target_`); heads with task-level defaults override it."""
        return cls(**settings)

    @property
    def n_features(self) -> int:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probabilities (N,) of features X (N, D)."""
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) int 0/1 decisions at the validation-chosen threshold."""
        return (self.predict_proba(X) >= self.threshold).astype(np.int64)

    def result_extra(self) -> dict[str, Any]:
        """What metrics.json records of this head's training next to its test metrics."""
        return {}

    # ------------------------------------------------------------ files

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        """Write the weight files; return the type's own head.json keys."""
        raise NotImplementedError

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], **options: Any) -> Head:
        """A head with the saved weights (threshold, info, metadata and inputs are set by `load`)."""
        raise NotImplementedError

    def save(self, directory: str | Path, **metadata: Any) -> Path:
        """Write the weights and head.json.

        Args:
            directory: the head's folder, e.g. <run_dir>/heads/<task>/<name>.
            **metadata: merged into head.json (task, entity_types, metrics, checkpoint, ...; a
                `feature_layout` dict replaces the one of `inputs`); JSON-serialisable.
        Returns:
            The directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        own = self._write_weights(directory)
        head = {"head": self.head_type, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "format": self.file_format, "threshold": self.threshold, "n_features": self.n_features, **own,
                "training": self.info}
        if self.inputs is not None:
            head["feature_layout"] = self.inputs.to_dict()
        head.update(metadata)
        (directory / "head.json").write_text(json.dumps(head, indent=2, default=json_default("head.json")))
        return directory

    @classmethod
    def load(cls, directory: str | Path, **options: Any) -> Head:
        """Load a head written by save(); predictions equal the saved head's.

        Raises:
            FileNotFoundError: a weight file or head.json is missing (named).
            ValueError: head.json holds another head type.
        """
        directory = Path(directory)
        for name in (*cls.weight_files, "head.json"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{cls.head_type} head: {directory / name} is missing")
        meta = json.loads((directory / "head.json").read_text())
        if meta.get("head") != cls.head_type:
            raise ValueError(f"{directory}/head.json is a {meta.get('head')!r} head, not {cls.head_type!r}")
        model = cls._read(directory, meta, **options)
        model.threshold = meta.get("threshold")
        model.info = meta.get("training", {})
        base = ("head", "class", "format", "threshold", "n_features", "training")
        model.metadata = {k: v for k, v in meta.items() if k not in (*base, *cls.own_keys)}
        model.inputs = HeadInputs.from_dict(meta.get("feature_layout"), meta.get("entity_types"))
        return model


def head_class(meta: dict[str, Any], where: Path) -> type[Head]:
    """The Head subclass of a head.json: its recorded `class`, else its `head` type (older folders)."""
    path = meta.get("class")
    if path:
        module, _, name = str(path).rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"{where}: head class {path!r} cannot be imported ({err})") from None
        if not (isinstance(found, type) and issubclass(found, Head)):
            raise ValueError(f"{where}: {path!r} is not a foundation.heads.Head")
        return found
    kind = meta.get("head")
    if kind not in Head.registry:
        raise ValueError(f"{where}: unknown head type {kind!r}; known: {sorted(Head.registry)}")
    return Head.registry[kind]
