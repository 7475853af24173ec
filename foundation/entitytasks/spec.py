"""Entity task specs: `conf/task/<name>.yaml` with `kind: entity`, read into `EntityTaskSpec`.

An entity task asks, for an entity (merchant, customer, issuer) as of a date, what happens to it over the next
`horizon`. Everything is named from the data schema (fields, labels, entity types), never from raw columns, so
one YAML serves every dataset whose schema has the fields; a target lists alternatives tried in order (e.g.
dispute events where the data has them, else the delayed fraud label), and a task whose every alternative needs
a field or label the schema lacks is skipped with the reason (`EntityTaskSpec.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from foundation.data.config_values import parse_duration
from foundation.data.schema import DataSchema
from foundation.evaluation.splits import _plain_config

PROBLEMS = ("binary", "regression", "multiclass")
MEASURES = ("count", "rate", "label_rate", "shift")
OPS = {">": "greater", ">=": "greater_equal", "<": "less", "<=": "less_equal", "==": "equal"}


@dataclass(frozen=True)
class Selection:
    """Which events count: those whose schema `field` is one of `values` (no field: every event).

    `if_missing` says what a schema without the field means: "all" counts every event (a dataset whose rows
    are all charges), "unsupported" makes what reads the selection unavailable on that schema.
    """

    field: str | None = None
    values: tuple[str, ...] = ()
    if_missing: str = "unsupported"

    @classmethod
    def from_config(cls, cfg: Any) -> Selection:
        if cfg is None:
            return cls()
        if cfg.get("field") and not cfg.get("values"):
            raise ValueError(f"selection {cfg}: `values` is required with `field`")
        if cfg.get("if_missing", "unsupported") not in ("all", "unsupported"):
            raise ValueError(f"selection {cfg}: if_missing must be 'all' or 'unsupported'")
        return cls(cfg.get("field"), tuple(str(v) for v in cfg.get("values") or ()),
                   str(cfg.get("if_missing", "unsupported")))

    def on(self, schema: DataSchema) -> Selection | None:
        """This selection on `schema`: itself, every event (missing field, if_missing all), or None."""
        if self.field is None or self.field in schema.fields:
            return self
        return Selection() if self.if_missing == "all" else None


@dataclass(frozen=True)
class TargetSpec:
    """What the target of an (entity, as-of) example is, over the events in (as_of, as_of + horizon].

    measure:
        count: events of `events`; rate: events of `events` / events of `denominator`;
        label_rate: mean of `label` over the `denominator` events whose label is known (read only once the
            schema's label delay has passed: the schedule keeps as_of + horizon + delay inside the split);
        shift: rate next horizon vs the rate over the `baseline` before as_of (log ratio, smoothed).
    problem: binary (value compared with `positive`), regression (the value), multiclass (class index of the
        value between `edges`; `classes` names them).
    min_denominator: examples with fewer denominator events in a window are dropped (an undefined rate).
    """

    measure: str
    problem: str
    events: Selection = field(default_factory=Selection)
    denominator: Selection = field(default_factory=Selection)
    label: str | None = None
    min_denominator: int = 1
    positive: tuple[str, float] | None = None
    edges: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()
    baseline: int | None = None  # ms, shift only

    @classmethod
    def from_config(cls, cfg: dict) -> TargetSpec:
        measure, problem = cfg.get("measure"), cfg.get("problem")
        if measure not in MEASURES:
            raise ValueError(f"target.measure must be one of {MEASURES}, got {measure!r}")
        if problem not in PROBLEMS:
            raise ValueError(f"target.problem must be one of {PROBLEMS}, got {problem!r}")
        positive = cfg.get("positive")
        if problem == "binary":
            if not positive or positive.get("op") not in OPS:
                raise ValueError(f"a binary target needs positive: {{op: one of {list(OPS)}, value}}, got {positive}")
            positive = (str(positive["op"]), float(positive["value"]))
        edges = tuple(float(e) for e in cfg.get("edges") or ())
        classes = tuple(str(c) for c in cfg.get("classes") or ())
        if problem == "multiclass" and (not edges or len(classes) != len(edges) + 1 or list(edges) != sorted(edges)):
            raise ValueError(f"a multiclass target needs sorted edges and len(edges) + 1 classes, got {edges}, "
                             f"{classes}")
        if measure == "label_rate" and not cfg.get("label"):
            raise ValueError("target.measure label_rate needs `label`")
        baseline = cfg.get("baseline")
        if measure == "shift" and not baseline:
            raise ValueError("target.measure shift needs `baseline` (e.g. 28d)")
        return cls(measure, problem, Selection.from_config(cfg.get("events")),
                   Selection.from_config(cfg.get("denominator")), cfg.get("label"),
                   int(cfg.get("min_denominator", 1)), positive, edges, classes,
                   parse_duration(baseline, "target.baseline") if baseline else None)

    def on(self, schema: DataSchema) -> tuple[TargetSpec | None, str]:
        """This target with its selections resolved on `schema`, or (None, why it cannot be computed)."""
        events, denominator = self.events.on(schema), self.denominator.on(schema)
        if self.measure in ("count", "rate", "shift") and events is None:
            return None, f"no field {self.events.field!r}"
        if denominator is None and self.measure != "count":
            return None, f"no field {self.denominator.field!r}"
        if self.measure == "label_rate" and self.label not in schema.labels:
            return None, f"no label {self.label!r}"
        return TargetSpec(self.measure, self.problem, events or Selection(), denominator or Selection(),
                          self.label, self.min_denominator, self.positive, self.edges, self.classes,
                          self.baseline), ""

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.problem == "multiclass" else 1


@dataclass(frozen=True)
class EntityTaskSpec:
    """An entity task (conf/task/<name>.yaml, kind: entity).

    Attributes:
        name: task name.
        entity: entity type of the schema whose members are the examples.
        every: ms between as-of dates, from each split period's start.
        horizon: ms after as_of that the target reads.
        targets: target alternatives, the first the schema supports is used.
        active_within: ms; an entity is an example at as_of when it has a `population` event in
            (as_of - active_within, as_of].
        population: which events make an entity active.
        max_entities: seeded subsample of the active entities at each as-of date (None: all).
        aggregates: the hand-crafted features of the baseline (foundation.entitytasks.aggregates).
        heads: settings of the heads per name (probe, mlp, gbdt, baseline), over the code's defaults.
        label_fractions: shares of the training entities for the label-efficiency curve.
        lookback: ms before as_of of the earlier states the entity embedding adds (empty: the state as of the
            date alone); e.g. (7d, 30d) gives the heads the entity's trajectory, not only where it is now.
        hazard: ms horizons of the pretrained time head's survival columns the embedding adds (empty: none;
            foundation.entitytasks.hazard).
    """

    name: str
    entity: str
    every: int
    horizon: int
    targets: tuple[TargetSpec, ...]
    active_within: int
    population: Selection = field(default_factory=Selection)
    max_entities: int | None = None
    aggregates: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)
    label_fractions: tuple[float, ...] = (1.0,)
    lookback: tuple[int, ...] = ()
    hazard: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> EntityTaskSpec:
        """From a task config (dict, DictConfig or YAML path) whose `kind` is `entity`."""
        cfg = _plain_config(cfg)
        if cfg.get("kind") != "entity":
            raise ValueError(f"task {cfg.get('name')}: not an entity task (kind: {cfg.get('kind')!r})")
        missing = [k for k in ("name", "entity", "schedule", "horizon", "target") if not cfg.get(k)]
        if missing:
            raise ValueError(f"entity task {cfg.get('name')}: missing {missing}")
        targets = cfg["target"] if isinstance(cfg["target"], list) else [cfg["target"]]
        population = cfg.get("population") or {}
        max_entities = cfg.get("max_entities")
        return cls(
            name=str(cfg["name"]), entity=str(cfg["entity"]),
            every=parse_duration(cfg["schedule"]["every"], "schedule.every"),
            horizon=parse_duration(cfg["horizon"], "horizon"),
            targets=tuple(TargetSpec.from_config(t) for t in targets),
            active_within=parse_duration(population.get("active_within", "90d"), "population.active_within"),
            population=Selection.from_config(population.get("events")),
            max_entities=int(max_entities) if max_entities else None,
            aggregates=dict(cfg.get("aggregates") or {}), heads=dict(cfg.get("heads") or {}),
            label_fractions=tuple(float(f) for f in cfg.get("label_fractions") or (1.0,)),
            lookback=_durations(cfg, "lookback"), hazard=_durations(cfg, "hazard"),
        )

    def resolve(self, schema: DataSchema) -> tuple[TargetSpec | None, str]:
        """The first target alternative `schema` supports, or (None, why the task cannot run on it)."""
        if self.entity not in schema.entities:
            return None, f"the schema has no entity {self.entity!r} (has {list(schema.entities)})"
        if self.population.on(schema) is None:
            return None, f"population: no field {self.population.field!r}"
        reasons = []
        for target in self.targets:
            resolved, why = target.on(schema)
            if resolved is not None:
                return resolved, ""
            reasons.append(why)
        return None, "no target alternative fits the schema: " + "; ".join(reasons)


def _durations(cfg: dict, key: str) -> tuple[int, ...]:
    """`embedding.<key>` (lookback, hazard) in ms: positive, distinct durations."""
    values = (cfg.get("embedding") or {}).get(key) or ()
    durations = tuple(parse_duration(d, f"embedding.{key}") for d in values)
    if any(ms <= 0 for ms in durations) or len(set(durations)) != len(durations):
        raise ValueError(f"entity task {cfg.get('name')}: embedding.{key} must hold distinct positive durations "
                         f"(e.g. [7d, 30d]), got {list(values)}")
    return durations


def is_entity_task(cfg: Any) -> bool:
    """Whether a task config (dict/DictConfig) is an entity task."""
    return cfg is not None and cfg.get("kind") == "entity"
