"""What a task head reads, declared by the head itself (head.json `feature_layout`).

A head's feature row is `[task features of the pretrained model | extra block]`:
- the task features `[h_1(t), ..., h_k(t), event_vector(e), has_history_1..k, surprise...]` of `entities`
  (`foundation.pointintime.FeatureLayout`), absent for heads on hand-crafted features only;
- an extra block: the attempt's raw fields (computable from the attempt alone, so servable online) or the
  velocity features (windows over entity histories the live state does not keep: batch only).

The scorer asks `HeadInputs` what to build instead of parsing layout names; `from_dict` reads every layout
head.json has held (`kind`: section8, section8+raw, section8+velocity, velocity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.pointintime import FeatureLayout

KINDS = ("section8", "section8+raw", "section8+velocity", "velocity")


@dataclass(frozen=True)
class HeadInputs:
    """The columns a head was trained on, in order.

    Attributes:
        entities: task entity types whose states come first (empty without embeddings).
        hidden_size: H of those states (None without embeddings).
        surprise: names of the event surprise columns after the has-history flags.
        embeddings: whether the row starts with the task features of the pretrained model.
        raw: the raw-field block appended (`RawFieldFeatures.layout()`: names, categories), or None.
        velocity_names: the velocity feature columns appended, or None.
        velocity: the task's `velocity` settings the extra block was computed with, or None.
    """

    entities: tuple[str, ...] = ()
    hidden_size: int | None = None
    surprise: tuple[str, ...] = ()
    embeddings: bool = True
    raw: Mapping[str, Any] | None = None
    velocity_names: tuple[str, ...] | None = None
    velocity: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, layout: FeatureLayout, raw: Mapping[str, Any] | None = None,
           velocity_names: list[str] | None = None, velocity: Mapping[str, Any] | None = None) -> HeadInputs:
        """The task features of `layout` followed by an optional raw-field or velocity block."""
        return cls(tuple(layout.entities), int(layout.hidden_size), tuple(layout.surprise), True,
                   None if raw is None else dict(raw), None if velocity_names is None else tuple(velocity_names),
                   None if velocity is None else dict(velocity))

    @property
    def servable(self) -> bool:
        """Whether the live service can build this row (no velocity windows, states of the pretrained model)."""
        return self.embeddings and self.velocity_names is None

    @property
    def kind(self) -> str:
        """The layout name head.json has always carried (read by older code)."""
        if not self.embeddings:
            return "velocity"
        return "section8+raw" if self.raw is not None else ("section8+velocity" if self.velocity_names is not None
                                                             else "section8")

    def to_dict(self) -> dict[str, Any]:
        """head.json `feature_layout`."""
        out: dict[str, Any] = {}
        if self.embeddings:
            out = FeatureLayout(self.entities, int(self.hidden_size or 0), self.surprise).to_dict()
        out["kind"] = self.kind
        if self.raw is not None:
            out["raw"] = dict(self.raw)
        if self.velocity_names is not None:
            out["velocity_names"] = list(self.velocity_names)
        if self.velocity is not None:
            out["velocity"] = dict(self.velocity)
        return out

    @classmethod
    def from_dict(cls, layout: Mapping[str, Any] | None, entity_types: Any = None) -> HeadInputs | None:
        """Read head.json `feature_layout` (None when the head saved none).

        Raises:
            ValueError: a layout kind no head has written (the message lists the known ones).
        """
        if not layout:
            return None
        kind = layout.get("kind", "section8")
        if kind not in KINDS:
            raise ValueError(f"feature_layout: unknown kind {kind!r}; known: {list(KINDS)}")
        velocity = layout.get("velocity")
        if kind == "velocity":
            return cls((), None, (), False, None, tuple(layout.get("velocity_names") or layout.get("names") or ()),
                       velocity)
        entities = tuple(layout.get("entities") or entity_types or ())
        hidden = layout.get("hidden_size")
        raw = dict(layout.get("raw") or {}) if kind == "section8+raw" else None
        names = tuple(layout.get("velocity_names") or ()) if kind == "section8+velocity" else None
        return cls(entities, None if hidden is None else int(hidden), tuple(layout.get("surprise") or ()), True,
                   raw, names, velocity)
