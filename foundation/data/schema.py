"""The data schema: how a raw event dataset maps onto the canonical event table.

A dataset is described once, in `conf/data/<name>.yaml` (docs/architecture.md section 1), and every stage
reads that description through `DataSchema`. Building a schema checks the config itself (unknown field type,
no entity, misordered splits, ...) and raises a `SchemaError` naming the config key; problems in the *data*
are found later by `foundation.data.validate` and raise `DataValidationError`.

Example:
    >>> schema = DataSchema.from_config({
    ...     "name": "tiny", "source": {"path": "events.csv"}, "timestamp": "ts",
    ...     "entities": {"customer": "card"}, "fields": {"amount": {"type": "numeric", "min": 0}}})
    >>> schema.canonical_schema().names
    ['event_id', 'event_time', 'customer_id', 'amount']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

FIELD_TYPES = ("categorical", "numeric", "timestamp", "text")
ENTITY_TYPES = ("customer", "merchant", "issuer")
REPRESENTATIONS = ("events", "aggregate")
EPOCH_UNITS = ("s", "ms", "us", "ns")
SOURCE_FORMATS = ("parquet", "csv")
ON_ERROR = ("raise", "quarantine")
SPLIT_NAMES = ("pretrain", "train", "validation", "test")

# Canonical and encoded column names owned by the pipeline; a field or label with one of these names would
# silently overwrite it downstream (docs/architecture.md sections 2-5).
RESERVED_NAMES = frozenset(
    {"event_id", "event_time", "entity_type", "entity_id", "length", "lengths", "attention_mask",
     "entity_index", "hour", "dow", "time", "time_gap", "time_gap_bin"} | {f"{e}_id" for e in ENTITY_TYPES}
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
_DURATION_UNITS_MS = {
    "ms": 1, "milli": 1, "millis": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1_000, "sec": 1_000, "second": 1_000, "seconds": 1_000,
    "t": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}

_FIELD_KEYS = ("column", "type", "outcome", "min", "max", "allow_null", "allow_nan", "min_count", "unit",
               "format", "extra")
_TOP_KEYS = ("name", "source", "timestamp", "event_id", "entities", "fields", "labels", "splits", "validation")


class SchemaError(ValueError):
    """The dataset config itself is wrong; the message starts with the offending config key."""


class DataValidationError(ValueError):
    """The data does not match the schema (missing columns, bad values); see `foundation.data.validate`.

    Attributes:
        problems: one entry per problem found (`foundation.data.validate.Problem`); empty for missing columns.
    """

    def __init__(self, message: str, problems: Sequence[Any] = ()):
        super().__init__(message)
        self.problems = list(problems)


def parse_duration(value: Any, key: str) -> int:
    """Parse a pandas-like duration ("1h", "15min", "1d", "500ms", "2w") to milliseconds.

    Args:
        value: the duration string; 0 is accepted for "no duration".
        key: config key, named in the error.
    Returns:
        the duration in milliseconds (>= 0).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0
    match = _DURATION_RE.match(str(value)) if isinstance(value, str) else None
    unit = match.group(2) if match else ""
    if unit in ("m", "M"):
        raise SchemaError(f"{key}: duration {value!r} is ambiguous; write minutes as 'min' (months have no fixed length)")
    if not match or unit.lower() not in _DURATION_UNITS_MS:
        raise SchemaError(f"{key}: cannot parse duration {value!r}; expected a number and a unit, "
                          f"e.g. '500ms', '30s', '15min', '1h', '7d', '2w'")
    return int(round(float(match.group(1)) * _DURATION_UNITS_MS[unit.lower()]))


