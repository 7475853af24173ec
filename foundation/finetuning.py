"""`finetune(cfg)` / `finetune_all(cfg)`: task heads on a pretrained model, baselines, and the report.

For each task (conf/task/<name>.yaml) the examples come from the out-of-time protocol of
`foundation.evaluation.splits` (train / validation / test periods of the data config, labels delayed), bounded
by `examples` (a seeded share of customers and a number of days per period, so a run fits in CPU minutes).
Features follow docs/architecture.md section 8 (computed once with the frozen model for every task):
`[h_customer(t), h_merchant(t) | h_issuer(t), event_vector(e), has_history flags]`.

Heads (conf/head/*.yaml): `probe` and `mlp` on the frozen features, `full` (encoder fine-tuned end to end),
`gbdt` (LightGBM on the features plus the event's raw fields). Baselines on the same test examples:
`velocity_gbdt` (LightGBM on hand-crafted velocity features) and `scratch` (the full head from a randomly
initialised encoder of the same config). Each runs at every label fraction. Heads trained on all labels are
saved under `<run_dir>/heads/<task>/<head>/`; the report (metrics.json, report.md, plots/) goes to `<run_dir>`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from foundation.evaluation.report import ModelResult, TraitEmbeddings, log_report_to_wandb, write_report
from foundation.evaluation.splits import (
    TaskSpec,
    check_no_leakage,
    schema_period,
    select_examples,
    subsample_labels,
)
from foundation.heads.full import FullHead, window_set
from foundation.heads.gbdt import GBDTHead
from foundation.heads.mlp import MLPHead
from foundation.heads.probe import ProbeHead
from foundation.pointintime import (
    EventSurprise,
    ExampleStates,
    FeatureLayout,
    PointInTimeEncoder,
    PointInTimeStates,
    PretrainedRun,
    example_keys,
    example_states,
    raw_field_features,
)

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SPLITS = ("train", "validation", "test")
HEAD_NAMES = ("probe", "mlp", "full", "gbdt", "gbdt_velocity")
ALL_TASKS = ("fraud", "authorization")


# ---------------------------------------------------------------- config


def finetune_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/finetune.yaml from Python (e.g. the quickstart: [f"checkpoint={run_dir}"])."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a @hydra.main app of this repo's conf/
        cfg = compose("finetune", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("finetune", overrides=list(overrides))
    return cfg


def _task_specs(cfg: DictConfig, names: Sequence[str] | None) -> list[TaskSpec]:
    if names is None:
        return [TaskSpec.from_config(cfg.task)]
    return [TaskSpec.from_config(CONF_DIR / "task" / f"{name}.yaml") for name in names]


# ---------------------------------------------------------------- examples


def bound_examples(table: pa.Table, split: str, schema: Any, bounds: Any, customers: pa.Array | None) -> pa.Table:
    """Keep the examples of the chosen customers and of the first/last `days` of the period.

    Train keeps its last days (the labels closest to the test period), validation and test their first days.
    """
    if customers is not None:
        table = table.filter(pc.fill_null(pc.is_in(table.column("customer_id"), value_set=customers), False))
    days = (bounds.get("days") or {}).get(split) if bounds is not None else None
    if days:
        period = schema_period(schema, split)
        span = np.timedelta64(int(round(float(days) * 86_400_000)), "ms")
        edge = period.end - span if split == "train" else period.start + span
        edge = pa.scalar(edge.astype(dt.datetime), pa.timestamp("ms"))
        keep = (pc.greater_equal if split == "train" else pc.less)(table.column("event_time"), edge)
        table = table.filter(keep)
    limit = (bounds.get("max") or {}).get(split) if bounds is not None else None
    if limit and table.num_rows > int(limit):
        rows = np.sort(np.random.default_rng(0).choice(table.num_rows, int(limit), replace=False))
        table = table.take(pa.array(rows))
    return table


def chosen_customers(events: pa.Table, share: float | None, seed: int) -> pa.Array | None:
    """A seeded share of the customers (None = all): examples of the others are left out."""
    if share is None or float(share) >= 1.0:
        return None
    ids = pc.unique(events.column("customer_id").drop_null()).sort()
    keep = np.random.default_rng(seed).permutation(len(ids))[: max(1, int(round(float(share) * len(ids))))]
    return ids.take(pa.array(np.sort(keep)))


def _labels(table: pa.Table) -> np.ndarray:
    return table.column("label").to_numpy().astype(np.int64)


def _check_classes(task: str, split: str, table: pa.Table) -> None:
    labels = _labels(table)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError(f"task {task}: the {split} examples ({len(labels)}, {int(labels.sum())} positive) hold a "
                         "single class; widen `examples` (customers, days) or check the splits")


def _stratified(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Row indices of a stratified subsample of at most `size` rows (all rows when size is None)."""
    if size is None or len(labels) <= int(size):
        return np.arange(len(labels))
    rng, keep = np.random.default_rng(seed), []
    for value in (0, 1):
        rows = np.flatnonzero(labels == value)
        n = max(1, int(round(int(size) * len(rows) / len(labels))))
        keep.append(rng.choice(rows, min(n, len(rows)), replace=False))
    return np.sort(np.concatenate(keep))


