"""Extra feature blocks a frozen-feature head appends to (or uses instead of) the task features.

A block is named by `_target_` in conf/head/<name>.yaml (`extra:`); it computes its columns for every event
of the run (`values` (N_events, F), `names`, `categorical`) and declares what the head then reads.
"""

from __future__ import annotations

from typing import Any

from foundation.evaluation.splits import TaskSpec
from foundation.heads.inputs import HeadInputs
from foundation.pointintime import FeatureLayout, raw_field_features


class RawFields:
    """The attempt's own raw fields (categorical codes and numbers): known when the attempt arrives, so a head
    reading them is served online (`foundation.pointintime.RawFieldLayout`)."""

    def compute(self, fr: Any, task: TaskSpec) -> Any:
        return raw_field_features(fr.events, fr.schema, task.velocity)

    def inputs(self, layout: FeatureLayout | None, block: Any, task: TaskSpec) -> HeadInputs:
        return _inputs(layout, task, raw=block.layout())


class VelocityFeatures:
    """The task's hand-crafted velocity features (counts, amounts, decline and dispute rates over windows,
    plus the raw fields): what a fraud team's LightGBM reads today. Batch only: the live state keeps no
    velocity windows."""

    def compute(self, fr: Any, task: TaskSpec) -> Any:
        return fr.velocity_features(task)

    def inputs(self, layout: FeatureLayout | None, block: Any, task: TaskSpec) -> HeadInputs:
        return _inputs(layout, task, velocity_names=list(block.names))


def _inputs(layout: FeatureLayout | None, task: TaskSpec, **block: Any) -> HeadInputs:
    if layout is None:  # the block alone (the velocity baseline)
        return HeadInputs((), None, (), False, block.get("raw"), tuple(block.get("velocity_names") or ()) or None,
                          dict(task.velocity))
    return HeadInputs.of(layout, velocity=task.velocity, **block)
