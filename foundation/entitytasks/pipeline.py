"""`run_entity_tasks(cfg, tasks)`: entity task examples, frozen entity embeddings and aggregates, heads and the
aggregate LightGBM baseline at every label fraction, out-of-time metrics, saved heads, report.

Models (each fitted on the train examples, early-stopped on validation, scored on test):
- `probe`, `mlp`, `gbdt`: heads on the entity embedding as of the date (`foundation.entitytasks.embedding`: the
  pretrained model's state after the entity's last event at or before as_of, a has-history flag, the days since
  that event); what the service serves;
- `full` (when the run's heads include it): the encoder and a head fine-tuned end to end on the entity's window
  as of the date (`foundation.entitytasks.full`; batch scoring);
- `aggregates_lgbm`: the incumbent, a LightGBM on hand-crafted aggregates (counts, amounts, rates over
  7/30/90 days, recency, tenure; `foundation.entitytasks.aggregates`);
- `embeddings_aggregates_lgbm`: the same LightGBM on both;
- `random_encoder_mlp` (`baselines.scratch: true`): the MLP on the embeddings of a randomly initialised encoder
  of the same config: what the architecture and the elapsed-time column give without pretraining. (Not the
  event tasks' scratch network, which trains that encoder end to end.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import DictConfig

from foundation.entitytasks.aggregates import AggregateConfig, entity_aggregates
from foundation.entitytasks.embedding import embedding_names, entity_embeddings
from foundation.entitytasks.full import SHARED_SETTINGS, EntityFullHead, EntityWindows, entity_windows
from foundation.entitytasks.hazard import GapHazard
from foundation.entitytasks.heads import HEAD_KINDS, build_head
from foundation.entitytasks.report import write_entity_report
from foundation.entitytasks.spec import EntityTaskSpec, TargetSpec
from foundation.entitytasks.targets import NoExamplesError, build_examples
from foundation.entitytasks.timeline import EntityTimeline
from foundation.json_encoding import json_default

log = logging.getLogger(__name__)

BASELINE = "aggregates_lgbm"
BOTH = "embeddings_aggregates_lgbm"
RANDOM = "random_encoder_mlp"
FULL = "full"  # the encoder fine-tuned end to end (foundation.entitytasks.full)
TASK_DIR = Path(__file__).resolve().parents[2] / "conf" / "task"


@dataclass
class EntityResult:
    """One model's test predictions on one entity task at one label fraction."""

    task: str
    model: str
    problem: str
    fraction: float
    n_train: int
    y: np.ndarray
    scores: np.ndarray
    groups: np.ndarray
    classes: tuple[str, ...] = ()
    entity: str = ""


def _train_subset(table: pa.Table, fraction: float, seed: int) -> np.ndarray:
    """Row indices of the train examples of a seeded share of the train entities (all rows at 1.0)."""
    if fraction >= 1.0:
        return np.arange(table.num_rows)
    ids = pc.unique(table.column("entity_id")).sort()
    n = max(2, int(round(fraction * len(ids))))
    keep = ids.take(pa.array(np.sort(np.random.default_rng(seed).permutation(len(ids))[:n])))
    return np.flatnonzero(np.asarray(pc.is_in(table.column("entity_id"), value_set=keep).to_numpy(
        zero_copy_only=False), bool))


