"""Hand-crafted point-in-time velocity features: the GBDT baseline a strong fraud team runs (baseline a).

For every event e at time t, from the schema alone (any subset of entities, fields and event types):
- per entity (customer, merchant, issuer, ...) and window (1h/1d/7d/30d): attempt count, amount sum, mean
  and max, distinct counterparties; the time since its previous attempt; e's amount against the entity's
  30-day mean and spread; how often this customer paid this merchant before (`velocity_entity`);
- outcomes known by t: declines in the last 1h/1d, the dispute rate so far, and label-delayed risk, the
  share of the entity's attempts of (t - delay - d, t - delay] known to be fraud by t (`velocity_risk`);
- calendar (hour, day of week, night) and e's own raw fields (amount, channel, mcc, countries, a
  cross-border flag). Outcome fields of e (event_type, decline_code) and labels are never features of e.

The `velocity` block of conf/task/<task>.yaml picks the families, windows and entities (`VelocityConfig`).
"Before e" means strictly before it in (event_time, event_id) order, as everywhere in the framework
(`foundation.pointintime.states`). All of it is vectorised (`velocity_timeline`): sort the events by
(entity, time) once, take cumulative sums of indicator/amount columns, and find each window's first event
with one np.searchsorted per window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from foundation.data.label_events import is_label_event
from foundation.data.schema import DataSchema
from foundation.evaluation.splits import schema_period, to_datetime
from foundation.pointintime.velocity_config import VelocityConfig, VelocityFeatures
from foundation.pointintime.velocity_entity import pair_features, window_features
from foundation.pointintime.velocity_risk import (
    decline_features,
    dispute_entity_ids,
    dispute_features,
    label_evidence,
    risk_features,
)
from foundation.pointintime.velocity_timeline import (
    EntityTimeline,
    as_string,
    entity_codes,
    global_rank,
    in_values,
    to_ms,
)

__all__ = ["VelocityConfig", "VelocityFeatures", "velocity_features"]

log = logging.getLogger(__name__)

Block = tuple[list[str], np.ndarray]  # (names, (N, k) float32 in the table's row order)


def velocity_features(
    events: pa.Table,
    schema: DataSchema,
    config: VelocityConfig | Mapping | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    fit_until: Any = None,
) -> VelocityFeatures:
    """Point-in-time velocity features for every event of the canonical table.

    Args:
        events: canonical event table.
        schema: the data schema (fields with type/outcome, labels, splits with label_delay).
        config: VelocityConfig or its mapping (None = defaults).
        categories: vocabularies of the categorical raw fields to reuse (e.g. those of the training run);
            None fits them on the events before `fit_until`.
        fit_until: vocabularies are fitted on events before this time; default the schema's train end.

    Returns:
        VelocityFeatures with one row per event, in the table's row order: entity blocks, pair blocks,
        `is_night` (with any of those), then the raw-field block (raw fields, entity id features,
        cross_border, hour, day_of_week), which alone is what `raw_field_features` keeps.
    """
    if not isinstance(config, VelocityConfig):
        config = VelocityConfig.from_config(config)
    landed = is_label_event(events, schema)
    if landed.any():  # a fraud team's features read labels through the risk block, never as events
        return _without_label_events(events, schema, config, categories, fit_until, landed)
    for column in ("event_id", "event_time"):
        if column not in events.column_names:
            raise ValueError(f"velocity features: event table lacks column {column!r}")
    if events.column("event_time").null_count:
        raise ValueError(f"velocity features: event_time has {events.column('event_time').null_count} nulls")
    times = pc.cast(events.column("event_time"), pa.timestamp("ms")).to_numpy().astype(np.int64)  # (N,) ms
    blocks = _history_blocks(events, schema, config, times)
    if blocks:
        blocks.append(_night_block(events, config))
    names, block, categorical, vocabularies = _raw_block(events, schema, config, times, categories, fit_until)
    blocks.append((names, block))
    return VelocityFeatures(
        event_id=as_string(events.column("event_id")).to_numpy(zero_copy_only=False),
        values=np.hstack([values for _, values in blocks]),
        names=[name for block_names, _ in blocks for name in block_names],
        categorical=categorical,
        categories=vocabularies,
    )


def _without_label_events(events: pa.Table, schema: DataSchema, config: VelocityConfig,
                          categories: Mapping[str, Sequence[str]] | None, fit_until: Any,
                          landed: np.ndarray) -> VelocityFeatures:
    """The features of the source events; the label events' rows are NaN (they are never examples)."""
    found = velocity_features(events.filter(pa.array(~landed)), schema, config, categories, fit_until)
    values = np.full((len(events), found.values.shape[1]), np.nan, dtype=found.values.dtype)
    values[~landed] = found.values
    return replace(found, event_id=as_string(events.column("event_id")).to_numpy(zero_copy_only=False),
                   values=values)


