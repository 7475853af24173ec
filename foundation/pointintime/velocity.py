"""Hand-crafted point-in-time velocity features: the GBDT baseline a fraud team already runs.

For every event e at time t, per entity (customer, merchant, ...): how many charge attempts the entity made
and their amount in the last 1h/1d/7d/30d, the time since its previous attempt, the amount relative to its
recent mean; declines of the customer in the last 1h/1d; the merchant's dispute rate known so far (disputes
that landed before t over charges before t); plus e's own raw fields (amount, channel, mcc, countries, a
cross-border flag, hour, day of week). Outcome fields of e (event_type, decline_code) are never features
of e itself.

"Before e" means strictly before it in (event_time, event_id) order, as everywhere in the framework
(`foundation.pointintime.states`). All of it is vectorised: sort the events by (entity, time) once, take cumulative
sums of indicator/amount columns, and find each window's first event with one np.searchsorted per window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from foundation.evaluation.splits import (
    _get,
    schema_fields,
    schema_labels,
    schema_period,
    to_datetime,
    to_timedelta,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VelocityConfig:
    """Which velocity features to compute (the `velocity` block of conf/task/<task>.yaml).

    Attributes:
        windows: look-back windows of the count and amount features.
        entities: entity types with count/amount/recency features (skipped when the table lacks them).
        amount_field: numeric field summed in the windows (None: counts only).
        event_type_field: categorical field telling attempts, charges, declines and disputes apart; when the
            table lacks it every event is an attempt and a charge, and decline/dispute features are skipped.
        attempt_values: event types counted by the windows (charge attempts).
        charge_values: event types in the denominator of the dispute rate.
        decline_values: event types counted as declines.
        decline_windows: windows of the decline counts.
        decline_entities: entities with decline counts.
        dispute_values: event types that are disputes (they land days after the disputed charge).
        dispute_entities: entities with a dispute rate.
        dispute_ref_field: field of a dispute naming the disputed event; attributes a dispute that lacks the
            entity id to the disputed charge's entity.
        country_fields: two fields whose difference is the cross-border flag.
        raw_fields: the event's own fields used as features; None = every non-outcome categorical or
            numeric field of the schema (labels and the fields above excluded).
        max_categories: categorical raw fields keep their most frequent values (others -> missing).
        id_features: entity types whose id is itself a categorical feature (`issuer_id`: issuers apply
            their own decline rules); only for low-cardinality entities, capped by max_categories.
    """

    windows: tuple[str, ...] = ("1h", "1d", "7d", "30d")
    entities: tuple[str, ...] = ("customer", "merchant")
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
            if isinstance(value, (list, tuple)):
                value = tuple(str(v) for v in value)
            values[key] = value
        config = cls(**values)
        for window in (*config.windows, *config.decline_windows):
            to_timedelta(window, "velocity window")
        if len(config.country_fields) not in (0, 2):
            raise ValueError(f"velocity.country_fields needs two fields, got {config.country_fields}")
        return config


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


def _as_string(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        if pa.types.is_floating(column.type):  # ids read as float (e.g. 12.0) keep their integer spelling
            column = pc.cast(column, pa.int64())
        column = pc.cast(column, pa.string())
    return pa.chunked_array([column]) if isinstance(column, pa.Array) else column


def _in_values(events: pa.Table, name: str | None, values: Sequence[str]) -> np.ndarray | None:
    """(N,) bool: the field is one of values; None when the table lacks the field."""
    if name is None or name not in events.column_names:
        return None
    mask = pc.is_in(_as_string(events.column(name)), value_set=pa.array(list(values), pa.string()))
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _entity_codes(ids: pa.ChunkedArray) -> np.ndarray:
    """(N,) int64 dense codes of the entity ids; -1 where null."""
    encoded = pc.dictionary_encode(_as_string(ids).combine_chunks())
    return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)


class _EntityTimeline:
    """One entity type's events sorted by (entity, event_time, event_id), with window lookups.

    Positions are in the sorted order; the events before sorted position i are [group_start[i], i).
    Every lookup is a searchsorted of already-sorted needles (cache friendly) into one int64 key,
    entity * span + time, where span exceeds the time range plus the longest window, so a window never
    reaches into the previous entity.
    """

    def __init__(self, codes: np.ndarray, times: np.ndarray, order_rank: np.ndarray, span: int):
        # order_rank: (N,) rank of each event in the global (event_time, event_id) order, a permutation
        n = len(codes)
        if (int(codes.max(initial=0)) + 2) * span >= 2**62:
            raise ValueError(f"velocity: {int(codes.max(initial=0)) + 1} entities x a time span of {span} ms "
                             "overflow the int64 window key; split the table by time")
        self.order = np.argsort(codes * n + order_rank, kind="stable")  # (N,) original row per position
        self.codes = codes[self.order]
        self.times = times[self.order]
        self._key = self.codes * span + (self.times - times.min(initial=0))
        self.group_start = np.searchsorted(self._key, self.codes * span, side="left")

    def window_start(self, window_ms: int) -> np.ndarray:
        """(N,) first sorted position of the same entity with event_time >= t - window."""
        return np.searchsorted(self._key, self._key - window_ms, side="left")

    def to_rows(self, sorted_block: np.ndarray) -> np.ndarray:
        """Scatter a (N, k) block of per-sorted-position values back to the original row order."""
        out = np.empty_like(sorted_block)
        out[self.order] = sorted_block
        return out


def _ms(window: str) -> int:
    return int(to_timedelta(window, "velocity window") / np.timedelta64(1, "ms"))


def _prefix(values: np.ndarray) -> np.ndarray:
    """(N + 1,) float64 cumulative sums with a leading 0, so sums over [a, b) are prefix[b] - prefix[a]."""
    return np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])


def _global_rank(events: pa.Table) -> np.ndarray:
    """(N,) rank of each event in (event_time, event_id) order."""
    table = pa.table({"t": pc.cast(events.column("event_time"), pa.timestamp("ms")),
                      "id": _as_string(events.column("event_id"))})
    order = pc.sort_indices(table, sort_keys=[("t", "ascending"), ("id", "ascending")]).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _dispute_entity_ids(events: pa.Table, entity: str, disputes: np.ndarray, ref_field: str | None):
    """The entity ids, with disputes that lack one attributed to the disputed event's entity."""
    ids = _as_string(events.column(f"{entity}_id"))
    if ref_field is None or ref_field not in events.column_names:
        return ids
    lacking = pc.and_(pc.is_null(ids), pa.array(disputes))
    if not pc.any(lacking).as_py():
        return ids
    index = pc.index_in(_as_string(events.column(ref_field)), value_set=_as_string(events.column("event_id")))
    referenced = pc.take(ids, pc.fill_null(index, 0))
    referenced = pc.if_else(pc.is_null(index), pa.scalar(None, pa.string()), referenced)
    return pc.if_else(lacking, referenced, ids)


