"""The parts of a dataset config that name columns: the source, the event time, fields, entities, labels.

Each `from_node` checks its node and raises a `SchemaError` that starts with the config key; an unknown key
is always an error that lists the valid ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from foundation.data.config_values import (
    SchemaError,
    boolean,
    check_keys,
    choice,
    column_name,
    mapping,
    number,
    parse_duration,
)

FIELD_TYPES = ("categorical", "numeric", "timestamp", "text")
ENTITY_TYPES = ("customer", "merchant", "issuer")
REPRESENTATIONS = ("events", "aggregate")
EPOCH_UNITS = ("s", "ms", "us", "ns")
SOURCE_FORMATS = ("parquet", "csv")
# Per-field options the EventTokenizer reads (foundation.tokenization.tokenizer `_fitter`).
ENCODER_OPTIONS = ("bins", "num_bins", "log", "max_vocab", "vocab_size", "max_tokens")
_FIELD_KEYS = ("column", "type", "outcome", "min", "max", "allow_null", "allow_nan", "min_count", "unit",
               "format", "extra")


@dataclass(frozen=True)
class SourceSpec:
    """Where the raw events live. `path` is a file, a folder (hive partitions allowed) or a glob."""

    path: str
    format: str = "parquet"
    delimiter: str = ","  # CSV only
    null_values: tuple[str, ...] = ("", "NULL", "null")  # CSV only; NaN stays NaN so the NaN check sees it

    @classmethod
    def from_node(cls, node: Any) -> SourceSpec:
        node = mapping(node, "source") if not isinstance(node, str) else {"path": node}
        check_keys(node, ("path", "format", "delimiter", "null_values"), "source")
        path = node.get("path")
        if not isinstance(path, str) or not path:
            raise SchemaError(f"source.path: expected a file, folder or glob, got {path!r}")
        fmt = node.get("format") or ("csv" if re.search(r"\.csv(\.gz|\.bz2|\.zst)?$", path) else "parquet")
        nulls = node.get("null_values", cls.null_values)
        return cls(path=path, format=choice(fmt, SOURCE_FORMATS, "source.format"),
                   delimiter=str(node.get("delimiter", ",")), null_values=tuple(str(v) for v in nulls))


@dataclass(frozen=True)
class TimestampSpec:
    """The event time column. `unit` is for numeric epochs (s|ms|us|ns); `format` a strptime format for
    strings that are not ISO-8601 (e.g. "%d/%m/%Y %H:%M"); both None for native timestamps / ISO strings."""

    column: str
    unit: str | None = None
    format: str | None = None

    @classmethod
    def from_node(cls, node: Any) -> TimestampSpec:
        node = {"column": node} if isinstance(node, str) else mapping(node, "timestamp")
        if not node:
            raise SchemaError("timestamp: required; e.g. timestamp: {column: ts, unit: null}")
        check_keys(node, ("column", "unit", "format"), "timestamp")
        unit = node.get("unit")
        if unit is not None:
            choice(unit, EPOCH_UNITS, "timestamp.unit")
        return cls(column=column_name(node.get("column"), "timestamp.column"), unit=unit, format=node.get("format"))


@dataclass(frozen=True)
class FieldSpec:
    """One feature column of the events.

    Attributes:
        name: canonical column name (the YAML key).
        column: raw column name.
        type: categorical | numeric | timestamp | text.
        outcome: the value is not known when the event is requested (e.g. decline code): a head scoring an
            event may use it from earlier events only.
        min, max: allowed range (numeric only); values outside are a validation problem.
        allow_null: nulls are fine (otherwise a validation problem).
        allow_nan: NaN/inf are fine (numeric only; otherwise a validation problem).
        min_count: minimum frequency for a vocabulary entry (categorical/text; used by the tokenizer).
        unit, format: parsing of timestamp fields, as in `TimestampSpec`.
        extra: tokenizer options of this field (`ENCODER_OPTIONS`: bins, num_bins, log, max_vocab, vocab_size,
            max_tokens), given next to the other keys or under `extra:`.
    """

    name: str
    column: str
    type: str
    outcome: bool = False
    min: float | None = None
    max: float | None = None
    allow_null: bool = True
    allow_nan: bool = False
    min_count: int | None = None
    unit: str | None = None
    format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_node(cls, name: str, node: Any) -> FieldSpec:
        key = f"fields.{name}"
        node = {"type": node} if isinstance(node, str) else mapping(node, key)
        check_keys(node, (*_FIELD_KEYS, *ENCODER_OPTIONS), key)
        extra = {k: node[k] for k in ENCODER_OPTIONS if k in node}
        extra_node = mapping(node.get("extra"), f"{key}.extra")
        check_keys(extra_node, ENCODER_OPTIONS, f"{key}.extra")
        extra.update(extra_node)
        if "type" not in node:
            raise SchemaError(f"{key}.type: required; one of {', '.join(FIELD_TYPES)}")
        ftype = choice(node["type"], FIELD_TYPES, f"{key}.type")
        lo, hi = number(node.get("min"), f"{key}.min"), number(node.get("max"), f"{key}.max")
        if (lo is not None or hi is not None) and ftype != "numeric":
            raise SchemaError(f"{key}: min/max only apply to numeric fields, this one is {ftype}")
        if lo is not None and hi is not None and lo > hi:
            raise SchemaError(f"{key}: min {lo} is greater than max {hi}")
        allow_nan = boolean(node.get("allow_nan", False), f"{key}.allow_nan")
        if allow_nan and ftype != "numeric":
            raise SchemaError(f"{key}.allow_nan: only applies to numeric fields, this one is {ftype}")
        min_count = node.get("min_count")
        if min_count is not None and (isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1):
            raise SchemaError(f"{key}.min_count: expected an integer >= 1, got {min_count!r}")
        unit = node.get("unit")
        if unit is not None and (ftype != "timestamp" or unit not in EPOCH_UNITS):
            raise SchemaError(f"{key}.unit: only for timestamp fields, one of {', '.join(EPOCH_UNITS)}; got {unit!r}")
        return cls(name=name, column=column_name(node.get("column", name), f"{key}.column"), type=ftype,
                   outcome=boolean(node.get("outcome", False), f"{key}.outcome"), min=lo, max=hi,
                   allow_null=boolean(node.get("allow_null", True), f"{key}.allow_null"), allow_nan=allow_nan,
                   min_count=min_count, unit=unit, format=node.get("format"), extra=extra)


@dataclass(frozen=True)
class EntitySpec:
    """An entity whose events form a sequence. `aggregate` entities are bucketed (one event per `bucket`)."""

    type: str
    column: str
    representation: str = "events"
    bucket: str | None = None
    bucket_ms: int | None = None

    @property
    def id_column(self) -> str:
        """Canonical column name of the entity key, e.g. `customer_id`."""
        return f"{self.type}_id"

    @classmethod
    def from_node(cls, etype: str, node: Any) -> EntitySpec:
        key = f"entities.{etype}"
        choice(etype, ENTITY_TYPES, f"{key} (entity type)")
        node = {"column": node} if isinstance(node, str) else mapping(node, key)
        check_keys(node, ("column", "representation", "bucket"), key)
        rep = choice(node.get("representation", "events"), REPRESENTATIONS, f"{key}.representation")
        bucket = node.get("bucket")
        if rep == "aggregate" and bucket is None:
            raise SchemaError(f"{key}.bucket: required with representation 'aggregate', e.g. bucket: 1h")
        if rep == "events" and bucket is not None:
            raise SchemaError(f"{key}.bucket: only applies to representation 'aggregate'")
        bucket_ms = parse_duration(bucket, f"{key}.bucket") if bucket is not None else None
        if bucket_ms == 0:
            raise SchemaError(f"{key}.bucket: must be a positive duration, got {bucket!r}")
        return cls(type=etype, column=column_name(node.get("column"), f"{key}.column"), representation=rep,
                   bucket=None if bucket is None else str(bucket), bucket_ms=bucket_ms)


@dataclass(frozen=True)
class DerivedLabel:
    """A label set by outcome events of the stream, e.g. a dispute marking the charge it contests.

    With `ref` the outcome event names the marked event's id in that field; without it, the marked event is
    the latest non-outcome event at or before the outcome that shares every `match` entity (an entity type)
    or field value (e.g. amount) with it, no more than `within` earlier (foundation/data/derived_labels.py).
    """

    field: str
    values: tuple[str, ...]
    ref: str | None = None
    match: tuple[str, ...] = ()
    within_ms: int | None = None

    @classmethod
    def from_node(cls, node: Any, key: str) -> DerivedLabel:
        node = mapping(node, key)
        check_keys(node, ("field", "values", "ref", "match", "within"), key)
        if not node.get("field") or not node.get("values"):
            raise SchemaError(f"{key}: needs `field` (the categorical field of the outcome events) and `values` "
                              f"(its values that mark an event), e.g. {{field: event_type, values: [dispute]}}")
        values = node["values"]
        values = (str(values),) if isinstance(values, str) else tuple(str(v) for v in values)
        match = node.get("match")
        match = (str(match),) if isinstance(match, str) else tuple(str(m) for m in (match or ()))
        if node.get("ref") is None and not match:
            raise SchemaError(f"{key}: give `ref` (the field naming the marked event's id) or `match` (entity "
                              f"types or fields the marked event shares with the outcome, e.g. [customer, merchant])")
        within = node.get("within")
        return cls(field=str(node["field"]), values=values, ref=None if node.get("ref") is None else str(node["ref"]),
                   match=match, within_ms=None if within is None else parse_duration(within, f"{key}.within"))


@dataclass(frozen=True)
class LabelSpec:
    """A target; never a feature. Canonical type float64, null when unknown.

    Either a raw `column`, or `from_events` (a `DerivedLabel`): 1 on the events the outcome events mark, 0 on
    the other events, null on the outcome events themselves.
    """

    name: str
    column: str | None
    from_events: DerivedLabel | None = None

    @classmethod
    def from_node(cls, name: str, node: Any) -> LabelSpec:
        key = f"labels.{name}"
        node = {"column": node} if isinstance(node, str) else mapping(node, key)
        check_keys(node, ("column", "from_events"), key)
        if node.get("from_events") is not None:
            if node.get("column") is not None:
                raise SchemaError(f"{key}: give `column` or `from_events`, not both")
            return cls(name=name, column=None, from_events=DerivedLabel.from_node(node["from_events"],
                                                                                    f"{key}.from_events"))
        return cls(name=name, column=column_name(node.get("column", name), f"{key}.column"))


@dataclass(frozen=True)
class LabelEvents:
    """Positive labels that become events of the sequences once they land (foundation/data/label_events.py).

    Attributes:
        labels: the labels whose positives become events, at event time + `splits.label_delay`.
        field: the categorical outcome field the label events carry (the label's name; null on other events).
            It has no raw column: the framework adds it to the schema's fields.
    """

    labels: tuple[str, ...]
    field: str = "landed_label"

    @classmethod
    def from_node(cls, node: Any) -> LabelEvents:
        key = "label_events"
        if isinstance(node, (list, tuple, str)):
            node = {"labels": node}
        node = mapping(node, key)
        check_keys(node, ("labels", "field"), key)
        labels = node.get("labels")
        labels = (str(labels),) if isinstance(labels, str) else tuple(str(v) for v in (labels or ()))
        if not labels:
            raise SchemaError(f"{key}.labels: name at least one label whose positives become events, "
                              f"e.g. label_events: {{labels: [is_fraud]}}")
        return cls(labels=labels, field=str(node.get("field", cls.field)))

    def field_spec(self) -> FieldSpec:
        """The field the label events carry: categorical, an outcome (never known when an event is scored)."""
        return FieldSpec(name=self.field, column=self.field, type="categorical", outcome=True)

