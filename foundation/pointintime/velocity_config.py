"""What the velocity baseline computes (the `velocity` block of conf/task/<task>.yaml) and what it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.evaluation.splits import to_timedelta


@dataclass(frozen=True)
class VelocityConfig:
    """Which velocity features to compute (the `velocity` block of conf/task/<task>.yaml).

    Every family is skipped, not an error, when the table lacks what it reads (an entity, the amount, the
    event type, a label column), so one block serves any schema.

    Attributes:
        windows: look-back windows of the per-entity features; the longest is the "own history" window of
            the amount-vs-mean and z-score features.
        entities: entity types with per-window count, amount sum/mean/max, distinct counterparties, the time
            since the previous attempt and the attempt's amount against the entity's history.
        amount_field: numeric field summed in the windows (None: counts only).
        event_type_field: categorical field telling attempts, charges, declines and disputes apart; when the
            table lacks it every event is an attempt and a charge, and decline/dispute features are skipped.
        attempt_values: event types counted by the windows (charge attempts).
        charge_values: event types in the denominator of the dispute rate.
        decline_values: event types counted as declines.
        decline_windows: windows of the decline counts.
        decline_entities: entities with decline counts.
        dispute_values: event types that are disputes (they land days after the disputed charge).
        dispute_entities: entities with a dispute rate over all history.
        dispute_ref_field: field of a dispute naming the disputed event; attributes a dispute that lacks the
            entity id to the disputed charge's entity, and dates the disputed charge for the risk features.
        country_fields: two fields whose difference is the cross-border flag.
        raw_fields: the event's own fields used as features; None = every non-outcome categorical or
            numeric field of the schema (labels and the fields above excluded).
        max_categories: categorical raw fields keep their most frequent values (others -> missing).
        id_features: entity types whose id is itself a categorical feature (`issuer_id`: issuers apply
            their own decline rules); only for low-cardinality entities, capped by max_categories.
        pairs: (entity, counterparty) pairs, the entity one of `entities`: distinct counterparties per
            entity and window in both directions, and how often this entity paid this counterparty before
            (0 = first time).
        risk_entities: those of `entities` with label-delayed risk: the share of their attempts in
            (t - delay - d, t - delay] whose fraud label is known by t. With `entities` empty only the raw
            fields remain (and declines/disputes where their lists ask), which `raw_field_features` relies on.
        risk_windows: the windows d of the risk features.
        risk_labels: label columns whose value 1 marks a known fraud once the delay has passed.
        risk_delay: how long a label takes to land; None = the schema's `splits.label_delay`.
        night_hours: [start, end) hours of the `is_night` flag (wraps past midnight when start > end).
    """

    windows: tuple[str, ...] = ("1h", "1d", "7d", "30d")
    entities: tuple[str, ...] = ("customer", "merchant", "issuer")
    amount_field: str | None = "amount"
    event_type_field: str | None = "event_type"
    attempt_values: tuple[str, ...] = ("charge", "decline")
    charge_values: tuple[str, ...] = ("charge",)
    decline_values: tuple[str, ...] = ("decline",)
    decline_windows: tuple[str, ...] = ("1h", "1d")
    decline_entities: tuple[str, ...] = ("customer",)
    dispute_values: tuple[str, ...] = ("dispute",)
    dispute_entities: tuple[str, ...] = ("merchant",)
    dispute_ref_field: str | None = "disputed_event_id"
    country_fields: tuple[str, ...] = ("merchant_country", "card_country")
    raw_fields: tuple[str, ...] | None = None
    max_categories: int = 256
    id_features: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = (("customer", "merchant"),)
    risk_entities: tuple[str, ...] = ("customer", "merchant")
    risk_windows: tuple[str, ...] = ("1d", "7d", "30d")
    risk_labels: tuple[str, ...] = ("is_fraud",)
    risk_delay: str | None = None
    night_hours: tuple[int, int] = (0, 6)

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> VelocityConfig:
        """Build from the task config's `velocity` mapping (unknown keys are an error)."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"velocity config: unknown keys {unknown} (known: {sorted(known)})")
        values = {}
        for key, value in cfg.items():
            if key == "pairs":
                value = _pairs(value)
            elif key == "night_hours":
                value = _night_hours(value)
            elif isinstance(value, Sequence) and not isinstance(value, str):
                value = tuple(str(v) for v in value)
            values[key] = value
        config = cls(**values)
        for window in (*config.windows, *config.decline_windows, *config.risk_windows):
            to_timedelta(window, "velocity window")
        if config.risk_delay is not None:
            to_timedelta(config.risk_delay, "velocity.risk_delay")
        if len(config.country_fields) not in (0, 2):
            raise ValueError(f"velocity.country_fields needs two fields, got {config.country_fields}")
        return config


def _pairs(value: object) -> tuple[tuple[str, str], ...]:
    """`pairs: [[customer, merchant], ...]` as a tuple of (entity, counterparty)."""
    if value is None:
        return ()
    out = []
    for pair in value:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"velocity.pairs: each pair is two different entity types, got {pair!r}")
        out.append((str(pair[0]), str(pair[1])))
    return tuple(out)


def _night_hours(value: object) -> tuple[int, int]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"velocity.night_hours: expected [start, end) hours, got {value!r}")
    start, end = (int(v) for v in value)
    if not (0 <= start <= 23 and 0 <= end <= 24):
        raise ValueError(f"velocity.night_hours: hours must lie in 0..24, got {value!r}")
    return start, end


@dataclass
class VelocityFeatures:
    """A feature matrix with one row per event of the table it was computed on.

    Attributes:
        event_id: (N,) event ids, in the table's row order.
        values: (N, D) float32; NaN = missing (no history, unknown category).
        names: D feature names.
        categorical: names of the columns holding category codes (LightGBM categorical features).
        categories: raw field -> vocabulary (code i = categories[field][i]).
    """

    event_id: np.ndarray
    values: np.ndarray
    names: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def categorical_indices(self) -> list[int]:
        """Column indices of the categorical features."""
        return [self.names.index(name) for name in self.categorical]

    def rows(self, event_ids: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
        """Feature rows of the given events (e.g. a task's examples), in their order.

        Args:
            event_ids: (M,) event ids present in the table the features were computed on.

        Returns:
            (M, D) float32.
        """
        wanted = pc.cast(pa.chunked_array([event_ids]) if not isinstance(event_ids, pa.ChunkedArray)
                         else event_ids, pa.string())
        index = pc.index_in(wanted, value_set=pa.array(self.event_id, pa.string()))
        if index.null_count:
            missing = pc.filter(wanted, pc.is_null(index)).slice(0, 3).to_pylist()
            raise KeyError(f"{index.null_count} event ids have no feature row, e.g. {missing}")
        return self.values[index.to_numpy()]
