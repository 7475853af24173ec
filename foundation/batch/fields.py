"""Field specs: what the model knows about each encoded field, and which batch keys carry it.

`EventTokenizer.field_specs()` returns plain dicts (one per encoded field); they are stored as
such in `FoundationConfig.fields` so config.json stays readable. `FieldSpec` is the parsed, validated view
that the embeddings and the objectives share, so the mapping "field kind -> batch keys" lives once, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

FIELD_KINDS = ("categorical", "numeric", "text", "time")

# Calendar features of the batch contract: hour 1..24, dow 1..7, 0 = padding.
HOUR_VOCAB_SIZE = 25
DOW_VOCAB_SIZE = 8

# The batch keys every time spec reads.
TIME_KEYS = ("time_gap_bin", "time_gap", "hour", "dow")

# Which size entries each kind must carry.
_REQUIRED_SIZES = {
    "categorical": ("vocab_size",),
    "numeric": ("num_bins",),
    "text": ("vocab_size", "max_tokens"),
    "time": ("num_bins",),
}


@dataclass(frozen=True)
class FieldSpec:
    """One encoded field.

    Args:
        name: field name ("mcc", "amount", "descriptor"; "time" for the time features).
        kind: one of `FIELD_KINDS`.
        vocab_size: categorical/text vocabulary size including the special ids (0 pad, 1 OOV).
        num_bins: numeric/time number of bins including the special ids (0 pad, 1 null).
        max_tokens: text tokens per event (K).
    """

    name: str
    kind: str
    vocab_size: int | None = None
    num_bins: int | None = None
    max_tokens: int | None = None

    @classmethod
    def from_dict(cls, spec: Mapping) -> FieldSpec:
        """Parse and validate one spec dict; extra keys (e.g. `outcome`) are allowed and ignored here."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"field spec must be a dict, got {type(spec).__name__}: {spec!r}")
        name, kind = spec.get("name"), spec.get("kind")
        if not isinstance(name, str) or not name:
            raise ValueError(f"field spec {dict(spec)!r} has no 'name'")
        if kind not in FIELD_KINDS:
            raise ValueError(f"field '{name}': kind {kind!r} is not one of {FIELD_KINDS}")
        sizes = {}
        for key in _REQUIRED_SIZES[kind]:
            value = spec.get(key)
            # bool is an int subclass; a True vocab size is a bug upstream, not a size of 1.
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(
                    f"field '{name}' ({kind}): '{key}' must be an int >= 2 (sizes include the special ids), "
                    f"got {value!r}"
                )
            sizes[key] = value
        return cls(name=name, kind=kind, **sizes)

    @property
    def num_classes(self) -> int:
        """Size of the id space a prediction head for this field scores."""
        return self.vocab_size if self.kind in ("categorical", "text") else self.num_bins

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The batch keys this field is read from."""
        if self.kind == "categorical":
            return (self.name,)
        if self.kind == "numeric":
            return (f"{self.name}_bin", f"{self.name}_value")
        if self.kind == "text":
            return (f"{self.name}_tokens",)
        return TIME_KEYS

    @property
    def target_key(self) -> str:
        """The batch key of the ids a head predicts: category, numeric bin, text tokens, or time-gap bin."""
        return {"categorical": self.name, "numeric": f"{self.name}_bin", "text": f"{self.name}_tokens",
                "time": "time_gap_bin"}[self.kind]

    def present_in(self, batch: Mapping[str, torch.Tensor]) -> bool:
        """True when the batch carries this field; a field half present is an error.

        Raises:
            KeyError: some but not all of `batch_keys` are in the batch.
        """
        found = [key in batch for key in self.batch_keys]
        if all(found):
            return True
        if any(found):
            missing = [key for key, ok in zip(self.batch_keys, found) if not ok]
            raise KeyError(f"field '{self.name}' ({self.kind}) is partly in the batch: missing {missing}")
        return False


def parse_field_specs(specs: Iterable[Mapping]) -> list[FieldSpec]:
    """Validate a list of spec dicts: known kinds, sizes, unique names, at most one time spec.

    Args:
        specs: dicts as returned by `EventTokenizer.field_specs()`.
    Returns:
        list of `FieldSpec` in the given order.
    """
    parsed = [FieldSpec.from_dict(spec) for spec in specs]
    names = [spec.name for spec in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"field names must be unique; repeated: {duplicates}")
    n_time = sum(spec.kind == "time" for spec in parsed)
    if n_time > 1:
        raise ValueError(f"at most one field spec of kind 'time' is allowed, got {n_time}")
    return parsed
