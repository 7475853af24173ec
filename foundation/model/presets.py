"""Named size presets (torchtune-style builders) that Hydra YAML points at.

    model:
      _target_: foundation.model.presets.small
      _partial_: true          # the training code adds fields= and entity_types= from the tokenizer
      dropout: 0.1             # any FoundationConfig field overrides the preset

Each builder returns a `FoundationConfig`; the model is then `FoundationModel(config)` or
`FoundationForPretraining(config)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from foundation.model.configuration import FoundationConfig

_SIZES: dict[str, dict[str, Any]] = {
    # CPU tests and smoke runs.
    "tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_position": 64},
    # One CPU machine / a laptop GPU.
    "small": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512, "max_position": 256},
    "base": {"hidden_size": 256, "num_layers": 6, "num_heads": 8, "intermediate_size": 1024, "max_position": 256},
    # GPU.
    "large": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072, "max_position": 512},
}


def _plain(value: Any) -> Any:
    """Hydra hands over DictConfig/ListConfig; the strict config and config.json want dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value


def _build(preset: str, fields: Sequence[Mapping], entity_types: Sequence[str], overrides: dict) -> FoundationConfig:
    known = {field.name for field in dataclasses.fields(FoundationConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        own = sorted(name for name in known if name in FoundationConfig.__annotations__)
        raise ValueError(f"unknown FoundationConfig field(s) {unknown} for preset '{preset}'; fields: {own}")
    settings = {**_SIZES[preset], **{key: _plain(value) for key, value in overrides.items()}}
    return FoundationConfig(fields=_plain(fields), entity_types=_plain(entity_types), **settings)


def tiny(fields: Sequence[Mapping], entity_types: Sequence[str], **overrides: Any) -> FoundationConfig:
    """H=32, 2 layers, 2 heads, windows of 64 events: tests and smoke runs."""
    return _build("tiny", fields, entity_types, overrides)


def small(fields: Sequence[Mapping], entity_types: Sequence[str], **overrides: Any) -> FoundationConfig:
    """H=128, 4 layers, 4 heads, feed-forward 512, windows of 256 events: CPU-trainable.

    Args:
        fields: `EventTokenizer.field_specs()`.
        entity_types: `EventTokenizer.entity_types`.
        **overrides: any `FoundationConfig` field (e.g. encoder_type="gru", objectives={...}).
    Returns:
        `FoundationConfig`.
    """
    return _build("small", fields, entity_types, overrides)


def base(fields: Sequence[Mapping], entity_types: Sequence[str], **overrides: Any) -> FoundationConfig:
    """H=256, 6 layers, 8 heads, feed-forward 1024, windows of 256 events."""
    return _build("base", fields, entity_types, overrides)


def large(fields: Sequence[Mapping], entity_types: Sequence[str], **overrides: Any) -> FoundationConfig:
    """H=768, 12 layers, 12 heads, feed-forward 3072, windows of 512 events: GPU."""
    return _build("large", fields, entity_types, overrides)


PRESETS: dict[str, Callable[..., FoundationConfig]] = {"tiny": tiny, "small": small, "base": base, "large": large}


def build_config(
    preset: str, fields: Sequence[Mapping], entity_types: Sequence[str], **overrides: Any
) -> FoundationConfig:
    """The config of a named preset.

    Args:
        preset: one of `PRESETS` ("tiny", "small", "base", "large").
        fields, entity_types, overrides: as for the preset builders.
    Raises:
        ValueError: unknown preset (the message lists the valid ones) or unknown override field.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {list(PRESETS)}")
    return PRESETS[preset](fields, entity_types, **overrides)
