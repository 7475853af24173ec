"""Late fusion of two trained models of a run: the fraud team's model plus the foundation model's head.

`Blend` scores each example by a weighted average of the members' score ranks (each model's scores mapped to
[0, 1] by rank within the scored set, so their different calibrations do not matter), with the weight chosen
on the validation examples' PR-AUC, never on test. Its members are models of the same run trained earlier on
all labels (`FinetuneRun.predictions`), so a blend costs no training. Measured on the default world's fraud
task it beat the tuned velocity LightGBM (README ablation), where one LightGBM on the embeddings and the
velocity features together cost 10x the training time for a smaller gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from foundation.evaluation.metrics import pr_auc
from foundation.evaluation.report import ModelResult
from foundation.evaluation.splits import TaskSpec
from foundation.finetuning.examples import labels_of

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def rank_scores(scores: np.ndarray) -> np.ndarray:
    """Scores mapped to (0, 1] by their rank (ties share the average rank)."""
    scores = np.asarray(scores, dtype=np.float64)
    return rankdata(scores) / max(len(scores), 1)


def best_weight(labels: np.ndarray, first: np.ndarray, second: np.ndarray, weights: Sequence[float]) -> float:
    """The weight w of `first` (1 - w of `second`) with the best PR-AUC of the rank blend; ties: the smaller w."""
    a, b = rank_scores(first), rank_scores(second)
    scores = [pr_auc(labels, w * a + (1 - w) * b) for w in weights]
    return float(weights[int(np.argmax(scores))])


@dataclass
class Blend:
    """A rank-average blend of two models of the run (conf/head/embeddings_velocity_blend.yaml).

    Args:
        members: names of two models of the run that train before it on all labels (e.g. `mlp` and
            `velocity_lgbm_baseline`); the pipeline trains blends last.
        weights: candidate weights of the first member; the best on validation PR-AUC is kept.
    """

    members: Sequence[str]
    weights: Sequence[float] = WEIGHTS

    def __post_init__(self) -> None:
        if len(self.members) != 2:
            raise ValueError(f"a blend has two members, got {list(self.members)}")
        if not self.weights or any(not 0.0 <= float(w) <= 1.0 for w in self.weights):
            raise ValueError(f"blend weights must lie in [0, 1], got {list(self.weights)}")

    def train(self, name: str, fr: Any, task: TaskSpec, out_dir: Path) -> list[ModelResult]:
        """One ModelResult at 100% labels: the blend of the members' test scores at the validation-best weight."""
        known = fr.predictions.get(task.name, {})
        missing = [m for m in self.members if m not in known]
        if missing:
            raise ValueError(f"blend {name}: member(s) {missing} were not trained on all labels in this run "
                             f"(trained: {sorted(known)}); add them to the run's heads/baselines")
        first, second = (known[m] for m in self.members)
        validation = fr.examples[task.name]["validation"]
        weight = best_weight(labels_of(validation), first.validation, second.validation, list(self.weights))
        scores = weight * rank_scores(first.test) + (1 - weight) * rank_scores(second.test)
        test = fr.examples[task.name]["test"]
        extra = {"members": list(self.members), "weight": weight}
        return [ModelResult.from_examples(test, task.name, name, scores, 1.0, int(first.n_train), extra)]