def _raw_field_names(events: pa.Table, schema: Any, config: VelocityConfig, exclude: set[str]) -> list[str]:
    specs = schema_fields(schema)
    if config.raw_fields is not None:
        outcome = [f for f in config.raw_fields if _get(specs.get(f, {}), "outcome", False)]
        if outcome:
            raise ValueError(f"velocity.raw_fields {outcome} are outcome fields: never features of the event")
        absent = [f for f in config.raw_fields if f not in events.column_names]
        if absent:
            raise ValueError(f"velocity.raw_fields {absent} are not columns of the event table")
        return list(config.raw_fields)
    names = []
    for name, spec in specs.items():
        kind = _get(spec, "type")
        if kind in ("categorical", "numeric") and not _get(spec, "outcome", False) and name not in exclude:
            if name in events.column_names:
                names.append(name)
    return names


def velocity_features(
    events: pa.Table,
    schema: Any,
    config: VelocityConfig | Mapping | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    fit_until: Any = None,
) -> VelocityFeatures:
    """Point-in-time velocity features for every event of the canonical table.

    Args:
        events: canonical event table.
        schema: the data schema (fields with type/outcome, labels, splits).
        config: VelocityConfig or its mapping (None = defaults).
        categories: vocabularies of the categorical raw fields to reuse (e.g. those of the training run);
            None fits them on the events before `fit_until`.
        fit_until: vocabularies are fitted on events before this time; default the schema's train end.

    Returns:
        VelocityFeatures with one row per event, in the table's row order.
    """
    if not isinstance(config, VelocityConfig):
        config = VelocityConfig.from_config(config)
    for column in ("event_id", "event_time"):
        if column not in events.column_names:
            raise ValueError(f"velocity features: event table lacks column {column!r}")
    n = len(events)
    if events.column("event_time").null_count:
        raise ValueError(f"velocity features: event_time has {events.column('event_time').null_count} nulls")
    times = pc.cast(events.column("event_time"), pa.timestamp("ms")).to_numpy().astype(np.int64)  # (N,) ms
    rank = _global_rank(events)
    windows_ms = [_ms(w) for w in (*config.windows, *config.decline_windows)]
    span = int(times.max(initial=0) - times.min(initial=0)) + max(windows_ms, default=0) + 1

    has_types = config.event_type_field is not None and config.event_type_field in events.column_names
    ones = np.ones(n, dtype=bool)
    attempts = _in_values(events, config.event_type_field, config.attempt_values) if has_types else ones
    charges = _in_values(events, config.event_type_field, config.charge_values) if has_types else ones
    declines = _in_values(events, config.event_type_field, config.decline_values) if has_types else None
    disputes = _in_values(events, config.event_type_field, config.dispute_values) if has_types else None
    if not has_types:
        log.info("velocity: no %r field; every event is a charge, no decline/dispute features",
                 config.event_type_field)
    amount = None
    if config.amount_field is not None and config.amount_field in events.column_names:
        amount = np.nan_to_num(pc.cast(events.column(config.amount_field), pa.float64())
                               .to_numpy(zero_copy_only=False), nan=0.0)

    blocks: list[tuple[list[str], np.ndarray]] = []  # (names, (N, k) float32) per entity, then raw fields
    columns: dict[str, np.ndarray] = {}
    entities = [e for e in dict.fromkeys((*config.entities, *config.decline_entities, *config.dispute_entities))
                if f"{e}_id" in events.column_names]
    for entity in tqdm(entities, desc="velocity features", disable=n < 100_000):
        ids = events.column(f"{entity}_id")
        if disputes is not None and entity in config.dispute_entities:
            ids = _dispute_entity_ids(events, entity, disputes, config.dispute_ref_field)
        codes = _entity_codes(ids)
        line = _EntityTimeline(codes, times, rank, span)
        known = codes[line.order] >= 0
        position = np.arange(n)
        features: dict[str, np.ndarray] = {}
        if entity in config.entities:
            features.update(_window_features(entity, line, attempts, amount, config))
        if declines is not None and entity in config.decline_entities:
            prefix = _prefix(declines[line.order])
            for window in config.decline_windows:
                start = line.window_start(_ms(window))
                features[f"{entity}_declines_{window}"] = prefix[position] - prefix[start]
        if disputes is not None and entity in config.dispute_entities:
            dispute_prefix, charge_prefix = _prefix(disputes[line.order]), _prefix(charges[line.order])
            n_disputes = dispute_prefix[position] - dispute_prefix[line.group_start]  # all history before e
            n_charges = charge_prefix[position] - charge_prefix[line.group_start]
            features[f"{entity}_disputes_so_far"] = n_disputes
            with np.errstate(divide="ignore", invalid="ignore"):
                features[f"{entity}_dispute_rate"] = np.where(n_charges > 0, n_disputes / n_charges, np.nan)
        if features:
            block = np.empty((n, len(features)), dtype=np.float32)  # (N, k) in sorted order
            for j, sorted_values in enumerate(features.values()):
                block[:, j] = sorted_values
            block[~known] = np.nan  # events without this entity have no history to count
            blocks.append((list(features), line.to_rows(block)))

    exclude = set(schema_labels(schema)) | {config.event_type_field, config.dispute_ref_field}
    raw = _raw_field_names(events, schema, config, exclude)
    raw += [f"{e}_id" for e in config.id_features if f"{e}_id" in events.column_names]
    categorical, vocabularies = [], {}
    if categories is None:
        until = to_datetime(fit_until, "fit_until") if fit_until is not None else schema_period(schema, "train").end
        fit_mask = times < until.astype("datetime64[ms]").astype(np.int64)
    for name in raw:
        column = events.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
            columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
            continue
        strings = _as_string(column)
        if categories is not None:
            if name not in categories:
                raise KeyError(f"velocity: no vocabulary for categorical field {name!r} in `categories`")
            vocabulary = [str(v) for v in categories[name]]
        else:
            vocabulary = _fit_vocabulary(strings.filter(pa.array(fit_mask)), config.max_categories)
        codes = pc.index_in(strings, value_set=pa.array(vocabulary, pa.string()))
        columns[name] = pc.cast(codes, pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN
        categorical.append(name)
        vocabularies[name] = vocabulary
    if len(config.country_fields) == 2 and all(f in events.column_names for f in config.country_fields):
        first, second = (_as_string(events.column(f)) for f in config.country_fields)
        differ = pc.cast(pc.not_equal(first, second), pa.float64())
        columns["cross_border"] = differ.to_numpy(zero_copy_only=False)
    stamps = pc.cast(events.column("event_time"), pa.timestamp("ms"))
    columns["hour"] = pc.hour(stamps).to_numpy(zero_copy_only=False).astype(np.float64)
    columns["day_of_week"] = pc.day_of_week(stamps).to_numpy(zero_copy_only=False).astype(np.float64)

    raw_block = np.empty((n, len(columns)), dtype=np.float32)
    for j, column_values in enumerate(columns.values()):
        raw_block[:, j] = column_values
    blocks.append((list(columns), raw_block))
    names = [name for block_names, _ in blocks for name in block_names]
    values = np.hstack([block for _, block in blocks])
    return VelocityFeatures(
        event_id=_as_string(events.column("event_id")).to_numpy(zero_copy_only=False),
        values=values,
        names=names,
        categorical=categorical,
        categories=vocabularies,
    )


def _window_features(
    entity: str, line: _EntityTimeline, attempts: np.ndarray, amount: np.ndarray | None, config: VelocityConfig
) -> dict[str, np.ndarray]:
    """Counts, amount sums, recency and relative amount of the entity's attempts before each event (sorted)."""
    n = len(line.order)
    position = np.arange(n)
    counted = attempts[line.order]
    count_prefix = _prefix(counted)
    amounts = amount[line.order] * counted if amount is not None else None
    amount_prefix = _prefix(amounts) if amounts is not None else None
    out: dict[str, np.ndarray] = {}
    for window in config.windows:
        start = line.window_start(_ms(window))
        out[f"{entity}_count_{window}"] = count_prefix[position] - count_prefix[start]
        if amount_prefix is not None:
            out[f"{entity}_amount_{window}"] = amount_prefix[position] - amount_prefix[start]
    out[f"{entity}_count_total"] = count_prefix[position] - count_prefix[line.group_start]
    # the entity's previous attempt: the latest attempt position before i (running max of attempt positions)
    last_attempt = np.maximum.accumulate(np.where(counted, position, -1))
    previous = np.r_[-1, last_attempt[:-1]]
    has_previous = previous >= line.group_start
    gap_ms = line.times - line.times[np.maximum(previous, 0)]
    out[f"{entity}_hours_since_last"] = np.where(has_previous, gap_ms / 3_600_000.0, np.nan)
    if amount_prefix is not None and config.windows:
        longest = max(config.windows, key=lambda w: to_timedelta(w))
        count, total = out[f"{entity}_count_{longest}"], out[f"{entity}_amount_{longest}"]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
            out[f"{entity}_amount_vs_mean_{longest}"] = amount[line.order] / mean
    return out


def _fit_vocabulary(values: pa.ChunkedArray, max_categories: int) -> list[str]:
    """The most frequent non-null values (ties broken by value, so the vocabulary is deterministic)."""
    counts = pc.value_counts(values.drop_null()).flatten() if len(values) else None
    if counts is None or len(counts[0]) == 0:
        return []
    table = pa.table({"value": counts[0], "count": counts[1]})
    table = table.sort_by([("count", "descending"), ("value", "ascending")]).slice(0, max_categories)
    return table.column("value").to_pylist()
