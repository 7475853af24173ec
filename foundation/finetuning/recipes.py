"""How a head is trained, built from conf/head/<name>.yaml (and `baselines`) with `_target_`.

- `FrozenFeatures`: a head on the frozen task features of the pretrained model (probe, mlp), optionally with
  an extra block (`gbdt`: raw fields; `embeddings_velocity_lgbm`: velocity features), or on the block alone
  (`velocity_lgbm_baseline`, embeddings: false).
- `FullFinetune`: the encoder fine-tuned end to end with its head (`full`), or the same network from a random
  encoder (`scratch`).
- `Blend` (blend.py): the rank-average of two models trained earlier in the run (`embeddings_velocity_blend`).

Each trains at every label fraction, scores the task's test examples and saves the head trained on all labels
under `<run_dir>/heads/<task>/<name>/`. The head itself comes from `head:` (a `_partial_` Head factory).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from foundation.evaluation.report import ModelResult
from foundation.evaluation.splits import TaskSpec
from foundation.finetuning.examples import label_fractions, labels_of, stratified, subsets, training_pool
from foundation.finetuning.run import Predictions
from foundation.heads import Head, HeadInputs
from foundation.heads.full import FullHead, window_set
from foundation.pointintime import FeatureLayout, PointInTimeStates, example_keys, example_states


def saved_metrics(result: ModelResult) -> dict[str, float]:
    """head.json `metrics` of a saved head."""
    from foundation.evaluation.metrics import pr_auc, roc_auc

    return {"test_pr_auc": pr_auc(result.labels, result.scores), "test_roc_auc": roc_auc(result.labels, result.scores),
            "n_test": int(len(result.labels))}


@dataclass
class FrozenFeatures:
    """A head on frozen features: `[task features | extra block]`, `[task features]` or `[extra block]`.

    Args:
        head: factory of the head, called with `task=` (e.g. `ProbeHead.for_task`, `GBDTHead.for_task`).
        extra: a feature block (foundation.finetuning.blocks) appended to the task features, or None.
        embeddings: whether the task features of the pretrained model come first (false: the block alone).
        label_fractions: this head's own label fractions (None: the run's, else the task's).
        save: whether the head trained on all labels is saved.
    """

    head: Callable[..., Head]
    extra: Any = None
    embeddings: bool = True
    label_fractions: Sequence[float] | None = None
    save: bool = True

    def __post_init__(self) -> None:
        if not self.embeddings and self.extra is None:
            raise ValueError("a frozen-feature head needs the embeddings, an `extra` block, or both")

    def train(self, name: str, fr: Any, task: TaskSpec, out_dir: Path) -> list[ModelResult]:
        """Fit at every label fraction; returns one ModelResult per fraction, on the task's test examples."""
        examples = fr.examples[task.name]
        test = examples["test"]
        layout = FeatureLayout(task.entities, fr.encoder.hidden_size, fr.surprise_names) if self.embeddings else None
        block = self.extra.compute(fr, task) if self.extra is not None else None
        inputs = self.extra.inputs(layout, block, task) if self.extra is not None else HeadInputs.of(layout)

        def matrix(table: pa.Table) -> np.ndarray:
            parts = [fr.states_of(table).features(task.entities)] if self.embeddings else []
            if block is not None:
                parts.append(block.values[table.column("row").to_numpy()])
            return np.hstack(parts) if len(parts) > 1 else parts[0]

        names = (layout.names() if layout is not None else []) + (list(block.names) if block is not None else [])
        X_test = matrix(test)
        results = []
        for fraction in label_fractions(fr.cfg, self.label_fractions, task):
            train, validation = subsets(examples, fraction, fr.seed)
            head = self.head(task=task)
            # a head that keeps feature names (LightGBM: importances) gets the layout's, with or without a block
            columns = {"feature_names": names} if "feature_names" in inspect.signature(head.fit).parameters else {}
            if block is not None:
                columns["categorical_features"] = block.categorical
            X_validation = matrix(validation)
            head.fit(matrix(train), labels_of(train), X_validation, labels_of(validation), **columns)
            head.inputs = inputs
            results.append(ModelResult.from_examples(test, task.name, name, head.predict_proba(X_test), fraction,
                                                     train.num_rows, {"threshold": head.threshold,
                                                                      **head.result_extra()}))
            if fraction == 1.0:
                fr.remember(task.name, name, Predictions(head.predict_proba(X_validation), results[-1].scores,
                                                          train.num_rows))
            if fraction == 1.0 and self.save:
                head.save(out_dir / "heads" / task.name / name, task=task.name, entity_types=list(task.entities),
                          checkpoint=str(fr.run.hf_dir), metrics=saved_metrics(results[-1]))
        return results