def _pool(labels: np.ndarray, size: int, positive_share: float, seed: int) -> np.ndarray:
    """The training examples a bounded fine-tune can visit: all positives up to their share, then negatives."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(positives), max(1, int(size * positive_share)))
    n_neg = min(len(negatives), max(1, size - n_pos))
    return np.sort(np.r_[rng.choice(positives, n_pos, replace=False), rng.choice(negatives, n_neg, replace=False)])


# ---------------------------------------------------------------- the run


class FinetuneRun:
    """One fine-tune run: the pretrained model, the data, the examples and the frozen features of its tasks."""

    def __init__(self, cfg: DictConfig, tasks: list[TaskSpec]):
        self.cfg = cfg
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        self._velocity: dict[str, Any] = {}
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
        self._tick("load_and_examples")
        entity_types = list(dict.fromkeys(e for t in self.tasks for e in t.entities))
        rows = np.unique(np.concatenate([t.column("row").to_numpy() for splits in self.examples.values()
                                         for t in splits.values()]))
        keys = example_keys(self.events, pa.table({"row": rows}), list(self.schema.entities))
        self.frozen = example_states(PointInTimeStates(self.store, self.encoder), keys, entity_types)
        self._tick("frozen_features")

    def _tick(self, name: str) -> None:
        """Record the wall and CPU seconds since the previous tick (CPU: this process, all its threads)."""
        self.timings[name] = round(time.perf_counter() - self.started - sum(self.timings.values()), 2)
        self.cpu_timings[name] = round(time.process_time() - self.cpu_started - sum(self.cpu_timings.values()), 2)

    def _usable(self, task: TaskSpec) -> bool:
        if task.label not in self.schema.labels:
            log.warning("dataset %s has no label %r: skipping task %s", self.schema.name, task.label, task.name)
            return False
        task.validate(self.schema)
        return True

    def velocity_features(self, task: TaskSpec) -> Any:
        """The task's hand-crafted velocity features of every event (computed once per task)."""
        from foundation.pointintime import VelocityConfig, velocity_features

        if task.name not in self._velocity:
            self._velocity[task.name] = velocity_features(self.events, self.schema,
                                                          VelocityConfig.from_config(task.velocity))
        return self._velocity[task.name]

    def encoder_for(self, model: Any, surprise: EventSurprise | None = None) -> PointInTimeEncoder:
        return PointInTimeEncoder(model, self.field_specs, int(self.cfg.batch_tokens), str(self.cfg.device),
                                  surprise=surprise)

    @property
    def surprise_names(self) -> tuple[str, ...]:
        """Names of the surprise columns that end the frozen features (none without next-event heads)."""
        return tuple(self.surprise.names) if self.surprise is not None else ()

    def _select_examples(self) -> dict[str, dict[str, pa.Table]]:
        bounds = self.cfg.get("examples")
        customers = chosen_customers(self.events, bounds.get("customers") if bounds else None, int(self.cfg.seed))
        out = {}
        for task in self.tasks:
            out[task.name] = {}
            for split in SPLITS:
                table = select_examples(self.events, self.schema, task, split)
                if "customer_id" not in table.column_names:
                    table = table.append_column("customer_id", pc.cast(self.events.column("customer_id"),
                                                                      pa.string()).take(table.column("row")))
                table = bound_examples(table, split, self.schema, bounds, customers)
                _check_classes(task.name, split, table)
                out[task.name][split] = table
                log.info("%s %s: %d examples (%d positive)", task.name, split, table.num_rows, _labels(table).sum())
        return out

    def states_of(self, table: pa.Table, states: ExampleStates | None = None) -> ExampleStates:
        """The frozen (or given) states of some examples, in their order."""
        states = states if states is not None else self.frozen
        return states.take(states.positions(table.column("event_id")))


