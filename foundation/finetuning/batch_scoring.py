"""Batch scoring: a saved task head on a new table of raw events, written as a scores parquet.

    python scripts/score.py head_dir=checkpoints/<finetune run>/heads/fraud/gbdt events=new_events.parquet out=scores.parquet

Each event the task scores (its `examples` filter: e.g. charge attempts) gets the head's inputs computed
point in time by the code fine-tuning used: the entity states just before it over the table's own history
(`foundation.pointintime.example_states`), its raw fields (`RawFieldLayout`, with the head's category
codes) as the head declares them (`HeadInputs`). So a head scores the fine-tune run's test events exactly as
that run did, given the same history. Output columns, sorted by (event_time, event_id):

| column | type | meaning |
|---|---|---|
| `event_id` | string | the scored event |
| `<entity>_id` | string, nullable | one per task entity |
| `event_time` | timestamp[ms] | |
| `score` | float64 | the head's positive-class probability |
| `label` | int8, nullable | only when the table has the task's label column: 1 positive, null unknown |

The file's schema metadata (`foundation.batch_scores`) names the head, its threshold, the task and the
checkpoint (hf dir and weights digest).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

from foundation.data.field_specs import SourceSpec
from foundation.data.schema import DataSchema
from foundation.data.source import open_dataset, read_events
from foundation.evaluation.splits import TaskSpec, example_mask
from foundation.finetuning.config import CONF_DIR
from foundation.heads import Head, HeadInputs, load_head
from foundation.pointintime import (
    EVENT_ENTITY,
    EventSurprise,
    PointInTimeEncoder,
    PointInTimeStates,
    PretrainedRun,
    RawFieldLayout,
    SequenceStore,
    aggregate_specs,
    example_keys,
    example_states,
    same_tokenizer,
)

log = logging.getLogger(__name__)
METADATA_KEY = b"foundation.batch_scores"


def read_raw_events(path: str | Path, schema: DataSchema) -> tuple[pa.Table, set[str]]:
    """The raw columns of the schema from a file, folder or glob (parquet or CSV by extension).

    Label columns may be absent (they are never inputs): they are added as nulls.

    Returns:
        (raw table, the label columns the source really had).
    """
    source = SourceSpec.from_node({"path": str(path)})
    names = set(open_dataset(source).schema.names)
    labels = set(schema.label_columns)
    present = labels & names
    table = read_events(replace(schema, source=source), [c for c in schema.raw_columns if c not in labels - present])
    for column in sorted(labels - present):
        table = table.append_column(column, pa.nulls(table.num_rows, pa.float64()))
    return table, present


def task_of(head_dir: Path, name: str) -> TaskSpec:
    """The task as the fine-tune run that saved the head configured it (its config.yaml), else conf/task."""
    run = head_dir.parents[2] if len(head_dir.parents) > 2 else head_dir
    for saved in (run / "config.yaml", run / "hydra" / ".hydra" / "config.yaml"):
        if saved.exists():
            cfg = OmegaConf.load(saved)
            if cfg.get("task") is not None and cfg.task.get("name") == name:
                return TaskSpec.from_config(cfg.task)
    path = CONF_DIR / "task" / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{head_dir}: no config of task {name!r} (neither {run}/config.yaml nor {path})")
    return TaskSpec.from_config(path)


@dataclass
class BatchScorer:
    """A saved head with the pretraining run whose states it reads.

    Attributes:
        run: the pretraining run (model, tokenizer, data schema).
        head: the loaded head (`inputs` say which columns it reads).
        head_dir: its folder, `<finetune run>/heads/<task>/<head>`.
        task: the task spec (which events are scored, label, entities, raw-field settings).
        schema: the data schema of the events.
    """

    run: PretrainedRun
    head: Head
    head_dir: Path
    task: TaskSpec
    schema: DataSchema
    device: str = "cpu"
    batch_tokens: int = 32768

    @classmethod
    def load(cls, head_dir: str | Path, checkpoint: str | Path | None = None, device: str = "cpu",
             batch_tokens: int = 32768) -> BatchScorer:
        """Load a head folder and its pretraining run (default: the checkpoint its head.json records).

        Raises:
            FileNotFoundError: no head.json or checkpoint. ValueError: a head reading velocity features.
        """
        head_dir = Path(head_dir)
        head = load_head(head_dir)
        recorded = head.metadata.get("checkpoint")
        if checkpoint is None and not recorded:
            raise ValueError(f"{head_dir}/head.json records no checkpoint: pass checkpoint=<pretraining run>")
        run = PretrainedRun.load(checkpoint if checkpoint is not None else recorded)
        if recorded and Path(recorded).resolve() != run.hf_dir.resolve():
            log.warning("%s was trained on %s, scoring with %s", head_dir, recorded, run.hf_dir)
        inputs = head.inputs or HeadInputs(tuple(head.metadata.get("entity_types") or ()))
        if inputs.velocity_names is not None or not inputs.embeddings:
            raise ValueError(f"{head_dir}: the head reads velocity features (layout {inputs.kind!r}), whose category "
                             "codes are not saved with it; batch scoring takes heads on the embeddings and raw fields")
        name = head.metadata.get("task") or head_dir.parent.name
        return cls(run, head, head_dir, task_of(head_dir, str(name)), run.schema(), device, batch_tokens)

    @property
    def inputs(self) -> HeadInputs:
        return self.head.inputs or HeadInputs(tuple(self.head.metadata.get("entity_types") or ()))

    def _encoder(self) -> PointInTimeEncoder:
        """The pretrained model's pass (with surprise when the head reads it), or a `full` head's own encoder."""
        specs = self.run.tokenizer.field_specs()
        tuned = getattr(self.head, "encoder", None)
        if tuned is not None:
            encoder_dir = self.head_dir / "encoder"
            if (encoder_dir / "tokenizer_config.json").exists() and not same_tokenizer(self.run.hf_dir, encoder_dir):
                raise ValueError(f"{encoder_dir}: the fine-tuned encoder was saved with another tokenizer than "
                                 f"{self.run.hf_dir}")
            return PointInTimeEncoder(tuned, specs, self.batch_tokens, self.device, progress=False)
        surprise = None
        if self.inputs.surprise:
            surprise = EventSurprise.load(self.run.hf_dir, self.run.model.config, specs, self.device)
            found = tuple(surprise.names) if surprise is not None else ()
            if found != tuple(self.inputs.surprise):
                raise ValueError(f"{self.head_dir}: the head reads surprise columns {list(self.inputs.surprise)}; "
                                 f"{self.run.hf_dir} gives {list(found)}")
        return PointInTimeEncoder(self.run.model, specs, self.batch_tokens, self.device, False, surprise)

    def features(self, events: pa.Table, rows: np.ndarray) -> np.ndarray:
        """(N, D) head inputs of the canonical events at `rows`, each from the table's history before it."""
        inputs, entities = self.inputs, list(self.inputs.entities)
        keys = example_keys(events, pa.table({"row": pa.array(rows, pa.int64())}), list(self.schema.entities))
        pinned = {t: s.count_values for t, s in aggregate_specs(self.schema, self.run.tokenizer).items()
                  if s.count_values}
        from foundation.data.sequences import build_sequences

        with tempfile.TemporaryDirectory(prefix="score-") as tmp:
            build_sequences(events, self.schema, Path(tmp) / "sequences", count_values=pinned or None,
                            entity_types=list(dict.fromkeys([EVENT_ENTITY, *entities])))
            store = SequenceStore(Path(tmp) / "sequences", self.run.tokenizer)
            X = example_states(PointInTimeStates(store, self._encoder()), keys, entities).features(entities)
        if inputs.raw is not None:
            raw = RawFieldLayout(dict(self.task.velocity), dict(inputs.raw.get("categories") or {}),
                                 list(inputs.raw.get("names") or []))
            X = np.hstack([X, raw.features(events, self.schema)[rows]])
        if X.shape[1] != self.head.n_features:
            raise ValueError(f"{self.head_dir}: built {X.shape[1]} input columns, the head reads {self.head.n_features}")
        return X

    def score(self, raw: pa.Table, has_label: bool = True) -> pa.Table:
        """Scores of every event of the task in a table of raw events (layout in the module docstring).

        Args:
            raw: raw events with the schema's columns (label columns optional; see `read_raw_events`).
            has_label: whether to write the `label` column (the table had the task's label).
        """
        from foundation.data.validate import validate

        events = validate(raw, self.schema, on_error="raise").table
        mask = example_mask(events, self.schema, self.task)
        mask = np.ones(events.num_rows, bool) if mask is None else mask.to_numpy(zero_copy_only=False)
        has_customer = pc.is_valid(events.column(f"{EVENT_ENTITY}_id")).to_numpy(zero_copy_only=False)
        if int((mask & ~has_customer).sum()):
            log.warning("%d events of task %s have no %s_id: not scored", int((mask & ~has_customer).sum()),
                        self.task.name, EVENT_ENTITY)
        order = pa.table({"row": np.arange(events.num_rows), "t": events.column("event_time"),
                          "id": events.column("event_id")}).filter(pa.array(mask & has_customer))
        rows = order.sort_by([("t", "ascending"), ("id", "ascending")]).column("row").to_numpy()
        if not len(rows):
            raise ValueError(f"no event of the table is an example of task {self.task.name} (its `examples` filter)")
        columns = ["event_id", *[f"{e}_id" for e in self.task.entities], "event_time"]
        out = events.select(columns).take(pa.array(rows))
        out = out.append_column("score", pa.array(self.head.predict_proba(self.features(events, rows)), pa.float64()))
        if has_label:
            label = pc.cast(events.column(self.task.label).take(pa.array(rows)), pa.float64())
            label = pc.if_else(pc.is_nan(pc.fill_null(label, 0.0)), pa.scalar(None, pa.float64()), label)
            out = out.append_column("label", pc.cast(pc.equal(label, self.task.positive_value), pa.int8()))
        meta = {"head": str(self.head_dir), "task": self.task.name, "threshold": self.head.threshold,
                "checkpoint": {"hf_dir": str(self.run.hf_dir.resolve()), "digest": self.run.digest()}}
        return out.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def score_events(cfg: DictConfig | dict[str, Any]) -> Path:
    """The `scripts/score.py` job (conf/score.yaml: head_dir, events, out, checkpoint, device, batch_tokens).

    (`head_dir`, not `head`: `head=` would name the conf/head config group.)

    Returns:
        The scores parquet written.
    """
    for key in ("head_dir", "events", "out"):
        if not cfg.get(key):
            raise ValueError(f"{key}: required (python scripts/score.py head_dir=<finetune run>/heads/<task>/<head> "
                             "events=<parquet> out=<scores.parquet>)")
    scorer = BatchScorer.load(cfg["head_dir"], cfg.get("checkpoint"), str(cfg.get("device") or "cpu"),
                              int(cfg.get("batch_tokens") or 32768))
    raw, labels = read_raw_events(cfg["events"], scorer.schema)
    table = scorer.score(raw, has_label=scorer.schema.labels[scorer.task.label].column in labels)
    out = Path(cfg["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    print(f"scored {table.num_rows} {scorer.task.name} events of {cfg['events']} with {scorer.head_dir}")
    return out