@dataclass
class FullFinetune:
    """The encoder and an MLP head fine-tuned end to end on the exact point-in-time inputs of each example.

    Args:
        head: factory of the FullHead, called with `task=`, `encoder=`, `field_specs=`, `device=`, `pretrained=`.
        max_validation: early-stopping and threshold examples (stratified subsample of validation).
        label_fractions: this head's own label fractions (None: the run's, else the task's).
        pretrained: start from the pretrained encoder (False: a random one of the same config, baseline (b)).
    """

    head: Callable[..., FullHead]
    max_validation: int | None = None
    label_fractions: Sequence[float] | None = None
    pretrained: bool = True

    def from_scratch(self) -> FullFinetune:
        """The same recipe from a randomly initialised encoder (the `scratch` baseline)."""
        return replace(self, pretrained=False)

    def _encoder(self, fr: Any) -> Any:
        from foundation.model import FoundationModel

        if self.pretrained:
            return FoundationModel.from_pretrained(fr.run.hf_dir)
        torch.manual_seed(fr.seed)  # baseline (b): the same network, nothing learned before
        return FoundationModel(FoundationModel.config_class.from_pretrained(fr.run.hf_dir))

    def train(self, name: str, fr: Any, task: TaskSpec, out_dir: Path) -> list[ModelResult]:
        """Fine-tune at every label fraction; returns one ModelResult per fraction."""
        results = []
        for fraction in label_fractions(fr.cfg, self.label_fractions, task):
            head, train, pool, stop = self._fit(fr, task, fraction)
            test = fr.examples[task.name]["test"]
            test_scores = self._threshold_and_score(fr, task, head, stop, test)
            results.append(ModelResult.from_examples(test, task.name, name, test_scores, fraction, train.num_rows, {
                "threshold": head.threshold, "best_step": head.info["best_step"], "n_train_visited": int(len(pool)),
                "validation_pr_auc": head.info["validation_pr_auc"]}))
            if fraction == 1.0:
                head.save(out_dir / "heads" / task.name / name, tokenizer=fr.run.tokenizer, task=task.name,
                          checkpoint=str(fr.run.hf_dir), metrics=saved_metrics(results[-1]))
        return results

    def _fit(self, fr: Any, task: TaskSpec, fraction: float) -> tuple[FullHead, pa.Table, np.ndarray, pa.Table]:
        """The head fine-tuned on a label fraction; (head, train examples, visited rows, early-stopping examples)."""
        train, validation = subsets(fr.examples[task.name], fraction, fr.seed)
        head = self.head(task=task, encoder=self._encoder(fr), field_specs=fr.field_specs,
                         device=str(fr.cfg.device), pretrained=self.pretrained)
        frozen = PointInTimeStates(fr.store, fr.encoder)  # windows only: as-of indices are model-free
        pool = training_pool(labels_of(train), head.steps * head.batch_size, head.positive_share, fr.seed)
        stop = validation.take(pa.array(stratified(labels_of(validation), self.max_validation, fr.seed)))
        train_set = window_set(frozen, fr.states_of(train.take(pa.array(pool))), labels_of(train)[pool],
                               task.entities, head.train_window)
        stop_set = window_set(frozen, fr.states_of(stop), labels_of(stop), task.entities, head.train_window)
        head.fit(train_set, stop_set)
        return head, train, pool, stop

    def _threshold_and_score(self, fr: Any, task: TaskSpec, head: FullHead, stop: pa.Table,
                             test: pa.Table) -> np.ndarray:
        """Exact point-in-time features with the fine-tuned encoder: threshold on validation, scores on test."""
        tuned = PointInTimeStates(fr.store, fr.encoder_for(head.encoder))
        both = pa.concat_tables([stop.select(["row", "event_id"]), test.select(["row", "event_id"])])
        keys = example_keys(fr.events, both, list(fr.schema.entities))
        scores = head.predict_proba(example_states(tuned, keys, task.entities).features(task.entities))
        head.choose_threshold(labels_of(stop), scores[: stop.num_rows])
        return scores[stop.num_rows:]