def _parse_datetime(value: Any, key: str) -> datetime:
    """ISO date/datetime (or a YAML date) -> naive UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            # Python 3.10's fromisoformat rejects a trailing Z.
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise SchemaError(f"{key}: cannot parse {value!r} as an ISO date, e.g. '2024-01-31' or "
                              f"'2024-01-31T12:00:00'") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _check_keys(node: Mapping, known: Sequence[str], key: str, allow_unknown: bool = False) -> dict:
    """Unknown keys are an error (or returned as extras) but a near miss of a known key is always an error."""
    unknown = {k: v for k, v in node.items() if k not in known}
    for name in unknown:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.75)
        if close or not allow_unknown:
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            raise SchemaError(f"{key}.{name}: unknown key{hint}")
    return unknown


def _mapping(node: Any, key: str) -> dict:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise SchemaError(f"{key}: expected a mapping, got {type(node).__name__} {node!r}")
    return dict(node)


def _choice(value: Any, choices: Sequence[str], key: str) -> str:
    if value not in choices:
        raise SchemaError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{key}: expected true or false, got {value!r}")
    return value


def _number(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _column(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{key}: expected a column name (non-empty string), got {value!r}")
    return value


@dataclass(frozen=True)
class SourceSpec:
    """Where the raw events live. `path` is a file, a folder (hive partitions allowed) or a glob."""

    path: str
    format: str = "parquet"
    delimiter: str = ","  # CSV only
    null_values: tuple[str, ...] = ("", "NULL", "null")  # CSV only; NaN stays NaN so the NaN check sees it

    @classmethod
    def from_node(cls, node: Any) -> SourceSpec:
        node = _mapping(node, "source") if not isinstance(node, str) else {"path": node}
        _check_keys(node, ("path", "format", "delimiter", "null_values"), "source")
        path = node.get("path")
        if not isinstance(path, str) or not path:
            raise SchemaError(f"source.path: expected a file, folder or glob, got {path!r}")
        fmt = node.get("format") or ("csv" if re.search(r"\.csv(\.gz|\.bz2|\.zst)?$", path) else "parquet")
        nulls = node.get("null_values", cls.null_values)
        return cls(path=path, format=_choice(fmt, SOURCE_FORMATS, "source.format"),
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
        node = {"column": node} if isinstance(node, str) else _mapping(node, "timestamp")
        if not node:
            raise SchemaError("timestamp: required; e.g. timestamp: {column: ts, unit: null}")
        _check_keys(node, ("column", "unit", "format"), "timestamp")
        unit = node.get("unit")
        if unit is not None:
            _choice(unit, EPOCH_UNITS, "timestamp.unit")
        return cls(column=_column(node.get("column"), "timestamp.column"), unit=unit, format=node.get("format"))


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
        extra: free encoder options (e.g. bins, max_tokens), passed through untouched.
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
        node = {"type": node} if isinstance(node, str) else _mapping(node, key)
        extra = _check_keys(node, _FIELD_KEYS, key, allow_unknown=True)
        extra.update(_mapping(node.get("extra"), f"{key}.extra"))
        if "type" not in node:
            raise SchemaError(f"{key}.type: required; one of {', '.join(FIELD_TYPES)}")
        ftype = _choice(node["type"], FIELD_TYPES, f"{key}.type")
        lo, hi = _number(node.get("min"), f"{key}.min"), _number(node.get("max"), f"{key}.max")
        if (lo is not None or hi is not None) and ftype != "numeric":
            raise SchemaError(f"{key}: min/max only apply to numeric fields, this one is {ftype}")
        if lo is not None and hi is not None and lo > hi:
            raise SchemaError(f"{key}: min {lo} is greater than max {hi}")
        allow_nan = _bool(node.get("allow_nan", False), f"{key}.allow_nan")
        if allow_nan and ftype != "numeric":
            raise SchemaError(f"{key}.allow_nan: only applies to numeric fields, this one is {ftype}")
        min_count = node.get("min_count")
        if min_count is not None and (isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1):
            raise SchemaError(f"{key}.min_count: expected an integer >= 1, got {min_count!r}")
        unit = node.get("unit")
        if unit is not None and (ftype != "timestamp" or unit not in EPOCH_UNITS):
            raise SchemaError(f"{key}.unit: only for timestamp fields, one of {', '.join(EPOCH_UNITS)}; got {unit!r}")
        return cls(name=name, column=_column(node.get("column", name), f"{key}.column"), type=ftype,
                   outcome=_bool(node.get("outcome", False), f"{key}.outcome"), min=lo, max=hi,
                   allow_null=_bool(node.get("allow_null", True), f"{key}.allow_null"), allow_nan=allow_nan,
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
        _choice(etype, ENTITY_TYPES, f"{key} (entity type)")
        node = {"column": node} if isinstance(node, str) else _mapping(node, key)
        _check_keys(node, ("column", "representation", "bucket"), key)
        rep = _choice(node.get("representation", "events"), REPRESENTATIONS, f"{key}.representation")
        bucket = node.get("bucket")
        if rep == "aggregate" and bucket is None:
            raise SchemaError(f"{key}.bucket: required with representation 'aggregate', e.g. bucket: 1h")
        if rep == "events" and bucket is not None:
            raise SchemaError(f"{key}.bucket: only applies to representation 'aggregate'")
        bucket_ms = parse_duration(bucket, f"{key}.bucket") if bucket is not None else None
        if bucket_ms == 0:
            raise SchemaError(f"{key}.bucket: must be a positive duration, got {bucket!r}")
        return cls(type=etype, column=_column(node.get("column"), f"{key}.column"), representation=rep,
                   bucket=None if bucket is None else str(bucket), bucket_ms=bucket_ms)


@dataclass(frozen=True)
class LabelSpec:
    """A target column; never a feature. Canonical type float64, null when unknown."""

    name: str
    column: str

    @classmethod
    def from_node(cls, name: str, node: Any) -> LabelSpec:
        key = f"labels.{name}"
        node = {"column": node} if isinstance(node, str) else _mapping(node, key)
        _check_keys(node, ("column",), key)
        return cls(name=name, column=_column(node.get("column", name), f"{key}.column"))


@dataclass(frozen=True)
class Period:
    """A half-open time period [start, end) in naive UTC."""

    start: datetime
    end: datetime

    @property
    def start_ms(self) -> int:
        return _epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _epoch_ms(self.end)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


@dataclass(frozen=True)
class Splits:
    """Out-of-time splits. Each period optional; those given must be ordered pretrain <= validation and
    train + label_delay <= validation + label_delay <= test, so no label used for fitting lands in a later period."""

    pretrain: Period | None = None
    train: Period | None = None
    validation: Period | None = None
    test: Period | None = None
    label_delay: str = "0d"
    label_delay_ms: int = 0

    def period(self, name: str) -> Period:
        """The named period; SchemaError when the config does not define it."""
        found = getattr(self, _choice(name, SPLIT_NAMES, "splits (period name)"))
        if found is None:
            raise SchemaError(f"splits.{name}: not defined in the dataset config")
        return found

    @classmethod
    def from_node(cls, node: Any) -> Splits:
        node = _mapping(node, "splits")
        _check_keys(node, (*SPLIT_NAMES, "label_delay"), "splits")
        delay = node.get("label_delay", "0d")
        delay_ms = parse_duration(delay, "splits.label_delay")
        periods: dict[str, Period] = {}
        for name in SPLIT_NAMES:
            if node.get(name) is None:
                continue
            sub = _mapping(node[name], f"splits.{name}")
            _check_keys(sub, ("start", "end"), f"splits.{name}")
            for bound in ("start", "end"):
                if sub.get(bound) is None:
                    raise SchemaError(f"splits.{name}.{bound}: required (ISO date)")
            period = Period(_parse_datetime(sub["start"], f"splits.{name}.start"),
                            _parse_datetime(sub["end"], f"splits.{name}.end"))
            if period.start >= period.end:
                raise SchemaError(f"splits.{name}: start {period.start} must be before end {period.end}")
            periods[name] = period
        _check_split_order(periods, delay_ms, str(delay))
        return cls(**periods, label_delay=str(delay), label_delay_ms=delay_ms)


def _check_split_order(periods: dict[str, Period], delay_ms: int, delay: str) -> None:
    chain = [name for name in ("train", "validation", "test") if name in periods]
    for before, after in zip(chain, chain[1:]):
        need = periods[before].end_ms + delay_ms
        if periods[after].start_ms < need:
            raise SchemaError(
                f"splits.{after}.start: {periods[after].start} must not be before splits.{before}.end "
                f"({periods[before].end}) + label_delay ({delay}): {after} must start after {before} ends and its "
                f"labels have arrived")
    later = [name for name in ("validation", "test") if name in periods]
    if "pretrain" in periods and later and periods["pretrain"].end > periods[later[0]].start:
        raise SchemaError(f"splits.pretrain.end: {periods['pretrain'].end} is after splits.{later[0]}.start "
                          f"({periods[later[0]].start}); pretraining must not see the {later[0]} period")


@dataclass(frozen=True)
class ValidationPolicy:
    """What to do with rows that fail validation: raise, or quarantine them to `<quarantine_dir>/<reason>.parquet`."""

    on_error: str = "raise"
    quarantine_dir: str | None = None

    @classmethod
    def from_node(cls, node: Any) -> ValidationPolicy:
        node = _mapping(node, "validation")
        _check_keys(node, ("on_error", "quarantine_dir"), "validation")
        on_error = _choice(node.get("on_error", "raise"), ON_ERROR, "validation.on_error")
        qdir = node.get("quarantine_dir")
        if on_error == "quarantine" and not qdir:
            raise SchemaError("validation.quarantine_dir: required when on_error is 'quarantine'")
        return cls(on_error=on_error, quarantine_dir=None if qdir is None else str(qdir))


@dataclass(frozen=True)
class DataSchema:
    """A dataset description: source, timestamp, entities, fields, labels, splits and validation policy.

    Build it with `DataSchema.from_config(cfg.data)` inside a Hydra app or `DataSchema.from_yaml(path)`.
    Unknown top-level keys (settings of later stages) are kept in `extra`.
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
    extra: dict[str, Any] = field(default_factory=dict)

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
        extra = _check_keys(node, _TOP_KEYS, "data", allow_unknown=True)
        name = node.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SchemaError(f"name: expected a dataset name (letters, digits, _), got {name!r}")
        if "source" not in node:
            raise SchemaError("source: required; e.g. source: {path: data/events.parquet, format: parquet}")
        entities_node = _mapping(node.get("entities"), "entities")
        if not entities_node:
            raise SchemaError(f"entities: at least one entity is required, e.g. entities: {{customer: {{column: "
                              f"card_id}}}}; types: {', '.join(ENTITY_TYPES)}")
        # Canonical order customer, merchant, issuer whatever the YAML order, so tables line up across datasets.
        entities = {e: EntitySpec.from_node(e, entities_node[e]) for e in ENTITY_TYPES if e in entities_node}
        for etype in entities_node:
            if etype not in ENTITY_TYPES:
                EntitySpec.from_node(str(etype), entities_node[etype])  # raises the unknown-type error
        fields = {n: FieldSpec.from_node(n, v) for n, v in _mapping(node.get("fields"), "fields").items()}
        labels = {n: LabelSpec.from_node(n, v) for n, v in _mapping(node.get("labels"), "labels").items()}
        event_id = node.get("event_id")
        if event_id is not None:
            event_id = _column(event_id, "event_id")
        schema = cls(name=name, source=SourceSpec.from_node(node["source"]),
                     timestamp=TimestampSpec.from_node(node.get("timestamp")), entities=entities, fields=fields,
                     labels=labels, event_id=event_id, splits=Splits.from_node(node.get("splits")),
                     validation=ValidationPolicy.from_node(node.get("validation")), extra=extra)
        schema._check_names()
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

    @property
    def column_keys(self) -> dict[str, str]:
        """Raw column -> the config key that names it (first one wins), in canonical order."""
        keys: dict[str, str] = {}
        pairs = [("event_id", self.event_id), ("timestamp.column", self.timestamp.column)]
        pairs += [(f"entities.{e.type}.column", e.column) for e in self.entities.values()]
        pairs += [(f"fields.{f.name}.column", f.column) for f in self.fields.values()]
        pairs += [(f"labels.{lb.name}.column", lb.column) for lb in self.labels.values()]
        for key, column in pairs:
            if column is not None:
                keys.setdefault(column, key)
        return keys

    @property
    def raw_columns(self) -> list[str]:
        """The raw columns the schema reads, deduplicated, in canonical order."""
        return list(self.column_keys)

    def canonical_schema(self) -> pa.Schema:
        """The arrow schema of the canonical event table (docs/architecture.md section 2)."""
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
