"""`FinetuneRun`: the pretrained model, the data, the examples and the frozen features of a run's tasks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import DictConfig

from foundation.evaluation.splits import TaskSpec, check_no_leakage, select_examples
from foundation.finetuning.examples import (
    SPLITS,
    bound_examples,
    check_classes,
    chosen_customers,
    labels_of,
    widening_hint,
)
from foundation.pointintime import (
    EventSurprise,
    ExampleStates,
    PointInTimeEncoder,
    PointInTimeStates,
    PretrainedRun,
    example_keys,
    example_states,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """A model's scores of the validation and test examples, trained on all labels (what a blend reads)."""

    validation: np.ndarray
    test: np.ndarray
    n_train: int


class FinetuneRun:
    """One fine-tune run: loads the pretrained run and its events, selects the examples of every usable task
    and computes their frozen point-in-time states once (shared by every frozen-feature head).

    Args:
        cfg: a finetune config (conf/finetune.yaml).
        tasks: the tasks to run (those whose label the dataset lacks are skipped with a warning).
    """

    def __init__(self, cfg: DictConfig, tasks: list[TaskSpec]):
        self.cfg = cfg
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        self._velocity: dict[str, Any] = {}
        self.predictions: dict[str, dict[str, Predictions]] = {}  # task -> model -> its all-label scores
        self.run = PretrainedRun.load(cfg.checkpoint)
        data = cfg.get("data")
        paths = {"root_dir": cfg.paths.root_dir, "data_dir": cfg.paths.data_dir} if data is not None else None
        self.schema, self.store, _ = self.run.store(self.run.data_config(data, paths))
        check_no_leakage(self.schema)
        from foundation.preparation import load_events

        self.events, _ = load_events(self.schema)
        self.tasks = [t for t in tasks if self._usable(t)]
        if not self.tasks:
            raise ValueError(f"none of the tasks {[t.name for t in tasks]} has its label in dataset {self.schema.name}")
        self.field_specs = self.run.tokenizer.field_specs()
        # event surprise under the pretrained next-event heads (None when the run saved none)
        self.surprise = EventSurprise.load(self.run.hf_dir, self.run.model.config, self.field_specs, cfg.device)
        self.encoder = self.encoder_for(self.run.model, self.surprise)
        self.examples = self._select_examples()
        self.tick("load_and_examples")
        entity_types = list(dict.fromkeys(e for t in self.tasks for e in t.entities))
        rows = np.unique(np.concatenate([t.column("row").to_numpy() for splits in self.examples.values()
                                         for t in splits.values()]))
        keys = example_keys(self.events, pa.table({"row": rows}), list(self.schema.entities))
        self.frozen = example_states(PointInTimeStates(self.store, self.encoder), keys, entity_types)
        self.tick("frozen_features")

    def tick(self, name: str) -> None:
        """Record the wall and CPU seconds since the previous tick (CPU: this process, all its threads)."""
        self.timings[name] = round(time.perf_counter() - self.started - sum(self.timings.values()), 2)
        self.cpu_timings[name] = round(time.process_time() - self.cpu_started - sum(self.cpu_timings.values()), 2)

    def _usable(self, task: TaskSpec) -> bool:
        if task.label not in self.schema.labels:
            log.warning("dataset %s has no label %r: skipping task %s", self.schema.name, task.label, task.name)
            return False
        task.validate(self.schema)
        return True

    def remember(self, task: str, model: str, predictions: Predictions) -> None:
        """Keep a model's all-label validation and test scores for the blends trained after it."""
        self.predictions.setdefault(task, {})[model] = predictions

    def velocity_features(self, task: TaskSpec) -> Any:
        """The task's hand-crafted velocity features of every event (computed once per task)."""
        from foundation.pointintime import VelocityConfig, velocity_features

        if task.name not in self._velocity:
            self._velocity[task.name] = velocity_features(self.events, self.schema,
                                                          VelocityConfig.from_config(task.velocity))
        return self._velocity[task.name]

    def encoder_for(self, model: Any, surprise: EventSurprise | None = None) -> PointInTimeEncoder:
        """The point-in-time encoder pass of `model` with this run's batch size and device."""
        return PointInTimeEncoder(model, self.field_specs, int(self.cfg.batch_tokens), str(self.cfg.device),
                                  surprise=surprise)

    @property
    def surprise_names(self) -> tuple[str, ...]:
        """Names of the surprise columns that end the frozen features (none without next-event heads)."""
        return tuple(self.surprise.names) if self.surprise is not None else ()

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    def _select_examples(self) -> dict[str, dict[str, pa.Table]]:
        bounds = self.cfg.get("examples")
        customers = chosen_customers(self.events, bounds.get("customers") if bounds else None, self.seed)
        experiment = self.run.config.get("finetune_overrides") if self.run.config is not None else None
        fix = widening_hint(list(experiment or []))
        out = {}
        for task in self.tasks:
            out[task.name] = {}
            for split in SPLITS:
                table = select_examples(self.events, self.schema, task, split)
                if "customer_id" not in table.column_names:
                    table = table.append_column("customer_id", pc.cast(self.events.column("customer_id"),
                                                                      pa.string()).take(table.column("row")))
                table = bound_examples(table, split, self.schema, bounds, customers)
                check_classes(task.name, split, table, fix)
                out[task.name][split] = table
                log.info("%s %s: %d examples (%d positive)", task.name, split, table.num_rows, labels_of(table).sum())
        return out

    def states_of(self, table: pa.Table, states: ExampleStates | None = None) -> ExampleStates:
        """The frozen (or given) states of some examples, in their order."""
        states = states if states is not None else self.frozen
        return states.take(states.positions(table.column("event_id")))
