"""The data schema: how a raw event dataset maps onto the canonical event table.

A dataset is described once, in `conf/data/<name>.yaml` (the data schema contract), and every stage reads
that description through `DataSchema`. Building a schema checks the config itself (unknown field type, no
entity, misordered splits, an unknown key anywhere, ...) and raises a `SchemaError` naming the config key;
problems in the *data* are found later by `foundation.data.validate` and raise `DataValidationError`.
The parts live in config_values.py (single values), field_specs.py (source, time, fields, entities,
labels) and periods.py (splits); their public names are importable from here.

Example:
    >>> schema = DataSchema.from_config({
    ...     "name": "tiny", "source": {"path": "events.csv"}, "timestamp": "ts",
    ...     "entities": {"customer": "card"}, "fields": {"amount": {"type": "numeric", "min": 0}}})
    >>> schema.canonical_schema().names
    ['event_id', 'event_time', 'customer_id', 'amount']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from foundation.data.config_values import (
    DataValidationError,
    SchemaError,
    check_keys,
    choice,
    column_name,
    mapping,
    parse_duration,
)
from foundation.data.field_specs import (
    ENCODER_OPTIONS,
    ENTITY_TYPES,
    EPOCH_UNITS,
    FIELD_TYPES,
    REPRESENTATIONS,
    SOURCE_FORMATS,
    EntitySpec,
    FieldSpec,
    LabelEvents,
    LabelSpec,
    SourceSpec,
    TimestampSpec,
)
from foundation.data.periods import SPLIT_NAMES, Period, Splits

__all__ = [
    "ENCODER_OPTIONS", "ENTITY_TYPES", "EPOCH_UNITS", "FIELD_TYPES", "ON_ERROR", "REPRESENTATIONS", "RESERVED_NAMES",
    "SOURCE_FORMATS", "SPLIT_NAMES", "DataSchema", "DataValidationError", "EntitySpec", "FieldSpec", "LabelEvents",
    "LabelSpec",
    "Period", "SchemaError", "SourceSpec", "Splits", "TimestampSpec", "ValidationPolicy", "parse_duration",
]

ON_ERROR = ("raise", "quarantine")
# Canonical and encoded column names owned by the pipeline; a field or label with one of these names would
# silently overwrite it downstream (canonical event table, sequence shards, encoded sequences, padded batch).
RESERVED_NAMES = frozenset(
    {"event_id", "event_time", "entity_type", "entity_id", "length", "lengths", "attention_mask",
     "entity_index", "hour", "dow", "time", "time_gap", "time_gap_bin"} | {f"{e}_id" for e in ENTITY_TYPES}
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = ("name", "source", "timestamp", "event_id", "entities", "fields", "labels", "label_events", "splits",
             "validation")


@dataclass(frozen=True)
class ValidationPolicy:
    """What to do with rows that fail validation: raise, or quarantine them to `<quarantine_dir>/<reason>.parquet`."""

    on_error: str = "raise"
    quarantine_dir: str | None = None

    @classmethod
    def from_node(cls, node: Any) -> ValidationPolicy:
        node = mapping(node, "validation")
        check_keys(node, ("on_error", "quarantine_dir"), "validation")
        on_error = choice(node.get("on_error", "raise"), ON_ERROR, "validation.on_error")
        qdir = node.get("quarantine_dir")
        if on_error == "quarantine" and not qdir:
            raise SchemaError("validation.quarantine_dir: required when on_error is 'quarantine'")
        return cls(on_error=on_error, quarantine_dir=None if qdir is None else str(qdir))


@dataclass(frozen=True)
class DataSchema:
    """A dataset description: source, timestamp, entities, fields, labels, splits and validation policy.

    Build it with `DataSchema.from_config(cfg.data)` inside a Hydra app or `DataSchema.from_yaml(path)`.
    Every key of the YAML must be known: an unknown top-level key is an error that lists the valid ones.
    """

    name: str
    source: SourceSpec
    timestamp: TimestampSpec
    entities: dict[str, EntitySpec]
    fields: dict[str, FieldSpec]
    labels: dict[str, LabelSpec] = field(default_factory=dict)
    event_id: str | None = None
    splits: Splits = field(default_factory=Splits)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    label_events: LabelEvents | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any]) -> DataSchema:
        """Build and check a schema from an OmegaConf node (interpolations resolved against its root) or a dict.

        Args:
            cfg: the dataset node, e.g. `cfg.data` of a composed Hydra config.
        Returns:
            the checked `DataSchema`.
        Raises:
            SchemaError: naming the config key, for any problem in the config.
        """
        node = _resolve(cfg)
        check_keys(node, _TOP_KEYS, "data")
        name = node.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SchemaError(f"name: expected a dataset name (letters, digits, _), got {name!r}")
        if "source" not in node:
            raise SchemaError("source: required; e.g. source: {path: data/events.parquet, format: parquet}")
        entities_node = mapping(node.get("entities"), "entities")
        if not entities_node:
            raise SchemaError(f"entities: at least one entity is required, e.g. entities: {{customer: {{column: "
                              f"card_id}}}}; types: {', '.join(ENTITY_TYPES)}")
        # Canonical order customer, merchant, issuer whatever the YAML order, so tables line up across datasets.
        entities = {e: EntitySpec.from_node(e, entities_node[e]) for e in ENTITY_TYPES if e in entities_node}
        for etype in entities_node:
            if etype not in ENTITY_TYPES:
                EntitySpec.from_node(str(etype), entities_node[etype])  # raises the unknown-type error
        fields = {n: FieldSpec.from_node(n, v) for n, v in mapping(node.get("fields"), "fields").items()}
        labels = {n: LabelSpec.from_node(n, v) for n, v in mapping(node.get("labels"), "labels").items()}
        label_events = None if node.get("label_events") is None else LabelEvents.from_node(node["label_events"])
        if label_events is not None:
            _check_label_events(label_events, fields, labels)
            fields[label_events.field] = label_events.field_spec()
        event_id = node.get("event_id")
        if event_id is not None:
            event_id = column_name(event_id, "event_id")
        schema = cls(name=name, source=SourceSpec.from_node(node["source"]),
                     timestamp=TimestampSpec.from_node(node.get("timestamp")), entities=entities, fields=fields,
                     labels=labels, event_id=event_id, splits=Splits.from_node(node.get("splits")),
                     validation=ValidationPolicy.from_node(node.get("validation")), label_events=label_events)
        schema._check_names()
        schema._check_derived_labels()
        if label_events is not None and schema.splits.label_delay_ms <= 0:
            raise SchemaError("label_events: needs splits.label_delay > 0 (a label event lands at event time + "
                              "label_delay, strictly after the event it labels), e.g. label_delay: 7d")
        return schema

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = (),
                  root: Mapping[str, Any] | None = None) -> DataSchema:
        """Load `conf/data/<name>.yaml` outside Hydra.

        Args:
            path: the YAML file.
            overrides: dotlist overrides relative to the dataset node, e.g. ["source.path=/data/x.parquet"].
            root: other top-level config nodes the YAML interpolates, e.g. {"paths": {"data_dir": "data"}}.
        Returns:
            the checked `DataSchema`.
        """
        data = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
        composed = OmegaConf.create({**(dict(root) if root else {}), "data": data})
        return cls.from_config(composed.data)

    def _check_names(self) -> None:
        taken: dict[str, str] = {}
        for kind, names in (("fields", self.fields), ("labels", self.labels)):
            for name in names:
                if not _NAME_RE.match(name):
                    raise SchemaError(f"{kind}.{name}: names must be letters, digits and _ (they become columns)")
                if name in RESERVED_NAMES:
                    raise SchemaError(f"{kind}.{name}: '{name}' is a reserved canonical column name")
                if name in taken:
                    raise SchemaError(f"{kind}.{name}: name already used by {taken[name]}.{name}")
                taken[name] = kind
        for spec in self.fields.values():
            derived = {"numeric": ("_bin", "_value"), "text": ("_tokens",)}.get(spec.type, ())
            for clash in (spec.name + suffix for suffix in derived):
                if clash in taken:
                    raise SchemaError(f"{taken[clash]}.{clash}: clashes with the encoded column of fields.{spec.name}")
        label_columns = {spec.column: name for name, spec in self.labels.items()}
        for spec in self.fields.values():
            if spec.column in label_columns:
                raise SchemaError(f"fields.{spec.name}.column: '{spec.column}' is the column of "
                                  f"labels.{label_columns[spec.column]}; labels are never features")

    def _check_derived_labels(self) -> None:
        for spec in self.labels.values():
            derived, key = spec.from_events, f"labels.{spec.name}.from_events"
            if derived is None:
                continue
            if derived.field not in self.fields or self.fields[derived.field].type != "categorical":
                raise SchemaError(f"{key}.field: {derived.field!r} is not a categorical field of the schema; "
                                  f"categorical fields: {[f for f, s in self.fields.items() if s.type == 'categorical']}")
            if derived.ref is not None and derived.ref not in self.fields:
                raise SchemaError(f"{key}.ref: {derived.ref!r} is not a field of the schema; fields: {list(self.fields)}")
            missing = [e for e in derived.match if e not in self.entities and e not in self.fields]
            if missing:
                raise SchemaError(f"{key}.match: {missing} name no entity type ({list(self.entities)}) and no field "
                                  f"({list(self.fields)})")

    @property
    def label_columns(self) -> list[str]:
        """Raw columns of the labels read from the source (a derived label has none)."""
        return [spec.column for spec in self.labels.values() if spec.column is not None]

    @property
    def derived_labels(self) -> list[LabelSpec]:
        """Labels set by outcome events (`from_events`), computed after validation."""
        return [spec for spec in self.labels.values() if spec.from_events is not None]

    @property
    def column_keys(self) -> dict[str, str]:
        """Raw column -> the config key that names it (first one wins), in canonical order."""
        keys: dict[str, str] = {}
        pairs = [("event_id", self.event_id), ("timestamp.column", self.timestamp.column)]
        pairs += [(f"entities.{e.type}.column", e.column) for e in self.entities.values()]
        pairs += [(f"fields.{f.name}.column", f.column) for f in self.raw_fields]
        pairs += [(f"labels.{lb.name}.column", lb.column) for lb in self.labels.values()]
        for key, column in pairs:
            if column is not None:
                keys.setdefault(column, key)
        return keys

    @property
    def raw_fields(self) -> list[FieldSpec]:
        """The fields read from a raw column (all but the field of `label_events`, which the framework fills)."""
        added = None if self.label_events is None else self.label_events.field
        return [spec for spec in self.fields.values() if spec.name != added]

    @property
    def raw_columns(self) -> list[str]:
        """The raw columns the schema reads, deduplicated, in canonical order."""
        return list(self.column_keys)

    def canonical_schema(self) -> pa.Schema:
        """The arrow schema of the canonical event table (the canonical event table contract)."""
        kinds = {"categorical": pa.string(), "numeric": pa.float64(), "timestamp": pa.timestamp("ms"),
                 "text": pa.string()}
        columns = [("event_id", pa.string()), ("event_time", pa.timestamp("ms"))]
        columns += [(e.id_column, pa.string()) for e in self.entities.values()]
        columns += [(f.name, kinds[f.type]) for f in self.fields.values()]
        columns += [(name, pa.float64()) for name in self.labels]
        return pa.schema(columns)

    def check_columns(self, available: Sequence[str], columns: Sequence[str] | None = None) -> None:
        """Raise a DataValidationError listing the schema columns missing from `available`.

        Args:
            available: the column names the data has.
            columns: the columns needed (default: `raw_columns`).
        """
        keys = self.column_keys
        missing = [c for c in (columns if columns is not None else self.raw_columns) if c not in set(available)]
        if missing:
            named = ", ".join(f"'{c}' ({keys.get(c, 'requested')})" for c in missing)
            raise DataValidationError(
                f"dataset '{self.name}': missing column(s) {named} in source '{self.source.path}'; "
                f"available columns: {', '.join(map(repr, available))}. Fix the column names in "
                f"conf/data/{self.name}.yaml or the data.")


def _check_label_events(spec: LabelEvents, fields: dict[str, FieldSpec], labels: dict[str, LabelSpec]) -> None:
    unknown = [name for name in spec.labels if name not in labels]
    if unknown:
        raise SchemaError(f"label_events.labels: {unknown} are not labels of the schema; labels: {list(labels)}")
    if spec.field in fields:
        raise SchemaError(f"label_events.field: {spec.field!r} is already a field; the label events need a new "
                          f"field name (the framework adds it), e.g. field: landed_label")


def _resolve(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """Resolve interpolations key by key so an unresolvable one is reported with its key."""
    if isinstance(cfg, DictConfig):
        out = {}
        for key in cfg.keys():
            try:
                out[key] = OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(
                    cfg[key]) else cfg[key]
            except OmegaConfBaseException as err:
                raise SchemaError(f"{key}: cannot resolve the config value ({err}); compose the dataset config "
                                  f"with Hydra (conf/paths provides paths.*) or pass it in root=") from None
        return out
    if not isinstance(cfg, Mapping):
        raise SchemaError(f"data: expected a mapping or DictConfig, got {type(cfg).__name__}")
    return dict(cfg)
