"""Task examples and the out-of-time evaluation protocol.

A task (conf/task/<name>.yaml) says which events are scored (e.g. charge attempts), which label they carry
and which entities feed its features. The data schema's `splits` say when: the head trains on the `train`
period, picks its threshold and early-stopping round on `validation`, and is scored once on `test`. Each
period's labels arrive `label_delay` after the event (a fraud label is a dispute that lands days later), so
each later period starts at least `label_delay` after the earlier one ends: every label the model learns from
was known before the first event it is scored on.

The schema is the dataset's `foundation.data.schema.DataSchema`: its `splits` hold the four periods
(half-open) and the label delay, its `labels` and `entities` what a task may name, its `fields` the
example filter's field.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import SPLIT_NAMES, DataSchema, parse_duration

log = logging.getLogger(__name__)

class LeakageError(ValueError):
    """The schema's time splits would let labels or events of a later period reach an earlier one."""


def to_timedelta(value: Any, name: str = "duration") -> np.timedelta64:
    """A duration as numpy milliseconds.

    Args:
        value: a duration string as the data schema writes them ("15min", "1h", "7d", "2w";
            foundation.data.schema.parse_duration), a datetime.timedelta, a numpy/pandas timedelta,
            or None / 0 (no duration).
        name: what the value is, for the error message.

    Returns:
        np.timedelta64 in ms.
    """
    if value is None:
        return np.timedelta64(0, "ms")
    if isinstance(value, str):
        return np.timedelta64(parse_duration(value, name), "ms")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == 0:
        return np.timedelta64(0, "ms")
    if isinstance(value, (dt.timedelta, np.timedelta64)) or hasattr(value, "to_timedelta64"):
        td = value.to_timedelta64() if hasattr(value, "to_timedelta64") else np.timedelta64(value)
        return td.astype("timedelta64[ms]")
    raise TypeError(f"{name}: expected a duration string or timedelta, got {type(value).__name__} {value!r}")


def to_datetime(value: Any, name: str = "time") -> np.datetime64:
    """A point in time as naive-UTC numpy milliseconds (dates, datetimes, ISO strings, numpy/pandas)."""
    if value is None:
        raise ValueError(f"{name}: missing")
    if hasattr(value, "to_datetime64"):
        value = value.to_datetime64()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    try:
        return np.datetime64(value, "ms")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: cannot read {value!r} as a date/time") from err


