"""Hand-crafted entity aggregates as of a date: the features of the incumbent LightGBM baseline.

Per window w (the task's `aggregates.windows`, default 7/30/90 days) over the entity's events in
(as_of - w, as_of]: event count, amount sum/mean/std, and for each rate selection (e.g. declines, disputes,
insufficient-funds declines) its count and its share of the events; per label (e.g. is_fraud) the rate among the
events whose label had landed by as_of (events up to as_of - label_delay); recency (days since the last event)
and tenure (days since the first). Nothing reads an event after as_of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from foundation.data.config_values import parse_duration
from foundation.data.schema import DataSchema
from foundation.entitytasks.spec import Selection
from foundation.entitytasks.targets import label_values
from foundation.entitytasks.timeline import EntityTimeline, selection_mask

DAY_MS = 86_400_000
DEFAULT_WINDOWS = ("7d", "30d", "90d")


@dataclass(frozen=True)
class AggregateConfig:
    """The `aggregates` block of an entity task.

    Attributes:
        windows: durations ("7d", ...).
        amount_field: numeric schema field summed per window (skipped when the schema lacks it).
        rates: name -> selection; count and share per window (selections whose field is missing are skipped).
        labels: schema labels whose delayed rate per window is a feature (missing labels are skipped).
    """

    windows: tuple[str, ...] = DEFAULT_WINDOWS
    amount_field: str | None = "amount"
    rates: tuple[tuple[str, Selection], ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> AggregateConfig:
        cfg = dict(cfg or {})
        rates = tuple((str(name), Selection.from_config(sel)) for name, sel in (cfg.get("rates") or {}).items())
        return cls(tuple(cfg.get("windows") or DEFAULT_WINDOWS), cfg.get("amount_field", "amount"), rates,
                   tuple(cfg.get("labels") or ()))


def entity_aggregates(events: pa.Table, schema: DataSchema, timeline: EntityTimeline, cfg: AggregateConfig,
                      entity_ids: pa.Array, as_of: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(Q, F) float32 aggregates of each (entity, as-of) query and their F names.

    Args:
        events: the canonical events table of `timeline`.
        schema: its data schema (which fields and labels exist; the label delay).
        cfg: what to compute.
        entity_ids: (Q,) ids; as_of: (Q,) epoch ms (events at exactly as_of count).
    """
    codes = timeline.codes_of(entity_ids)
    as_of = np.asarray(as_of, np.int64)
    count = timeline.sums(np.ones(timeline.n_events))
    amount = squares = None
    if cfg.amount_field and cfg.amount_field in schema.fields:
        raw = timeline.event_values(np.nan_to_num(events.column(cfg.amount_field).to_numpy(
            zero_copy_only=False).astype(np.float64)))
        amount, squares = timeline.sums(raw), timeline.sums(raw ** 2)
    rates = [(name, timeline.sums(timeline.event_values(selection_mask(events, sel.on(schema)))))
             for name, sel in cfg.rates if sel.on(schema) is not None]
    labels = []
    for label in (x for x in cfg.labels if x in schema.labels):
        values, known = label_values(events, label)
        labels.append((label, timeline.sums(timeline.event_values(values * known)),
                       timeline.sums(timeline.event_values(known))))
    delay = schema.splits.label_delay_ms
    columns, names = [], []

    def add(name: str, values: np.ndarray) -> None:
        columns.append(values)
        names.append(name)

    for window in cfg.windows:
        start = as_of - parse_duration(window, "aggregates.windows")
        n = count.over(codes, start, as_of)
        add(f"count_{window}", n)
        if amount is not None:
            total, second = amount.over(codes, start, as_of), squares.over(codes, start, as_of)
            mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
            add(f"amount_sum_{window}", total)
            add(f"amount_mean_{window}", mean)
            add(f"amount_std_{window}", np.sqrt(np.maximum(second / np.maximum(n, 1) - np.nan_to_num(mean) ** 2, 0)))
        for name, selected in rates:
            k = selected.over(codes, start, as_of)
            add(f"{name}_count_{window}", k)
            add(f"{name}_share_{window}", np.where(n > 0, k / np.maximum(n, 1), np.nan))
        for label, positive, known in labels:  # only labels that had landed by as_of
            d = known.over(codes, start - delay, as_of - delay)
            rate = positive.over(codes, start - delay, as_of - delay) / np.maximum(d, 1)
            add(f"{label}_rate_{window}", np.where(d > 0, rate, np.nan))
    first, last = timeline.first_last(codes, as_of)
    add("recency_days", np.where(last >= 0, (as_of - last) / DAY_MS, np.nan))
    add("tenure_days", np.where(first >= 0, (as_of - first) / DAY_MS, np.nan))
    return np.column_stack(columns).astype(np.float32), names
