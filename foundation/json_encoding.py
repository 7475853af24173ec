"""The `default=` hook of `json.dumps` for the JSON files the framework writes (metrics.json, head.json):
numpy scalars and arrays and paths become plain JSON values; anything else is an error naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def json_default(document: str) -> Callable[[Any], Any]:
    """The `default=` hook for writing `document` with `json.dumps`.

    Args:
        document: the file being written (named in the error).
    Returns:
        hook(value): numpy scalar -> Python number, numpy array -> nested list, Path -> str.
    Raises (from the hook):
        TypeError: "<document>: cannot serialise <type name>" for any other type.
    """

    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{document}: cannot serialise {type(value).__name__}")

    return default