class EntityTaskRun:
    """The data of one entity task: examples and the feature blocks (embeddings, aggregates, and the embeddings of
    `random_encoder` when given: a randomly initialised encoder of the same config), by split; the windows the
    full fine-tune reads, on demand."""

    def __init__(self, spec: EntityTaskSpec, target: TargetSpec, events: pa.Table, schema: Any, store: Any,
                 encoder: Any, seed: int, random_encoder: Any = None, hazard: GapHazard | None = None):
        self.spec, self.target, self.store, self.max_len = spec, target, store, int(encoder.max_len)
        self._windows: EntityWindows | None = None
        timeline = EntityTimeline(events, spec.entity)
        self.examples = build_examples(events, schema, spec, target, timeline, seed)
        ids, as_of = self.examples.column("entity_id"), self.examples.column("as_of").to_numpy()
        self.hazard_names = hazard.names if hazard is not None else []
        self.embeddings = entity_embeddings(store, encoder, spec.entity, ids, as_of, spec.lookback, hazard)
        self.random = (entity_embeddings(store, random_encoder, spec.entity, ids, as_of, spec.lookback)
                       if random_encoder is not None else None)
        self.aggregates, self.aggregate_names = entity_aggregates(
            events, schema, timeline, AggregateConfig.from_config(spec.aggregates), ids, as_of)
        split = self.examples.column("split").to_numpy(zero_copy_only=False)
        self.rows = {name: np.flatnonzero(split == name) for name in ("train", "validation", "test")}
        self.y = self.examples.column("target").to_numpy()
        for name, rows in self.rows.items():
            log.info("%s %s: %d examples, mean target %.4f", spec.name, name, len(rows), float(np.mean(self.y[rows])))

    def windows(self) -> EntityWindows:
        """The full fine-tune's inputs of every example (computed once)."""
        if self._windows is None:
            self._windows = entity_windows(self.store, self.max_len, self.spec.entity,
                                           self.examples.column("entity_id"), self.examples.column("as_of").to_numpy())
        return self._windows

    def features(self, block: str) -> np.ndarray:
        blocks = {"embeddings": self.embeddings, "aggregates": self.aggregates, "random": self.random}
        return blocks[block] if block in blocks else np.hstack([self.embeddings, self.aggregates])

    def feature_names(self, block: str) -> list[str]:
        emb = embedding_names(self.embeddings.shape[1], self.spec.lookback, self.hazard_names)
        if block == "random":
            return embedding_names(self.random.shape[1], self.spec.lookback)
        return {"embeddings": emb, "aggregates": self.aggregate_names}.get(block, emb + self.aggregate_names)


def _models(cfg: DictConfig, spec: EntityTaskSpec, random: bool) -> list[tuple[str, str, str]]:
    """(name, head kind, feature block) of every model of the run: the configured heads that have an entity
    version (probe, mlp, gbdt on the embeddings; full on the windows), then the baselines (with `random`: the MLP
    on a random encoder's embeddings)."""
    configured = list(cfg.get("heads") or {})
    names = [n for n in configured if n in HEAD_KINDS] or list(HEAD_KINDS)
    full = FULL in configured and not spec.lookback
    if FULL in configured and spec.lookback:
        log.info("entity task %s: no full fine-tune with embedding.lookback (its encoder reads the state as of "
                 "the date only)", spec.name)
    skipped = [n for n in configured if n not in HEAD_KINDS and n != FULL]
    if skipped:
        log.info("entity task %s: heads %s have no entity version (entity heads: %s)", spec.name, skipped,
                 [*HEAD_KINDS, FULL])
    baselines = [(BASELINE, "gbdt", "aggregates"), (BOTH, "gbdt", "both")]
    return ([(n, n, "embeddings") for n in names] + ([(FULL, FULL, "windows")] if full else []) + baselines
            + ([(RANDOM, "mlp", "random")] if random else []))


def _full_head(cfg: DictConfig, data: EntityTaskRun, run: Any) -> EntityFullHead:
    """A full fine-tune head from the pretrained encoder: conf/head/full.yaml's shared settings, the task's
    `heads.full` on top."""
    from foundation.model import FoundationModel

    event_settings = ((cfg.get("heads") or {}).get(FULL) or {}).get("head") or {}
    settings = {k: event_settings[k] for k in SHARED_SETTINGS if k in event_settings}
    settings.update(dict(data.spec.heads.get(FULL) or {}))
    return EntityFullHead(FoundationModel.from_pretrained(run.hf_dir), run.tokenizer.field_specs(),
                          data.target.problem, data.target.n_outputs, seed=int(cfg.seed), device=str(cfg.device),
                          **settings)


