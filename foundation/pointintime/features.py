"""Task features of charge attempts, from point-in-time entity states: one layout, online and batch.

For a charge attempt e at time t: `[h_1(t), ..., h_k(t), event_vector(e), has_history_1, ..., has_history_k]`,
the states of the task's entities (fraud: customer, merchant; authorization: customer, issuer) as of just
before e and e's own event vector without its outcome fields, optionally followed by e's surprise under its
customer's state. `task_features` builds one row (the online scorer); `task_feature_matrix` calls it on
whole feature-major matrices (the batch path), so a head trained on these features scores the same vectors
online. GBDT heads add e's raw fields (`raw_field_features`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema
from foundation.pointintime.states import AsOfStates, PointInTimeStates
from foundation.pointintime.velocity import VelocityConfig, velocity_features

EVENT_ENTITY = "customer"  # the attempt's event vector is taken in its customer sequence, as the scorer does


def task_features(hidden: Sequence[np.ndarray], has_history: Sequence[bool], event_vector: np.ndarray,
                  surprise: np.ndarray | None = None) -> np.ndarray:
    """Features of one charge attempt for a task head.

    Args:
        hidden: per task entity (in the task's `entities` order), its (H,) state as of the attempt
            (zeros without history).
        has_history: per task entity, whether it had any event before the attempt.
        event_vector: (H,) the attempt's event vector.
        surprise: (F,) the attempt's surprise under its customer's state (foundation.pointintime.surprise),
            for heads trained with it; None otherwise.
    Returns:
        (k * H + H + k [+ F],) float32: [h_1, ..., h_k, event_vector, has_history_1, ..., has_history_k,
        surprise...].
    """
    flags = np.asarray(has_history, dtype=np.float32)
    parts = [*(np.asarray(h, np.float32) for h in hidden), np.asarray(event_vector, np.float32), flags]
    if surprise is not None:
        parts.append(np.asarray(surprise, np.float32))
    return np.concatenate(parts)


@dataclass(frozen=True)
class FeatureLayout:
    """Column layout of the task features.

    Attributes:
        entities: entity types whose states come first, in order.
        hidden_size: H.
        surprise: names of the event surprise columns that end the row (empty: none; foundation.pointintime.surprise).
    """

    entities: tuple[str, ...]
    hidden_size: int
    surprise: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        k, h = len(self.entities), self.hidden_size
        return k * h + h + k + len(self.surprise)

    def names(self) -> list[str]:
        h = self.hidden_size
        names = [f"h_{e}_{i}" for e in self.entities for i in range(h)]
        return (names + [f"event_{i}" for i in range(h)] + [f"has_history_{e}" for e in self.entities]
                + list(self.surprise))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "section8", "entities": list(self.entities), "hidden_size": self.hidden_size,
                "n_features": self.n_features, "surprise": list(self.surprise),
                "order": "[h_<entity> for entities] + [event_vector] + [has_history_<entity> for entities]"
                         " + [surprise_<field> ..., surprise_total]"}


def task_feature_matrix(hidden: Sequence[np.ndarray], has_history: Sequence[np.ndarray],
                        event_vector: np.ndarray, surprise: np.ndarray | None = None) -> np.ndarray:
    """Rows of `task_features` for N examples at once.

    The scorer's function concatenates per-entity vectors along their first axis; given feature-major
    (H, N) arrays it builds every example's column in one call, so the layout is its own by construction.

    Args:
        hidden: per task entity, (N, H) states.
        has_history: per task entity, (N,) bools.
        event_vector: (N, H).
        surprise: (N, F) event surprise, or None.
    Returns:
        (N, k * H + H + k [+ F]) float32.
    """
    n = len(event_vector)
    for h in hidden:
        if np.shape(h) != np.shape(event_vector):
            raise ValueError(f"entity states {np.shape(h)} and event vectors {np.shape(event_vector)} differ")
    flags = [np.asarray(f, dtype=bool).reshape(n) for f in has_history]
    columns = task_features([np.asarray(h, np.float32).T for h in hidden], flags,
                            np.asarray(event_vector, np.float32).T,
                            None if surprise is None else np.asarray(surprise, np.float32).T)  # (D, N)
    return np.ascontiguousarray(columns.T)


@dataclass
class ExampleStates:
    """Point-in-time states of a set of example events, for every entity type any task reads.

    Attributes:
        keys: (N rows) event_id, event_time, <entity>_id of the examples (example_keys), in order.
        states: entity type -> AsOfStates (hidden, has_history, index in the entity's sequence).
        event_vectors: (N, H) outcome-free event vectors.
        surprise: (N, F) event surprise under the customer's state (None: the model has no next-event heads).
    """

    keys: pa.Table
    states: dict[str, AsOfStates]
    event_vectors: np.ndarray
    surprise: np.ndarray | None = None

    def __len__(self) -> int:
        return self.keys.num_rows

    @property
    def event_ids(self) -> pa.Array:
        return pc.cast(self.keys.column("event_id"), pa.string()).combine_chunks()

    def take(self, index: np.ndarray) -> ExampleStates:
        """The states of a subset of the examples (rows `index`)."""
        index = np.asarray(index, dtype=np.int64)
        states = {e: AsOfStates(s.hidden[index], s.has_history[index], s.index[index]) for e, s in self.states.items()}
        return ExampleStates(self.keys.take(pa.array(index)), states, self.event_vectors[index],
                             None if self.surprise is None else self.surprise[index])

    def features(self, entities: Sequence[str]) -> np.ndarray:
        """The (N, D) task features for a task reading `entities`."""
        missing = [e for e in entities if e not in self.states]
        if missing:
            raise KeyError(f"no states for entity types {missing} (have {list(self.states)})")
        return task_feature_matrix([self.states[e].hidden for e in entities],
                                   [self.states[e].has_history for e in entities], self.event_vectors, self.surprise)

    def positions(self, event_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Row of each given event id in these states (KeyError when one is absent)."""
        wanted = pc.cast(event_ids, pa.string())
        index = pc.index_in(wanted, value_set=self.event_ids)
        if index.null_count:
            raise KeyError(f"{index.null_count} examples have no computed states")
        return index.to_numpy(zero_copy_only=False).astype(np.int64)


def example_keys(events: pa.Table, examples: pa.Table, entity_types: Sequence[str]) -> pa.Table:
    """event_id, event_time and every `<entity>_id` of the examples (rows of the canonical table).

    Args:
        events: canonical event table.
        examples: select_examples output (its `row` column indexes `events`).
        entity_types: entity id columns to carry.
    """
    rows = examples.column("row")
    columns = ["event_id", "event_time"] + [f"{e}_id" for e in entity_types]
    absent = [c for c in columns if c not in events.column_names]
    if absent:
        raise ValueError(f"event table lacks columns {absent}")
    return events.select(columns).take(rows)


def example_states(states: PointInTimeStates, keys: pa.Table, entity_types: Sequence[str],
                   event_entity: str = EVENT_ENTITY) -> ExampleStates:
    """States of every listed entity type as of each example, and the examples' event vectors.

    Args:
        states: PointInTimeStates over the full-history sequences, with the model.
        keys: example_keys output (event_id, event_time, <entity>_id ...).
        entity_types: the entity types needed (union over tasks).
        event_entity: the sequence the event vectors are taken from (the customer, as the scorer does).
    Returns:
        ExampleStates in the order of `keys`.
    """
    times = pc.cast(keys.column("event_time"), pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    event_ids = pc.cast(keys.column("event_id"), pa.string()).combine_chunks()
    out: dict[str, AsOfStates] = {}
    vectors = surprise = None
    for entity in dict.fromkeys([event_entity, *entity_types]):
        column = keys.column(f"{entity}_id")
        if entity == event_entity and column.null_count:
            raise ValueError(f"{column.null_count} examples have no {entity}_id: their event vector is taken in "
                             f"the {entity} sequence")
        found = states.as_of(entity, column, times, event_ids, with_event_vectors=entity == event_entity)
        if entity == event_entity:
            vectors, surprise = found.event_vectors, found.event_surprise
            found.event_vectors = found.event_surprise = None
        out[entity] = found
    return ExampleStates(keys, out, vectors, surprise)


@dataclass
class RawFields:
    """An event's own raw fields as GBDT features (from the velocity baseline's encoding).

    Attributes:
        values: (N, R) float32, NaN = missing; categorical fields as integer codes.
        names: R names.
        categorical: names of the code columns.
        categories: field -> vocabulary (code i = categories[field][i]), fitted on events before train end.
    """

    values: np.ndarray
    names: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]

    def layout(self) -> dict[str, Any]:
        return {"names": self.names, "categorical": self.categorical, "categories": self.categories}


def raw_field_features(events: pa.Table, schema: DataSchema, velocity: Mapping[str, Any] | None = None,
                       categories: Mapping[str, Sequence[str]] | None = None) -> RawFields:
    """Each event's own non-outcome fields (amount, mcc, channel, countries, cross-border, hour, day of week).

    The velocity baseline's raw-field block with no entity windows: outcome fields and labels are never
    among them. Pass the `categories` a head was trained with to encode new events the same way.

    Args:
        events: canonical event table.
        schema: the data schema.
        velocity: the task's `velocity` block (raw_fields, country_fields, max_categories are read).
        categories: vocabularies to reuse; None fits them on events before the train period's end.
    Returns:
        RawFields with one row per event of `events`.
    """
    found = velocity_features(events, schema, raw_field_config(velocity), categories=categories)
    return RawFields(found.values, found.names, found.categorical, found.categories)


def raw_field_config(velocity: Mapping[str, Any] | None) -> VelocityConfig:
    """The VelocityConfig of `raw_field_features`: the task's block with no entity windows."""
    settings = dict(velocity or {})
    settings.update(entities=[], decline_entities=[], dispute_entities=[], pairs=[], risk_entities=[])
    return VelocityConfig.from_config(settings)


@dataclass(frozen=True)
class RawFieldLayout:
    """The attempt's own raw fields as a GBDT head was trained on them (what its head.json records).

    Args:
        velocity: the task's `velocity` block (which raw fields, country fields, category caps).
        categories: field -> vocabulary the head was trained with.
        names: the feature names, in the head's column order.
    """

    velocity: dict[str, Any]
    categories: dict[str, list[str]]
    names: list[str]

    @cached_property
    def config(self) -> VelocityConfig:
        """`raw_field_config(velocity)`, built once per layout: a served head encodes every attempt with it."""
        return raw_field_config(self.velocity)

    def features(self, table: pa.Table, schema: DataSchema) -> np.ndarray:
        """(N, R) float32 raw-field features of a canonical event table, encoded as at training."""
        found = velocity_features(table, schema, self.config, categories=self.categories)  # raw_field_features
        if list(found.names) != list(self.names):
            raise ValueError(f"raw-field features {found.names} differ from the head's {self.names}: the task's "
                             "velocity block changed since the head was trained")
        return np.asarray(found.values, dtype=np.float32)

    def rows(self, rows: Sequence[Mapping[str, Any]], canonical: pa.Schema) -> np.ndarray | None:
        """`features` of canonical rows (timestamps as epoch ms), computed row by row without building a table.

        The service's path: for the few attempts of a micro-batch, pyarrow's per-call overhead over a dozen
        columns costs more than the arithmetic. Equal to `features` value for value (tested); None when a
        column's type needs the table path (a categorical field that is not a string, a non-numeric field).
        """
        kinds = self._row_kinds(canonical)
        if kinds is None:
            return None
        block = np.empty((len(rows), len(kinds)), dtype=np.float32)
        for i, row in enumerate(rows):
            for j, (kind, name, vocabulary) in enumerate(kinds):
                if kind == "number":
                    value = row.get(name)
                    block[i, j] = np.nan if value is None else float(value)
                elif kind == "code":
                    block[i, j] = vocabulary.get(row.get(name), np.nan)
                elif kind == "differ":
                    first, second = (row.get(f) for f in vocabulary)
                    block[i, j] = np.nan if first is None or second is None else float(first != second)
                elif kind == "hour":
                    block[i, j] = (row["event_time"] // 3_600_000) % 24
                else:  # day_of_week, Monday = 0 (1970-01-01 was a Thursday)
                    block[i, j] = (row["event_time"] // 86_400_000 + 3) % 7
        return block

    def _row_kinds(self, canonical: pa.Schema) -> list[tuple[str, str, Any]] | None:
        """How `rows` computes each column: (kind, field, vocabulary index or country fields)."""
        cached = self.__dict__.setdefault("_kinds", {})  # id -> (schema, kinds): hashing a schema costs ~10 us
        found = cached.get(id(canonical))
        if found is not None and found[0] is canonical:
            return found[1]
        kinds: list[tuple[str, str, Any]] | None = []
        countries = list(self.config.country_fields)
        for name in self.names:
            if name in ("hour", "day_of_week"):  # as in _raw_block, these names are always the calendar's
                kinds.append((name, name, None))
            elif name == "cross_border" and len(countries) == 2 and all(f in canonical.names for f in countries):
                if not all(pa.types.is_string(canonical.field(f).type) for f in countries):
                    kinds = None
                    break
                kinds.append(("differ", name, countries))
            elif name in canonical.names and name in self.categories and pa.types.is_string(canonical.field(name).type):
                kinds.append(("code", name, {value: float(k) for k, value in enumerate(self.categories[name])}))
            elif name in canonical.names and _is_number(canonical.field(name).type) and name not in self.categories:
                kinds.append(("number", name, None))
            else:
                kinds = None
                break
        cached[id(canonical)] = (canonical, kinds)
        return kinds


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