@dataclass(frozen=True)
class Period:
    """A half-open time range [start, end)."""

    name: str
    start: np.datetime64
    end: np.datetime64

    def mask(self, times: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Boolean mask of `times` (timestamp[ms]) inside the period."""
        start = pa.scalar(self.start.astype(dt.datetime), pa.timestamp("ms"))
        end = pa.scalar(self.end.astype(dt.datetime), pa.timestamp("ms"))
        return pc.and_(pc.greater_equal(times, start), pc.less(times, end))


def schema_period(schema: DataSchema, name: str) -> Period:
    """The named period (`pretrain`, `train`, `validation`, `test`) of the schema's splits, as numpy ms.

    Raises:
        SchemaError: the dataset config defines no such period.
        LeakageError: the period (built in code, past the config's checks) does not start before it ends.
    """
    period = schema.splits.period(name)
    start = to_datetime(period.start, f"splits.{name}.start")
    end = to_datetime(period.end, f"splits.{name}.end")
    if not start < end:
        raise LeakageError(f"splits.{name}: start {start} must be before end {end}")
    return Period(name, start, end)


def check_no_leakage(schema: DataSchema) -> None:
    """Raise LeakageError unless the schema's periods are ordered with the label-delay gaps.

    Requires pretrain.end <= validation.start (pretraining never sees validation/test events),
    train.end + label_delay <= validation.start (every train label has arrived before validation starts)
    and validation.end + label_delay <= test.start (the same for validation before test).
    """
    pretrain, train, validation, test = (schema_period(schema, name) for name in SPLIT_NAMES)
    delay = np.timedelta64(schema.splits.label_delay_ms, "ms")
    problems = []
    if pretrain.end > validation.start:
        problems.append(f"pretrain ends {pretrain.end}, after validation starts {validation.start}")
    if train.end + delay > validation.start:
        problems.append(
            f"train ends {train.end}; its labels arrive until {train.end + delay} (label_delay "
            f"{delay.astype('timedelta64[h]')}), after validation starts {validation.start}"
        )
    if validation.end + delay > test.start:
        problems.append(
            f"validation ends {validation.end}; its labels arrive until {validation.end + delay}, "
            f"after test starts {test.start}"
        )
    if problems:
        raise LeakageError("schema splits leak across periods: " + "; ".join(problems))


@dataclass(frozen=True)
class ExampleFilter:
    """Which events are examples: those whose `field` is one of `values`.

    `if_missing` says what to do when the schema has no such field: "error" raises, "skip" uses every
    event with a known label (e.g. a card-transaction dataset where every row is a charge).
    """

    field: str
    values: tuple[str, ...]
    if_missing: str = "error"

    def __post_init__(self) -> None:
        if self.if_missing not in ("error", "skip"):
            raise ValueError(f"examples.if_missing must be 'error' or 'skip', got {self.if_missing!r}")
        if not self.values:
            raise ValueError(f"examples.values is empty for field {self.field!r}")


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task: which events are scored, their label and the entities that feed its features.

    Attributes:
        name: task name (`fraud`, `authorization`).
        label: label column of the canonical table (float64, null = unknown).
        entities: entity types whose point-in-time state feeds the task features.
        examples: the event filter, or None for every labelled event.
        positive_value: the label value of the positive class.
        label_fractions: fractions of the train labels for the label-efficiency curve.
        velocity: raw config of the hand-crafted features (foundation.evaluation.velocity.VelocityConfig).
        gbdt: raw config of the LightGBM head (foundation.heads.gbdt.GBDTHead.from_config).
        slices: columns whose values the report breaks the test metrics down by (schema fields, or columns of
            the raw source the schema does not map, e.g. an annotation of how an event was generated).
        extra: any other keys of the task config (left to the heads that read them).
    """

    name: str
    label: str
    entities: tuple[str, ...]
    examples: ExampleFilter | None = None
    positive_value: float = 1.0
    label_fractions: tuple[float, ...] = (1.0,)
    velocity: dict = field(default_factory=dict)
    gbdt: dict = field(default_factory=dict)
    slices: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> TaskSpec:
        """Build from a task config: a dict, an OmegaConf DictConfig or a path to conf/task/<name>.yaml."""
        cfg = _plain_config(cfg)
        missing = [key for key in ("name", "label", "entities") if not cfg.get(key)]
        if missing:
            raise ValueError(f"task config: missing {missing}")
        examples = cfg.get("examples")
        if examples is not None:
            if not examples.get("field") or not examples.get("values"):
                raise ValueError(f"task {cfg['name']}: examples needs `field` and `values`, got {examples}")
            examples = ExampleFilter(
                field=str(examples["field"]),
                values=tuple(str(v) for v in examples["values"]),
                if_missing=str(examples.get("if_missing", "error")),
            )
        fractions = tuple(float(f) for f in cfg.get("label_fractions") or (1.0,))
        bad = [f for f in fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"task {cfg['name']}: label_fractions must be in (0, 1], got {bad}")
        known = {"name", "label", "entities", "examples", "positive_value", "label_fractions", "velocity", "gbdt",
                 "slices"}
        return cls(
            name=str(cfg["name"]),
            label=str(cfg["label"]),
            entities=tuple(str(e) for e in cfg["entities"]),
            examples=examples,
            positive_value=float(cfg.get("positive_value", 1.0)),
            label_fractions=fractions,
            velocity=dict(cfg.get("velocity") or {}),
            gbdt=dict(cfg.get("gbdt") or {}),
            slices=tuple(str(c) for c in cfg.get("slices") or ()),
            extra={k: v for k, v in cfg.items() if k not in known},
        )

    def validate(self, schema: DataSchema) -> None:
        """Raise ValueError naming the problem if the schema lacks the task's label or entities."""
        labels = list(schema.labels)
        if self.label not in labels:
            raise ValueError(f"task {self.name}: label {self.label!r} is not a label of the schema ({labels})")
        entities = list(schema.entities)
        absent = [e for e in self.entities if e not in entities]
        if absent:
            raise ValueError(f"task {self.name}: entities {absent} are not in the schema ({entities})")


def _plain_config(cfg: Any) -> dict:
    if isinstance(cfg, (str, bytes)) or hasattr(cfg, "__fspath__"):
        import yaml

        with open(cfg) as handle:
            return yaml.safe_load(handle)
    try:  # an OmegaConf node: resolve interpolations into plain containers
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        pass
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"task config: expected a mapping or a YAML path, got {type(cfg).__name__}")


def example_mask(events: pa.Table, schema: DataSchema, task: TaskSpec) -> pa.Array | None:
    """Mask of events that are examples of the task (None when every event qualifies)."""
    rule = task.examples
    if rule is None:
        return None
    if rule.field not in events.column_names:
        if rule.field in schema.fields or rule.if_missing == "error":
            raise ValueError(
                f"task {task.name}: example field {rule.field!r} is not a column of the event table "
                f"(columns: {events.column_names}); set examples.if_missing: skip or examples: null"
            )
        log.info("task %s: no %r field; every labelled event is an example", task.name, rule.field)
        return None
    column = events.column(rule.field)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.fill_null(pc.is_in(column, value_set=pa.array(rule.values, pa.string())), False)


def select_examples(
    events: pa.Table,
    schema: DataSchema,
    task: TaskSpec,
    split: str,
    label_cutoff: Any = None,
) -> pa.Table:
    """The task's labelled examples in one period of the out-of-time protocol.

    Args:
        events: canonical event table (validate output).
        schema: the data schema (its `splits` fix the periods and the label delay).
        task: the task spec.
        split: "train", "validation" or "test".
        label_cutoff: when the labels are read. An example at t counts only if its label arrived,
            t + label_delay <= label_cutoff. Default: the period's end + label_delay, i.e. every example of the
            period (check_no_leakage guarantees those labels arrived before the next period starts). Pass
            the period's end to train only on labels already known when the period closes.

    Returns:
        pa.Table sorted by (event_time, event_id), columns: `row` (int64 row of the event in `events`, to
        gather per-event features), `event_id`, `event_time`, one `<entity>_id` per task entity (null when
        the event has none), `label` (int8, 1 = positive class).
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be train, validation or test, got {split!r}")
    check_no_leakage(schema)
    task.validate(schema)
    required = ["event_id", "event_time", task.label] + [f"{e}_id" for e in task.entities]
    absent = [c for c in required if c not in events.column_names]
    if absent:
        raise ValueError(f"task {task.name}: event table lacks columns {absent} (has {events.column_names})")

    period = schema_period(schema, split)
    delay = np.timedelta64(schema.splits.label_delay_ms, "ms")
    cutoff = period.end + delay if label_cutoff is None else to_datetime(label_cutoff, "label_cutoff")
    times = events.column("event_time")
    if not pa.types.is_timestamp(times.type):
        raise ValueError(f"event_time must be a timestamp column, got {times.type}")
    times = pc.cast(times, pa.timestamp("ms"))
    label = pc.cast(events.column(task.label), pa.float64())

    mask = period.mask(times)
    mask = pc.and_(mask, pc.is_valid(label))
    mask = pc.and_(mask, pc.invert(pc.is_nan(pc.fill_null(label, 0.0))))
    rule = example_mask(events, schema, task)
    if rule is not None:
        mask = pc.and_(mask, rule)
    # labels that had not arrived by the cutoff are unknown to whoever trains at the cutoff
    latest = pa.scalar((cutoff - delay).astype(dt.datetime), pa.timestamp("ms"))
    mask = pc.and_(mask, pc.less_equal(times, latest))

    columns = {
        "row": pa.array(np.arange(len(events), dtype=np.int64)),
        "event_id": pc.cast(events.column("event_id"), pa.string()),
        "event_time": times,
        **{f"{e}_id": pc.cast(events.column(f"{e}_id"), pa.string()) for e in task.entities},
        "label": pc.cast(pc.equal(label, task.positive_value), pa.int8()),
    }
    table = pa.table(columns).filter(mask)
    table = table.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    labels = table.column("label").to_numpy()
    values = np.unique(events.column(task.label).drop_null().to_numpy(zero_copy_only=False))
    values = values[~np.isnan(values)]
    unexpected = values[~np.isin(values, [0.0, 1.0, task.positive_value])]
    if unexpected.size:
        raise ValueError(f"task {task.name}: label {task.label!r} has values {unexpected[:5]} besides 0/1")
    log.info(
        "task %s %s: %d examples, %d positive (%.3f%%), period [%s, %s)",
        task.name, split, len(table), int(labels.sum()), 100 * labels.mean() if len(labels) else 0.0,
        period.start, period.end,
    )
    return table


def subsample_labels(train_examples: pa.Table, fraction: float, seed: int = 0) -> pa.Table:
    """A stratified random subset of the train examples (label-efficiency curves).

    Keeps round(fraction * n) examples of each class (at least one of each class present), chosen without
    replacement with `seed`; nested across fractions for one seed (the 1% set is inside the 10% set).

    Args:
        train_examples: output of select_examples (needs a `label` column).
        fraction: in (0, 1].
        seed: random seed.

    Returns:
        The subset, in the original row order.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if "label" not in train_examples.column_names:
        raise ValueError("subsample_labels needs a `label` column (output of select_examples)")
    labels = train_examples.column("label").to_numpy(zero_copy_only=False)
    if fraction == 1.0:
        return train_examples
    rng = np.random.default_rng(seed)
    # one random priority per row, ranked within its class: the smallest priorities are kept, so a
    # larger fraction keeps a superset of a smaller one
    priority = rng.random(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):  # two classes: a loop over classes, not rows
        rows = np.flatnonzero(labels == value)
        n_keep = max(1, int(round(fraction * len(rows))))
        keep[rows[np.argsort(priority[rows], kind="stable")[:n_keep]]] = True
    return train_examples.filter(pa.array(keep))