def _fit_full(cfg: DictConfig, data: EntityTaskRun, run: Any, rows: np.ndarray, validation: np.ndarray,
              test: np.ndarray) -> tuple[EntityFullHead, np.ndarray]:
    """Fine-tune on the train rows (early stopping on validation); (head, test predictions)."""
    windows = data.windows()
    head = _full_head(cfg, data, run)
    head.fit(windows.take(rows), data.y[rows], windows.take(validation), data.y[validation])
    return head, head.predict_windows(windows.take(test))


def train_models(cfg: DictConfig, data: EntityTaskRun, out_dir: Path, run: Any) -> list[EntityResult]:
    """Fit every model at every label fraction; save the heads on the embeddings (and the full fine-tune) trained
    on all labels. `run`: the PretrainedRun (checkpoint, tokenizer, encoder of the full fine-tune)."""
    spec, target = data.spec, data.target
    train, validation, test = (data.rows[s] for s in ("train", "validation", "test"))
    groups = data.examples.column("entity_id").to_numpy(zero_copy_only=False)[test]
    fractions = [float(f) for f in (cfg.get("label_fractions") or spec.label_fractions)]
    results = []
    for name, kind, block in _models(cfg, spec, data.random is not None):
        # the feature block once per model (the "both" block is a copy), not once per label fraction
        X, names = (data.features(block), data.feature_names(block)) if block != "windows" else (None, None)
        for fraction in fractions:
            rows = train[_train_subset(data.examples.take(pa.array(train)), fraction, int(cfg.seed))]
            started = time.perf_counter()
            if block == "windows":
                head, scores = _fit_full(cfg, data, run, rows, validation, test)
            else:
                head = build_head(kind, target.problem, target.n_outputs, spec.heads.get(kind))
                head.fit(X[rows], data.y[rows], X[validation], data.y[validation],
                         **({"feature_names": names} if kind == "gbdt" else {}))
                scores = head.predict_proba(X[test])
            results.append(EntityResult(spec.name, name, target.problem, fraction, len(rows), data.y[test],
                                        scores, groups, target.classes, spec.entity))
            log.info("%s/%s at %.0f%% labels: %.1f s", spec.name, name, 100 * fraction, time.perf_counter() - started)
            if fraction == 1.0 and block in ("embeddings", "windows"):
                head.save(out_dir / "heads" / spec.name / name, kind="entity", task=spec.name,
                          entity_type=spec.entity, entity_types=[spec.entity], problem=target.problem,
                          classes=list(target.classes), checkpoint=str(run.hf_dir), lookback_ms=list(spec.lookback),
                          hazard_ms=list(spec.hazard),
                          **({"tokenizer": run.tokenizer} if block == "windows" else {}))
    return results


def _random_encoder(run: Any, cfg: DictConfig) -> Any:
    """The point-in-time encoder of a seeded, randomly initialised model of the run's config."""
    import torch

    from foundation.model import FoundationModel
    from foundation.pointintime import PointInTimeEncoder

    torch.manual_seed(int(cfg.seed))
    model = FoundationModel(FoundationModel.config_class.from_pretrained(run.hf_dir)).eval()
    return PointInTimeEncoder(model, run.tokenizer.field_specs(), int(cfg.batch_tokens), str(cfg.device))