def _history_blocks(events: pa.Table, schema: DataSchema, config: VelocityConfig, times: np.ndarray) -> list[Block]:
    """The entity and pair blocks: everything read from events before e."""
    n = len(events)
    present = set(events.column_names)
    # pairs and risk extend the history of `entities`: entities=[] leaves declines/disputes or nothing
    risk_entities = [e for e in config.risk_entities if e in config.entities]
    wanted = (*config.entities, *config.decline_entities, *config.dispute_entities)
    entities = [e for e in dict.fromkeys(wanted) if f"{e}_id" in present]
    pairs = [(a, b) for a, b in config.pairs
             if a in config.entities and f"{a}_id" in present and f"{b}_id" in present]
    if not entities and not pairs:
        return []
    rank = global_rank(events)
    has_types = config.event_type_field is not None and config.event_type_field in present
    ones = np.ones(n, dtype=bool)
    attempts = in_values(events, config.event_type_field, config.attempt_values) if has_types else ones
    charges = in_values(events, config.event_type_field, config.charge_values) if has_types else ones
    declines = in_values(events, config.event_type_field, config.decline_values) if has_types else None
    disputes = in_values(events, config.event_type_field, config.dispute_values) if has_types else None
    if not has_types:
        log.info("velocity: no %r field; every event is a charge, no decline/dispute features",
                 config.event_type_field)
    amount = None
    if config.amount_field is not None and config.amount_field in present:
        amount = np.nan_to_num(pc.cast(events.column(config.amount_field), pa.float64())
                               .to_numpy(zero_copy_only=False), nan=0.0)
    evidence = label_evidence(events, schema, config, rank, disputes) if risk_entities else None
    windows_ms = [to_ms(w) for w in (*config.windows, *config.decline_windows, *config.risk_windows)]
    span = (int(times.max(initial=0) - times.min(initial=0)) + max(windows_ms, default=0)
            + (evidence.delay_ms if evidence is not None else 0) + 1)
    codes = {e: entity_codes(events.column(f"{e}_id")) for e in {*entities, *(x for p in pairs for x in p)}}

    blocks: list[Block] = []
    for entity in tqdm(entities, desc="velocity features", disable=n < 100_000):
        own = codes[entity]
        if disputes is not None and entity in config.dispute_entities:
            own = entity_codes(dispute_entity_ids(events, entity, disputes, config.dispute_ref_field))
        line = EntityTimeline(own, times, rank, span)
        features: dict[str, np.ndarray] = {}
        if entity in config.entities:
            others = {b: codes[b] for a, b in pairs if a == entity} | {a: codes[a] for a, b in pairs if b == entity}
            features.update(window_features(entity, line, attempts, amount, others, config))
        if declines is not None and entity in config.decline_entities:
            features.update(decline_features(entity, line, declines, config.decline_windows))
        if disputes is not None and entity in config.dispute_entities:
            features.update(dispute_features(entity, line, disputes, charges))
        if evidence is not None and entity in risk_entities:
            features.update(risk_features(entity, line, attempts, evidence, config.risk_windows))
        if features:
            blocks.append(_to_block(line, features))
    for first, second in pairs:
        blocks.append(pair_features(first, second, codes[first], codes[second], rank, attempts))
    return blocks


def _to_block(line: EntityTimeline, features: dict[str, np.ndarray]) -> Block:
    block = np.empty((line.n, len(features)), dtype=np.float32)  # (N, k) in sorted order
    for j, sorted_values in enumerate(features.values()):
        block[:, j] = sorted_values
    block[~line.known] = np.nan  # events without this entity have no history to count
    return list(features), line.to_rows(block)


def _night_block(events: pa.Table, config: VelocityConfig) -> Block:
    """`is_night`: the hour lies in config.night_hours (start, end), wrapping past midnight."""
    hour = pc.hour(pc.cast(events.column("event_time"), pa.timestamp("ms"))).to_numpy(zero_copy_only=False)
    start, end = config.night_hours
    night = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
    return ["is_night"], night.astype(np.float32)[:, None]


def _raw_block(events: pa.Table, schema: DataSchema, config: VelocityConfig, times: np.ndarray,
               categories: Mapping[str, Sequence[str]] | None, fit_until: Any):
    """The event's own fields: (names, (N, R) float32, categorical names, vocabularies).

    Served GBDT heads key on these names (`RawFieldLayout`): keep the block's columns and order stable.
    """
    columns: dict[str, np.ndarray] = {}
    exclude = set(schema.labels) | {config.event_type_field, config.dispute_ref_field}
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
        strings = as_string(column)
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
        first, second = (as_string(events.column(f)) for f in config.country_fields)
        differ = pc.cast(pc.not_equal(first, second), pa.float64())
        columns["cross_border"] = differ.to_numpy(zero_copy_only=False)
    stamps = pc.cast(events.column("event_time"), pa.timestamp("ms"))
    columns["hour"] = pc.hour(stamps).to_numpy(zero_copy_only=False).astype(np.float64)
    columns["day_of_week"] = pc.day_of_week(stamps).to_numpy(zero_copy_only=False).astype(np.float64)
    block = np.empty((len(events), len(columns)), dtype=np.float32)
    for j, column_values in enumerate(columns.values()):
        block[:, j] = column_values
    return list(columns), block, categorical, vocabularies


def _raw_field_names(events: pa.Table, schema: DataSchema, config: VelocityConfig, exclude: set[str]) -> list[str]:
    specs = schema.fields
    if config.raw_fields is not None:
        outcome = [f for f in config.raw_fields if f in specs and specs[f].outcome]
        if outcome:
            raise ValueError(f"velocity.raw_fields {outcome} are outcome fields: never features of the event")
        absent = [f for f in config.raw_fields if f not in events.column_names]
        if absent:
            raise ValueError(f"velocity.raw_fields {absent} are not columns of the event table")
        return list(config.raw_fields)
    names = []
    for name, spec in specs.items():
        if spec.type in ("categorical", "numeric") and not spec.outcome and name not in exclude:
            if name in events.column_names:
                names.append(name)
    return names


def _fit_vocabulary(values: pa.ChunkedArray, max_categories: int) -> list[str]:
    """The most frequent non-null values (ties broken by value, so the vocabulary is deterministic)."""
    counts = pc.value_counts(values.drop_null()).flatten() if len(values) else None
    if counts is None or len(counts[0]) == 0:
        return []
    table = pa.table({"value": counts[0], "count": counts[1]})
    table = table.sort_by([("count", "descending"), ("value", "ascending")]).slice(0, max_categories)
    return table.column("value").to_pylist()