# ---------------------------------------------------------------- heads


def _fractions(cfg: DictConfig, head_cfg: Any, task: TaskSpec) -> list[float]:
    own = head_cfg.get("label_fractions") if head_cfg is not None else None
    chosen = own if own is not None else (cfg.get("label_fractions") or task.label_fractions)
    return [float(f) for f in chosen]


def _subsets(examples: dict[str, pa.Table], fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """Train and validation examples at a label fraction (nested; validation shrinks alike, as in baseline (a))."""
    return subsample_labels(examples["train"], fraction, seed), subsample_labels(examples["validation"], fraction, seed)


def _head_config(block: Any) -> dict[str, Any]:
    settings = OmegaConf.to_container(block, resolve=True) if OmegaConf.is_config(block) else dict(block or {})
    return {k: v for k, v in settings.items() if k not in ("label_fractions", "max_validation", "raw_fields",
                                                          "gbdt")}


def _gbdt(task: TaskSpec, block: Any) -> GBDTHead:
    """The task's LightGBM settings with the head block's `gbdt` overrides (fewer rounds for minutes-long runs)."""
    settings = {**task.gbdt}
    overrides = OmegaConf.to_container(block.gbdt, resolve=True) if block is not None and block.get("gbdt") else {}
    settings["params"] = {**settings.get("params", {}), **overrides.pop("params", {})}
    settings.update(overrides)
    return GBDTHead.from_config(settings)


def train_frozen_heads(fr: FinetuneRun, task: TaskSpec, heads: list[str], out_dir: Path) -> list[ModelResult]:
    """probe, mlp and gbdt (embeddings + raw fields) on the frozen features, at every label fraction."""
    cfg, layout = fr.cfg, FeatureLayout(task.entities, fr.encoder.hidden_size, fr.surprise_names)
    examples = fr.examples[task.name]
    test = examples["test"]
    X_test = fr.states_of(test).features(task.entities)
    raw = raw_field_features(fr.events, fr.schema, task.velocity) if "gbdt" in heads else None
    velocity = fr.velocity_features(task) if "gbdt_velocity" in heads else None
    results = []
    for name in heads:
        block = cfg.heads.get(name)
        for fraction in _fractions(cfg, block, task):
            train, validation = _subsets(examples, fraction, int(cfg.seed))
            pick = {"train": fr.states_of(train).features(task.entities),
                    "validation": fr.states_of(validation).features(task.entities), "test": X_test}
            extra: dict[str, Any] = {}
            if name in ("gbdt", "gbdt_velocity"):
                # gbdt: embeddings + the event's raw fields; gbdt_velocity: embeddings added to the velocity
                # baseline's own features (its raw fields included), i.e. what the team runs today plus ours
                block_features = raw if name == "gbdt" else velocity
                tables = {"train": train, "validation": validation, "test": test}
                pick = {s: np.hstack([pick[s], block_features.values[tables[s].column("row").to_numpy()]])
                        for s in SPLITS}
                head = _gbdt(task, block)
                head.fit(pick["train"], _labels(train), pick["validation"], _labels(validation),
                         feature_names=layout.names() + block_features.names,
                         categorical_features=block_features.categorical)
                extra = {f"gbdt_{k}": v for k, v in head.info.items()}
                layout_info = ({**layout.to_dict(), "kind": "section8+raw", "raw": raw.layout(),
                                "velocity": task.velocity} if name == "gbdt" else
                               {**layout.to_dict(), "kind": "section8+velocity", "velocity": task.velocity,
                                "velocity_names": velocity.names})
            else:
                head = (ProbeHead if name == "probe" else MLPHead).from_config(_head_config(block))
                head.fit(pick["train"], _labels(train), pick["validation"], _labels(validation))
                extra = {"best_epoch": head.info["best_epoch"], "validation_pr_auc": head.info["validation_pr_auc"]}
                layout_info = layout.to_dict()
            scores = head.predict_proba(pick["test"])
            results.append(ModelResult.from_examples(test, task.name, name, scores, fraction, train.num_rows,
                                                     {"threshold": head.threshold, **extra}))
            if fraction == 1.0:
                head.save(out_dir / "heads" / task.name / name, task=task.name, entity_types=list(task.entities),
                          feature_layout=layout_info, checkpoint=str(fr.run.hf_dir),
                          metrics=_metrics(results[-1]))
    return results


def _metrics(result: ModelResult) -> dict[str, float]:
    from foundation.evaluation.metrics import pr_auc, roc_auc

    return {"test_pr_auc": pr_auc(result.labels, result.scores), "test_roc_auc": roc_auc(result.labels, result.scores),
            "n_test": int(len(result.labels))}


def train_full_heads(fr: FinetuneRun, task: TaskSpec, name: str, out_dir: Path) -> list[ModelResult]:
    """The fine-tuned `full` head (pretrained encoder) or the `scratch` baseline (random encoder)."""
    from foundation.model import FoundationModel

    cfg = fr.cfg
    block = cfg.heads.get("full")
    settings = _head_config(block)
    examples = fr.examples[task.name]
    test = examples["test"]
    results = []
    for fraction in _fractions(cfg, block, task):
        train, validation = _subsets(examples, fraction, int(cfg.seed))
        if name == "full":
            encoder = FoundationModel.from_pretrained(fr.run.hf_dir)
        else:  # baseline (b): the same network, nothing learned before
            torch.manual_seed(int(cfg.seed))
            encoder = FoundationModel(FoundationModel.config_class.from_pretrained(fr.run.hf_dir))
        head = FullHead(encoder, fr.field_specs, task.entities, device=str(cfg.device), pretrained=name == "full",
                        **settings)
        frozen = PointInTimeStates(fr.store, fr.encoder)  # windows only: as-of indices are model-free
        pool = _pool(_labels(train), head.steps * head.batch_size, head.positive_share, int(cfg.seed))
        stop = _stratified(_labels(validation), block.get("max_validation"), int(cfg.seed))
        train_set = window_set(frozen, fr.states_of(train.take(pa.array(pool))), _labels(train)[pool], task.entities,
                               head.train_window)
        stop_table = validation.take(pa.array(stop))
        stop_set = window_set(frozen, fr.states_of(stop_table), _labels(stop_table), task.entities, head.train_window)
        head.fit(train_set, stop_set)
        # Exact section-8 features with the fine-tuned encoder: threshold on validation, scores on test.
        tuned = PointInTimeStates(fr.store, fr.encoder_for(head.encoder))
        both = pa.concat_tables([stop_table.select(["row", "event_id"]), test.select(["row", "event_id"])])
        keys = example_keys(fr.events, both, list(fr.schema.entities))
        states = example_states(tuned, keys, task.entities)
        scores = head.predict_proba(states.features(task.entities))
        head.choose_threshold(_labels(stop_table), scores[: stop_table.num_rows])
        test_scores = scores[stop_table.num_rows:]
        results.append(ModelResult.from_examples(test, task.name, name, test_scores, fraction, train.num_rows, {
            "threshold": head.threshold, "best_step": head.info["best_step"], "n_train_visited": int(len(pool)),
            "validation_pr_auc": head.info["validation_pr_auc"]}))
        if fraction == 1.0:
            head.save(out_dir / "heads" / task.name / name, tokenizer=fr.run.tokenizer, task=task.name,
                      checkpoint=str(fr.run.hf_dir), metrics=_metrics(results[-1]))
    return results


def velocity_results(fr: FinetuneRun, task: TaskSpec) -> list[ModelResult]:
    """Baseline (a): LightGBM on velocity features, on the same examples (the velocity_baseline recipe)."""
    from foundation.evaluation.baseline import MODEL_NAME

    features = fr.velocity_features(task)
    examples = fr.examples[task.name]
    test = examples["test"]
    X_test = features.values[test.column("row").to_numpy()]
    block = fr.cfg.get("baselines", {}).get("velocity_gbdt")
    results = []
    for fraction in _fractions(fr.cfg, None, task):
        train, validation = _subsets(examples, fraction, int(fr.cfg.seed))
        head = _gbdt(task, block if OmegaConf.is_config(block) else None).fit(
            features.values[train.column("row").to_numpy()], _labels(train),
            features.values[validation.column("row").to_numpy()], _labels(validation),
            feature_names=features.names, categorical_features=features.categorical)
        results.append(ModelResult.from_examples(test, task.name, MODEL_NAME, head.predict_proba(X_test), fraction,
                                                 train.num_rows, {"threshold": head.threshold,
                                                                  **{f"gbdt_{k}": v for k, v in head.info.items()}}))
    return results


# ---------------------------------------------------------------- report


def trait_embeddings(fr: FinetuneRun, max_customers: int) -> TraitEmbeddings | None:
    """Customer states at the end of the pretraining period, with whether the customer had a fraud label then."""
    if "customer" not in fr.schema.entities or "is_fraud" not in fr.events.column_names:
        return None
    pretrain = schema_period(fr.schema, "pretrain")
    end = pa.scalar(pretrain.end.astype(dt.datetime), pa.timestamp("ms"))
    start = pa.scalar(pretrain.start.astype(dt.datetime), pa.timestamp("ms"))
    times = fr.events.column("event_time")
    window = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    seen = fr.events.filter(pc.and_(window, pc.is_valid(fr.events.column("customer_id"))))
    ids = pc.unique(seen.column("customer_id")).sort()
    if len(ids) < 2:
        return None
    ids = ids.take(pa.array(np.sort(np.random.default_rng(0).permutation(len(ids))[:max_customers])))
    fraud = seen.filter(pc.equal(pc.fill_null(seen.column("is_fraud"), 0.0), 1.0)).column("customer_id")
    traits = np.where(pc.is_in(ids, value_set=pc.unique(fraud)).to_numpy(zero_copy_only=False),
                      "fraud in pretraining period", "no fraud")
    t = np.full(len(ids), int(pretrain.end.astype("datetime64[ms]").astype(np.int64)))
    states = PointInTimeStates(fr.store, fr.encoder).as_of("customer", ids, t)
    return TraitEmbeddings(states.hidden, traits, "fraud label in pretraining period", "customer")


def results_table(metrics_json: Path) -> str:
    """A compact text table of PR-AUC and ROC-AUC with 95% intervals, per task, model and label fraction."""
    document = json.loads(Path(metrics_json).read_text())
    rows, comparisons = document["results"], document.get("comparisons", [])
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        first = mine[0]
        lines += [f"{task}: {first['n_test']} test examples, {first['n_test_positive']} positive "
                  f"(base rate {first['n_test_positive'] / first['n_test']:.4f})",
                  f"  {'model':<14} {'labels':>6} {'n_train':>8}  {'PR-AUC [95% CI]':<26} {'ROC-AUC [95% CI]':<26}"]
        for r in sorted(mine, key=lambda r: (r["model"], -r["label_fraction"])):
            pr, roc = r["pr_auc"], r["roc_auc"]
            lines.append(f"  {r['model']:<14} {r['label_fraction']:>6.0%} {r['n_train'] or 0:>8}  "
                         f"{pr['value']:.4f} [{pr['ci_low']:.4f}, {pr['ci_high']:.4f}]   "
                         f"{roc['value']:.4f} [{roc['ci_low']:.4f}, {roc['ci_high']:.4f}]")
        versus = [c for c in comparisons if c["task"] == task]
        if versus:
            lines.append("  paired PR-AUC difference vs baseline [95% CI]:")
        for c in versus:
            verdict = "beats it" if c["beats_baseline"] else "does not beat it"
            lines.append(f"    {c['model'] + '@' + format(c['label_fraction'], '.0%'):<20} - "
                         f"{c['baseline'] + '@' + format(c['baseline_label_fraction'], '.0%'):<18} "
                         f"{c['delta']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]  {verdict}")
    return "\n".join(lines)


def _wandb(cfg: DictConfig, paths: dict[str, Path]) -> None:
    logger_cfg = (cfg.get("logger") or {}).get("wandb")
    if logger_cfg is None:
        return
    import hydra

    logger = hydra.utils.instantiate(logger_cfg)
    log_report_to_wandb(logger, paths)
    logger.experiment.finish()


def _save_config(cfg: DictConfig, path: Path) -> None:
    """The resolved config next to the results; outside a Hydra app `paths.output_dir` (an ${hydra:}
    interpolation) cannot resolve and becomes the run folder."""
    from hydra.core.hydra_config import HydraConfig

    cfg = cfg.copy()
    if not HydraConfig.initialized() and "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.output_dir = str(path.parent)
    OmegaConf.save(cfg, path, resolve=True)


def run_finetune(cfg: DictConfig, task_names: Sequence[str] | None = None) -> tuple[Path, list[ModelResult]]:
    """Everything behind finetune/finetune_all. Returns (run folder, results)."""
    if not cfg.get("checkpoint"):
        raise ValueError("checkpoint: required, e.g. checkpoint=checkpoints/<pretraining run>")
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    out_dir = Path(cfg.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fr = FinetuneRun(cfg, _task_specs(cfg, task_names))
    heads = [h for h in HEAD_NAMES if h in (cfg.get("heads") or {})]
    baselines = cfg.get("baselines") or {}
    results: list[ModelResult] = []
    for task in fr.tasks:
        frozen = [h for h in heads if h != "full"]
        if frozen:
            results += train_frozen_heads(fr, task, frozen, out_dir)
            fr._tick(f"{task.name}/frozen_heads")
        if "full" in heads:
            results += train_full_heads(fr, task, "full", out_dir)
            fr._tick(f"{task.name}/full")
        if baselines.get("scratch") and "full" in (cfg.get("heads") or {}):
            results += train_full_heads(fr, task, "scratch", out_dir)
            fr._tick(f"{task.name}/scratch")
        if baselines.get("velocity_gbdt") not in (None, False):  # a block of gbdt overrides, or true
            results += velocity_results(fr, task)
            fr._tick(f"{task.name}/velocity_gbdt")
    report = cfg.get("report") or {}
    paths = write_report(out_dir, results, loss_log=fr.run.loss_log,
                         embeddings=trait_embeddings(fr, int(report.get("trait_customers", 2000))),
                         n_bootstrap=int(report.get("n_bootstrap", 1000)), seed=int(cfg.seed))
    fr._tick("report")
    _wandb(cfg, paths)
    summary = {"checkpoint": str(fr.run.hf_dir), "tasks": [t.name for t in fr.tasks], "heads": heads,
               "timings_s": fr.timings, "cpu_s": fr.cpu_timings, "events_through_encoder": fr.encoder.events_read,
               "examples": {t: {s: tab.num_rows for s, tab in splits.items()} for t, splits in fr.examples.items()}}
    (out_dir / "finetune.json").write_text(json.dumps(summary, indent=2))
    _save_config(cfg, out_dir / "config.yaml")
    log.info("fine-tune wall seconds %s; CPU seconds %s", fr.timings, fr.cpu_timings)
    return out_dir, results


def finetune(cfg: DictConfig) -> Path:
    """scripts/finetune.py: one task (cfg.task), the heads of cfg.heads, baselines, report. Returns the run folder."""
    out_dir, _ = run_finetune(cfg)
    print(results_table(out_dir / "metrics.json"))
    return out_dir


def finetune_all(cfg: DictConfig) -> tuple[Path, str]:
    """Fraud and authorization, every head and baseline in one go (what the quickstart runs).

    Args:
        cfg: a finetune config (conf/finetune.yaml, e.g. `finetune_config([f"checkpoint={run_dir}"])`); its
            `heads` default to all four.
    Returns:
        (run folder, the results table as text).
    """
    with open_dict(cfg):
        if not cfg.get("heads"):
            cfg.heads = finetune_config(["head=all"]).heads
    out_dir, _ = run_finetune(cfg, ALL_TASKS)
    return out_dir, results_table(out_dir / "metrics.json")