def run_entity_tasks(cfg: DictConfig, task_configs: Sequence[Any], out_dir: Path) -> dict[str, Any]:
    """Run entity tasks on a pretrained checkpoint and write entity_metrics.json, entity_report.md, plots.

    Args:
        cfg: a finetune config (conf/finetune.yaml): checkpoint, data, seed, heads, label_fractions, report.
        task_configs: conf/task/<name>.yaml contents of `kind: entity` tasks.
        out_dir: the run folder.
    Returns:
        The summary written to entity_metrics.json (tasks, skipped tasks with reasons, timings).
    """
    from foundation.pointintime import PointInTimeEncoder, PretrainedRun
    from foundation.preparation import load_events

    started = time.perf_counter()
    run = PretrainedRun.load(cfg.checkpoint)
    data_cfg = cfg.get("data")
    paths = {"root_dir": cfg.paths.root_dir, "data_dir": cfg.paths.data_dir} if data_cfg is not None else None
    schema, store, _ = run.store(run.data_config(data_cfg, paths))
    events, _ = load_events(schema)
    encoder = PointInTimeEncoder(run.model, run.tokenizer.field_specs(), int(cfg.batch_tokens), str(cfg.device))
    random_encoder = _random_encoder(run, cfg) if (cfg.get("baselines") or {}).get("scratch") else None
    timings = {"load": round(time.perf_counter() - started, 2)}
    results, skipped = [], {}
    for task_cfg in task_configs:
        spec = EntityTaskSpec.from_config(task_cfg)
        target, why = spec.resolve(schema)
        if target is None:
            log.warning("entity task %s skipped on dataset %s: %s", spec.name, schema.name, why)
            skipped[spec.name] = why
            continue
        t0 = time.perf_counter()
        try:
            if spec.hazard and run.surprise is None:
                log.warning("entity task %s: the checkpoint has no next-event heads (pretrained without the "
                            "next_event objective), so its embedding goes without the embedding.hazard columns",
                            spec.name)
                spec = dataclasses.replace(spec, hazard=())
            hazard = GapHazard.from_run(run.surprise, run.tokenizer, spec.hazard) if spec.hazard else None
            data = EntityTaskRun(spec, target, events, schema, store, encoder, int(cfg.seed), random_encoder, hazard)
        except NoExamplesError as error:  # e.g. splits shorter than the horizon: the task does not fit this data
            log.warning("entity task %s skipped on dataset %s: %s", spec.name, schema.name, error)
            skipped[spec.name] = str(error)
            continue
        timings[f"{spec.name}/features"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        results += train_models(cfg, data, out_dir, run)
        timings[f"{spec.name}/models"] = round(time.perf_counter() - t0, 2)
    report = cfg.get("report") or {}
    t0 = time.perf_counter()
    summary = write_entity_report(out_dir, results, BASELINE, int(report.get("n_bootstrap", 1000)), int(cfg.seed),
                                  skipped=skipped, dataset=schema.name)
    timings["report"] = round(time.perf_counter() - t0, 2)
    summary["timings_s"] = timings
    (out_dir / "entity_metrics.json").write_text(json.dumps(summary, indent=2,
                                                            default=json_default("entity_metrics.json")))
    return summary


# The quickstart's entity block (<= ~50 s on the default world): fewer merchants per as-of date, all labels only,
# a 200-resample bootstrap.
QUICKSTART_TASK = {"max_entities": 400, "label_fractions": [1.0]}
QUICKSTART_BOOTSTRAP = 200


def quickstart_entity_tasks(cfg: DictConfig, out_dir: Path, names: Sequence[str] = ("merchant_risk",)) -> str:
    """The quickstart's entity task rows: conf/task/<name>.yaml with QUICKSTART_TASK on top, the run's probe, mlp
    and gbdt heads against the aggregate LightGBM. Returns the results table (entity_report.md in out_dir)."""
    from omegaconf import OmegaConf, open_dict

    from foundation.entitytasks.report import entity_table

    tasks = [{**OmegaConf.to_container(OmegaConf.load(TASK_DIR / f"{name}.yaml")), **QUICKSTART_TASK}
             for name in names]
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.report = {**(cfg.get("report") or {}), "n_bootstrap": QUICKSTART_BOOTSTRAP}
        cfg.label_fractions = None
        cfg.baselines = {**(cfg.get("baselines") or {}), "scratch": False}  # the time budget
        cfg.heads = {k: v for k, v in (cfg.get("heads") or {}).items() if k != FULL}  # idem
    return entity_table(run_entity_tasks(cfg, tasks, out_dir))
