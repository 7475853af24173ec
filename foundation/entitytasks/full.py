"""Full fine-tuning of an entity task: the encoder and a head trained end to end on the entity's window as of
each date.

Each example is the window of the entity's sequence that ends at its last event at or before as_of (the window
rule of `foundation.pointintime.window_start`, so the pretrained encoder gives exactly the frozen entity
embedding), plus the two query columns of `foundation.entitytasks.embedding` (has-history flag, log days since
that event). The head and the loss follow the target's problem (`entity_loss`): binary batches draw
`positive_share` positives (rare outcomes such as churn would leave most batches without one) and early-stop on
validation PR-AUC; regression and multiclass draw uniformly and early-stop on the validation loss. Bounded by
steps and a wall-clock budget like the event tasks' `full` head (conf/head/full.yaml settings).

On disk like the event `full` head: head.safetensors (the head), encoder/ (the fine-tuned encoder, HF format, with
the tokenizer) and head.json (`head: entity_full`). Batch scoring only: the service's entity route serves the
heads on the pretrained embedding (probe, mlp, gbdt).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file

from foundation.data.collate import batch_columns
from foundation.entitytasks.embedding import elapsed_feature, last_event_times
from foundation.entitytasks.heads import entity_loss, entity_outputs
from foundation.evaluation.metrics import pr_auc
from foundation.heads.base import Head, check_width
from foundation.heads.full import (
    positive_share_batch,
    save_with_tokenizer,
    train_end_to_end,
    windows_batch,
    write_head_and_encoder,
)
from foundation.heads.mlp import mlp_body
from foundation.pointintime import PointInTimeStates, window_start

log = logging.getLogger(__name__)

# conf/head/full.yaml settings that carry over to entity tasks (the event-only ones, such as train_window, do not)
SHARED_SETTINGS = ("hidden_sizes", "dropout", "encoder_lr", "head_lr", "weight_decay", "steps", "budget_minutes",
                   "batch_size", "eval_every", "patience", "positive_share")


@dataclass
class EntityWindows:
    """The inputs of N entity examples.

    Attributes:
        windows: pa.Table of N rows: the entity's window ending at its last event at or before as_of (length 0
            without history).
        query: (N, 2) float32: has-history flag, log(1 + days from that event to as_of).
    """

    windows: pa.Table
    query: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def take(self, index: np.ndarray) -> EntityWindows:
        index = np.asarray(index, dtype=np.int64)
        return EntityWindows(self.windows.take(pa.array(index)), self.query[index])


def entity_windows(store: Any, max_len: int, entity: str, entity_ids: pa.Array, as_of: np.ndarray) -> EntityWindows:
    """The fine-tuning inputs of entity examples (model-free: the windows are the store's encoded events).

    Args:
        store: the SequenceStore; max_len: the model's max_position (its window rule).
        entity: entity type; entity_ids: (Q,) ids; as_of: (Q,) epoch ms (events at or before it count).
    """
    ids = pc.cast(entity_ids, pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    as_of = np.asarray(as_of, np.int64)
    states = PointInTimeStates(store, None)  # windows and positions only: no model pass
    end = states.positions(entity, ids, as_of + 1)  # the embedding's rule: strictly before as_of + 1 ms
    start = np.asarray(window_start(np.maximum(end, 0), max_len), np.int64).reshape(-1)
    elapsed = elapsed_feature(last_event_times(store, entity, ids, end), as_of)
    return EntityWindows(states.windows(entity, ids, start, end),
                         np.stack([(end >= 0).astype(np.float32), elapsed], axis=1))


class EntityFullHead(Head):
    """Encoder + head fine-tuned end to end for a binary, regression or multiclass entity target.

    Args:
        encoder: FoundationModel (pretrained).
        field_specs: EventTokenizer.field_specs().
        problem, n_classes: the target (foundation.entitytasks.spec.TargetSpec).
        hidden_sizes, dropout: the head MLP; encoder_lr, head_lr, weight_decay: AdamW.
        steps, budget_minutes: at most this many steps and wall-clock minutes (None: steps only).
        batch_size, eval_every, patience: examples per step; steps between validation checks; checks without
            improvement before stopping.
        positive_share: share of each binary batch drawn from the positives.
        seed, device, pretrained: sampling seed, where it trains, whether the encoder was pretrained (head.json).
    """

    head_type = "entity_full"
    file_format = "safetensors"
    weight_files = ("head.safetensors", "encoder/config.json")
    own_keys = ("encoder", "settings")

    def __init__(self, encoder: Any, field_specs: Sequence[Mapping[str, Any]], problem: str = "binary",
                 n_classes: int = 2, hidden_sizes: Sequence[int] = (128,), dropout: float = 0.1,
                 encoder_lr: float = 3e-4, head_lr: float = 1e-3, weight_decay: float = 0.01, steps: int = 300,
                 budget_minutes: float | None = None, batch_size: int = 32, eval_every: int = 50, patience: int = 2,
                 positive_share: float = 0.25, seed: int = 0, device: str = "cpu", pretrained: bool = True):
        super().__init__()
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device)
        self.field_specs, self.columns = list(field_specs), batch_columns(list(field_specs))
        self.problem, self.n_classes = str(problem), int(n_classes)
        self.hidden_sizes, self.dropout = [int(s) for s in hidden_sizes], float(dropout)
        self.encoder_lr, self.head_lr, self.weight_decay = float(encoder_lr), float(head_lr), float(weight_decay)
        self.steps, self.batch_size, self.eval_every = int(steps), int(batch_size), int(eval_every)
        self.patience, self.positive_share = int(patience), float(positive_share)
        self.budget_minutes = None if budget_minutes is None else float(budget_minutes)
        self.seed, self.pretrained = int(seed), bool(pretrained)
        self.hidden_size = int(encoder.config.hidden_size)
        self.target_mean, self.target_std = 0.0, 1.0
        torch.manual_seed(self.seed)
        self.head = mlp_body(self.n_features, self.hidden_sizes, self.dropout)
        if self.problem == "multiclass":  # K logits
            self.head[-1] = torch.nn.Linear(self.head[-1].in_features, self.n_classes)
        self.head = self.head.to(self.device)

    @property
    def n_features(self) -> int:
        return self.hidden_size + 2

    def settings(self) -> dict[str, Any]:
        return {"problem": self.problem, "n_classes": self.n_classes, "hidden_sizes": self.hidden_sizes,
                "dropout": self.dropout, "encoder_lr": self.encoder_lr, "head_lr": self.head_lr,
                "weight_decay": self.weight_decay, "steps": self.steps, "budget_minutes": self.budget_minutes,
                "batch_size": self.batch_size, "eval_every": self.eval_every, "patience": self.patience,
                "positive_share": self.positive_share, "seed": self.seed, "pretrained": self.pretrained}

    def features(self, inputs: EntityWindows) -> torch.Tensor:
        """(N, H + 2): the encoder's state at each window's last event (zeros without history), then the query
        columns; with autograd when grad is enabled."""
        lengths = inputs.windows["length"].to_numpy().astype(np.int64)
        rows = np.flatnonzero(lengths > 0)
        state = torch.zeros(len(inputs), self.hidden_size, device=self.device)
        if len(rows):
            out = self.encoder(windows_batch(inputs.windows, rows, self.columns, self.device)).entity_embedding
            state = state.index_copy(0, torch.as_tensor(rows, device=self.device), out)
        return torch.cat([state, torch.as_tensor(inputs.query, device=self.device)], dim=1)

    def _sample(self, rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
        if self.problem != "binary":
            return rng.choice(len(y), self.batch_size)
        return positive_share_batch(rng, y, self.batch_size, self.positive_share)

    def _logits(self, inputs: EntityWindows, batch_size: int = 256) -> torch.Tensor:
        self.encoder.eval()
        self.head.eval()
        with torch.inference_mode():
            parts = [self.head(self.features(inputs.take(np.arange(a, min(a + batch_size, len(inputs))))))
                     for a in range(0, len(inputs), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 1)

    def _validation_score(self, inputs: EntityWindows, y: np.ndarray) -> float:
        """Higher is better: PR-AUC (binary), minus the loss (regression, multiclass)."""
        logits = self._logits(inputs)
        if self.problem == "binary":
            return pr_auc(y, torch.sigmoid(logits.squeeze(-1)).double().numpy())
        target = torch.as_tensor(np.asarray(y, np.float32))
        return -float(entity_loss(self.problem, logits, target, 1.0, self.target_mean, self.target_std))

    def fit(self, train: EntityWindows, y_train: np.ndarray, validation: EntityWindows, y_val: np.ndarray
            ) -> EntityFullHead:
        """Fine-tune for at most `steps` steps (and `budget_minutes`), keeping the best validation weights."""
        y_train, y_val = np.asarray(y_train), np.asarray(y_val)
        if self.problem == "binary" and (len(np.unique(y_train)) < 2 or len(np.unique(y_val)) < 2):
            raise ValueError("entity full head: the train or validation examples hold a single class")
        if self.problem == "regression":
            self.target_mean, self.target_std = float(np.mean(y_train)), float(max(np.std(y_train), 1e-9))
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)

        def step_loss() -> torch.Tensor:
            index = self._sample(rng, y_train)
            target = torch.as_tensor(y_train[index].astype(np.float32), device=self.device)
            return entity_loss(self.problem, self.head(self.features(train.take(index))), target, 1.0,
                               self.target_mean, self.target_std)

        run = train_end_to_end(self.encoder, self.head, (self.encoder_lr, self.head_lr, self.weight_decay), step_loss,
                               lambda: self._validation_score(validation, y_val), self.steps, self.eval_every,
                               self.patience, self.budget_minutes, desc="entity fine-tune")
        self.info = {"best_step": run.best_step, "steps_run": len(run.losses), "stopped_by": run.stopped_by,
                     "validation_score": run.best, "validation_score_by_step": run.history,
                     "final_train_loss": float(np.mean(run.losses[-10:])), "n_train": int(len(y_train)),
                     "target_mean": self.target_mean, "target_std": self.target_std}
        log.info("entity full head: best step %d/%d (stopped by %s), validation %s %.4f", run.best_step,
                 len(run.losses), run.stopped_by, "PR-AUC" if self.problem == "binary" else "-loss", run.best)
        return self

    def predict_windows(self, inputs: EntityWindows) -> np.ndarray:
        """(N,) probabilities or values, or (N, K) class probabilities, of entity examples."""
        return entity_outputs(self.problem, self._logits(inputs), self.target_mean, self.target_std)

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The same from (N, H + 2) embeddings computed with this head's own encoder (`self.encoder`)."""
        X = check_width(X, self.n_features)
        self.head.eval()
        return entity_outputs(self.problem, self.head(torch.as_tensor(X, device=self.device)), self.target_mean,
                              self.target_std)

    # ------------------------------------------------------------ files

    def save(self, directory: str | Path, tokenizer: Any = None, **metadata: Any) -> Path:
        """Write head.safetensors, encoder/ (HF format, plus the tokenizer when given) and head.json."""
        return save_with_tokenizer(super().save(directory, **metadata), tokenizer)

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        write_head_and_encoder(directory, self.head, self.encoder)
        return {"encoder": "encoder", "settings": {**self.settings(), "target_mean": self.target_mean,
                                                   "target_std": self.target_std}}

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], device: str = "cpu", **options: Any) -> EntityFullHead:
        from foundation.model import FoundationModel

        encoder = FoundationModel.from_pretrained(directory / "encoder").eval()
        settings = dict(meta["settings"])
        mean, std = settings.pop("target_mean"), settings.pop("target_std")
        model = cls(encoder, encoder.config.fields, device=device, **settings)
        model.target_mean, model.target_std = float(mean), float(std)
        model.head.load_state_dict(load_file(directory / "head.safetensors"))
        model.head.eval()
        return model
