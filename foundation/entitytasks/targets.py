"""Entity task targets from the event stream, and the (entity, as-of) examples of each split.

A target reads only the entity's events in (as_of, as_of + horizon] (a `shift` target also reads its baseline
(as_of - baseline, as_of], known at as_of); a label-rate target reads labels that, by the schedule, have landed
before the next split starts (`as_of + horizon + label_delay` inside the split's reach).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from foundation.data.schema import DataSchema
from foundation.entitytasks.embedding import DAY_MS
from foundation.entitytasks.spec import OPS, EntityTaskSpec, TargetSpec
from foundation.entitytasks.timeline import EntityTimeline, selection_mask
from foundation.evaluation.splits import schema_period

SPLITS = ("train", "validation", "test")
_NEXT = {"train": "validation", "validation": "test"}
SMOOTHING = (0.5, 1.0)  # shift rates: (n + 0.5) / (d + 1), so an empty or zero window has a finite log ratio


def label_values(events: pa.Table, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(N,) label values (NaN unknown -> 0) and (N,) whether each is known."""
    raw = events.column(label).to_numpy(zero_copy_only=False).astype(np.float64)
    known = ~np.isnan(raw)
    return np.where(known, raw, 0.0), known


def target_values(timeline: EntityTimeline, events: pa.Table, target: TargetSpec, codes: np.ndarray,
                  as_of: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The measured value of each (entity, as-of) query and whether it is defined.

    Args:
        timeline: the entity type's events.
        events: the canonical events table the timeline was built from.
        target: a target resolved on the schema (`TargetSpec.on`).
        codes: (Q,) entity codes (`timeline.codes_of`); as_of: (Q,) epoch ms.
        horizon: ms.
    Returns:
        (values (Q,) float64, defined (Q,) bool).
    """
    end = as_of + horizon
    numerator = timeline.event_values(selection_mask(events, target.events))
    denominator = timeline.event_values(selection_mask(events, target.denominator))
    if target.measure == "count":
        return timeline.window_sum(codes, as_of, end, numerator), np.ones(len(codes), bool)
    if target.measure == "label_rate":
        values, known = label_values(events, target.label)
        known_rows = timeline.event_values(known) & denominator
        n = timeline.window_sum(codes, as_of, end, timeline.event_values(values) * known_rows)
        d = timeline.window_sum(codes, as_of, end, known_rows)
        return n / np.maximum(d, 1), d >= target.min_denominator
    numerator = timeline.sums(numerator & denominator if target.measure == "shift" else numerator)
    denominator = timeline.sums(denominator)
    n, d = numerator.over(codes, as_of, end), denominator.over(codes, as_of, end)
    if target.measure == "rate":
        return n / np.maximum(d, 1), d >= target.min_denominator
    past_n = numerator.over(codes, as_of - target.baseline, as_of)
    past_d = denominator.over(codes, as_of - target.baseline, as_of)
    a, b = SMOOTHING
    value = np.log((n + a) / (d + b)) - np.log((past_n + a) / (past_d + b))
    return value, (d >= target.min_denominator) & (past_d >= target.min_denominator)


def target_labels(target: TargetSpec, values: np.ndarray) -> np.ndarray:
    """What a head learns: 0/1 (binary), the value (regression) or a class index (multiclass)."""
    if target.problem == "binary":
        op, threshold = target.positive
        return getattr(np, OPS[op])(values, threshold).astype(np.int64)
    if target.problem == "multiclass":
        return np.searchsorted(np.asarray(target.edges), values, side="right").astype(np.int64)
    return values.astype(np.float64)


class NoExamplesError(ValueError):
    """A split of an entity task has no example: its as-of dates leave no room for the horizon, or no entity is
    active with a defined target. The quickstart and multi-task runs report the task as skipped with this reason."""


def as_of_dates(schema: DataSchema, spec: EntityTaskSpec, target: TargetSpec, split: str) -> np.ndarray:
    """(D,) epoch-ms as-of dates of a split: every `spec.every` from its start, while the target window (plus the
    label delay for a label target) ends before the next split starts (the test split: before it ends)."""
    period = schema_period(schema, split)
    reach = schema_period(schema, _NEXT[split]).start if split in _NEXT else period.end
    delay = schema.splits.label_delay_ms if target.measure == "label_rate" else 0
    start, end, reach = (int(t.astype("datetime64[ms]").astype(np.int64)) for t in (period.start, period.end, reach))
    dates = np.arange(start, end, spec.every, dtype=np.int64)
    return dates[dates + spec.horizon + delay <= reach]


def build_examples(events: pa.Table, schema: DataSchema, spec: EntityTaskSpec, target: TargetSpec,
                   timeline: EntityTimeline, seed: int = 0) -> pa.Table:
    """The examples of every split: the active entities at each as-of date (a seeded subsample of at most
    `spec.max_entities`), with a defined target.

    Returns:
        pa.Table: entity_id (string), as_of (int64 epoch ms), split, value (float64), target (int64 or float64).
    """
    population = timeline.sums(timeline.event_values(selection_mask(events, spec.population.on(schema))))
    all_codes = np.arange(len(timeline.ids), dtype=np.int64)
    chosen_codes, chosen_dates, chosen_splits = [], [], []
    for split in SPLITS:
        for i, date in enumerate(as_of_dates(schema, spec, target, split)):
            codes = all_codes[population.over(all_codes, date - spec.active_within, date) > 0]
            if spec.max_entities is not None and len(codes) > spec.max_entities:
                rng = np.random.default_rng([seed, SPLITS.index(split), i])
                codes = np.sort(rng.choice(codes, spec.max_entities, replace=False))
            chosen_codes.append(codes)
            chosen_dates.append(np.full(len(codes), date, dtype=np.int64))
            chosen_splits += [split] * len(codes)
    codes, as_of = np.concatenate(chosen_codes or [[]]).astype(np.int64), np.concatenate(chosen_dates or [[]])
    values, defined = target_values(timeline, events, target, codes, as_of, spec.horizon)
    splits = np.asarray(chosen_splits, dtype=object)[defined]
    for split in SPLITS:
        _check_examples(schema, spec, target, split, splits)
    return pa.table({"entity_id": timeline.ids.take(pa.array(codes[defined])), "as_of": as_of[defined],
                     "split": pa.array(splits, pa.string()),
                     "value": values[defined], "target": target_labels(target, values[defined])})


def _check_examples(schema: DataSchema, spec: EntityTaskSpec, target: TargetSpec, split: str,
                    splits: np.ndarray) -> None:
    """Raise NoExamplesError naming why `split` has no example (no as-of date fits, or no defined target)."""
    if (splits == split).any():
        return
    period = schema_period(schema, split)
    reach = f"before the {_NEXT[split]} split starts" if split in _NEXT else "before the split ends"
    delay = " + the label delay" if target.measure == "label_rate" else ""
    if not len(as_of_dates(schema, spec, target, split)):
        span = " to ".join(np.datetime_as_string(np.datetime64(t), unit="D") for t in (period.start, period.end))
        why = (f"no as-of date of the {split} split ({span}) leaves the {spec.horizon / DAY_MS:g}-day "
               f"horizon{delay} {reach}")
    else:
        why = (f"no {spec.entity} active within {spec.active_within / DAY_MS:g} days of a {split} as-of date has a defined "
               f"target ({target.measure}, min_denominator {target.min_denominator})")
    raise NoExamplesError(f"entity task {spec.name}: {why}")
