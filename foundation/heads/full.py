"""Full fine-tuning: the encoder and an MLP head trained end to end on a task's labels.

Each example is seen exactly as the scorer sees it (the point-in-time task features): per task entity, the
window of that entity's sequence ending at its last event before the attempt, whose final hidden state is
the entity's state; the attempt's own event vector with its outcome fields removed; the has-history flags;
all concatenated in `task_features` order and fed to the head. Gradients reach the encoder through all of
them. Training runs a bounded number of steps (CPU minutes), drawing `positive_share` of each batch from
the positives (rare fraud labels would leave most batches without one); every `eval_every` steps the
validation PR-AUC is measured and the best weights are kept.

`baseline (b)` is the same class with a randomly initialised encoder of the same config (`pretrained=False`).

On disk: `<dir>/head.safetensors` (the head MLP), `<dir>/encoder/` (the fine-tuned encoder in HF format with its
tokenizer) and `<dir>/head.json` (foundation.heads.base). `predict_proba(features)` takes features computed with
*that* encoder (`FullHead.encoder`), not the pretrained one.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from foundation.data.collate import ArrowRows, assemble, batch_columns
from foundation.evaluation.metrics import pr_auc
from foundation.heads.base import Head, best_f1_threshold, check_width
from foundation.heads.inputs import HeadInputs
from foundation.heads.mlp import mlp_body
from foundation.pointintime import (
    EVENT_ENTITY,
    ExampleStates,
    FeatureLayout,
    PointInTimeStates,
    event_vectors,
    window_start,
)

log = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """The encoded inputs of N examples, compact (no padding, no history beyond the windows).

    Attributes:
        entities: task entity type -> pa.Table of N rows: the window whose last event is the entity's last
            event before the attempt (length 0 without history).
        events: pa.Table of N one-event rows: the attempt in its customer sequence.
        labels: (N,) 0/1.
    """

    entities: dict[str, pa.Table]
    events: pa.Table
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> WindowSet:
        idx = pa.array(np.asarray(index, dtype=np.int64))
        return WindowSet({e: t.take(idx) for e, t in self.entities.items()}, self.events.take(idx),
                         self.labels[np.asarray(index, dtype=np.int64)])


def window_set(states: PointInTimeStates, examples: ExampleStates, labels: np.ndarray, entities: Sequence[str],
               max_events: int | None = None, event_entity: str = EVENT_ENTITY) -> WindowSet:
    """Gather the fine-tuning inputs of some examples from the sequence store (shard by shard).

    Args:
        states: PointInTimeStates over the full-history store (its encoder's max_len sets the windows).
        examples: ExampleStates of these examples (the as-of indices are model-independent).
        labels: (N,) 0/1.
        entities: the task's entity types.
        max_events: None = the exact point-in-time windows; an int keeps only the last `max_events` events of
            each window (cheaper training; evaluation always uses exact windows).
    Returns:
        WindowSet.
    """
    max_len = states.encoder.max_len
    tables = {}
    for entity in entities:
        end = examples.states[entity].index  # (N,) -1 without history
        start = np.asarray(window_start(np.maximum(end, 0), max_len), dtype=np.int64).reshape(-1)
        if max_events is not None:
            start = np.maximum(start, end - int(max_events) + 1)
        tables[entity] = states.windows(entity, examples.keys.column(f"{entity}_id"), np.maximum(start, 0), end)
    position = examples.states[event_entity].index + 1  # the attempt sits right after its customer state
    events = states.windows(event_entity, examples.keys.column(f"{event_entity}_id"), position, position)
    return WindowSet(tables, events, np.asarray(labels, dtype=np.int64))


def windows_batch(table: pa.Table, rows: np.ndarray, columns: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """The model batch of some rows of a windows table (`PointInTimeStates.windows`), each row's events whole."""
    source = ArrowRows(table)
    counts = source.lengths[rows]
    batch = assemble(source, columns, rows, np.zeros(len(rows), np.int64), counts, rows)
    return {k: v.to(device) for k, v in batch.items()}


def save_with_tokenizer(directory: Path, tokenizer: Any = None) -> Path:
    """Add the tokenizer to a saved head's encoder/ folder (a head with its own encoder is a whole model)."""
    if tokenizer is not None:
        tokenizer.save_pretrained(directory / "encoder")
    return directory


def write_head_and_encoder(directory: Path, head: nn.Module, encoder: Any) -> None:
    """head.safetensors (the head's weights) and encoder/ (the fine-tuned encoder, HF format)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, directory / "head.safetensors")
    encoder.save_pretrained(directory / "encoder")


def positive_share_batch(rng: np.random.Generator, labels: np.ndarray, batch_size: int, positive_share: float
                         ) -> np.ndarray:
    """Indices of a training batch of 0/1 labels with `positive_share` of it drawn from the positives (with
    replacement: rare positives would leave most uniform batches without one)."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(positives), int(round(batch_size * positive_share))) if len(positives) else 0
    return np.r_[rng.choice(positives, n_pos), rng.choice(negatives, batch_size - n_pos)]


@dataclass
class EndToEndRun:
    """How an end-to-end fine-tune went: best validation score and its step, why it stopped, the validation
    score at each check, the training loss of each step."""

    best: float
    best_step: int
    stopped_by: str
    history: list[tuple[int, float]]
    losses: list[float]


def train_end_to_end(encoder: nn.Module, head: nn.Module, rates: tuple[float, float, float],
                     step_loss: Callable[[], torch.Tensor], validate: Callable[[], float], steps: int, eval_every: int,
                     patience: int, budget_minutes: float | None, desc: str = "fine-tune") -> EndToEndRun:
    """AdamW on the encoder and the head (learning rates `rates[:2]`, weight decay `rates[2]`) for at most `steps`
    steps and `budget_minutes`, gradients clipped to norm 1; every `eval_every` steps (and at the last one)
    `validate()` scores the model (higher is better) and `patience` checks without improvement stop the run. The
    encoder and the head end with the best weights, in eval mode."""
    encoder_lr, head_lr, weight_decay = rates
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": encoder_lr},
                                   {"params": head.parameters(), "lr": head_lr}], weight_decay=weight_decay)
    best, best_step, state, history, bad, losses = -np.inf, 0, None, [], 0, []
    deadline = None if budget_minutes is None else time.monotonic() + 60.0 * budget_minutes
    stopped_by = "steps"
    bar = tqdm(range(1, steps + 1), desc=desc, unit="step", leave=False)
    for step in bar:
        encoder.train()
        head.train()
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*encoder.parameters(), *head.parameters()], 1.0)
        optimizer.step()
        losses.append(loss.item())
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if step % eval_every == 0 or step == steps or out_of_time:
            encoder.eval()
            head.eval()
            score = float(validate())
            history.append((step, round(score, 6)))
            bar.set_postfix(loss=f"{np.mean(losses[-eval_every:]):.4f}", validation=f"{score:.4f}")
            if score > best:
                best, best_step, bad = score, step, 0
                state = (copy.deepcopy(encoder.state_dict()), copy.deepcopy(head.state_dict()))
            else:
                bad += 1
                if bad >= patience:
                    stopped_by = "patience"
                    break
            if out_of_time:
                stopped_by = "budget"
                break
    encoder.load_state_dict(state[0])
    head.load_state_dict(state[1])
    encoder.eval()
    head.eval()
    return EndToEndRun(float(best), best_step, stopped_by, history, losses)


class FullHead(Head):
    """Encoder + MLP head fine-tuned end to end.

    Args:
        encoder: FoundationModel (pretrained, or freshly initialised for the from-scratch baseline).
        field_specs: EventTokenizer.field_specs().
        entities: the task's entity types (feature order).
        hidden_sizes, dropout: the head MLP.
        encoder_lr, head_lr, weight_decay: AdamW settings (the encoder moves slower than the head).
        steps: optimisation steps at most.
        budget_minutes: wall-clock budget of the training loop (None: no budget); when it runs out the loop
            validates once more and stops, keeping the best weights so far (a CPU-minutes knob; on a GPU the
            step count is the bound).
        batch_size: examples per step.
        eval_every: steps between validation PR-AUC checks (early stopping on it).
        patience: checks without improvement before stopping.
        positive_share: share of each batch drawn from the positive examples.
        train_window: None = exact point-in-time windows in training; an int caps them (faster).
        seed: sampling and head-initialisation seed.
        device: where training runs.
        pretrained: whether the encoder came from pretraining (recorded in head.json).
    """

    head_type = "full"
    file_format = "safetensors"
    weight_files = ("head.safetensors", "encoder/config.json")
    own_keys = ("encoder", "feature_layout", "settings")

    def __init__(self, encoder: Any, field_specs: Sequence[Mapping[str, Any]], entities: Sequence[str],
                 hidden_sizes: Sequence[int] = (128,), dropout: float = 0.1, encoder_lr: float = 3e-4,
                 head_lr: float = 1e-3, weight_decay: float = 0.01, steps: int = 200, batch_size: int = 32,
                 eval_every: int = 50, patience: int = 3, positive_share: float = 0.25,
                 train_window: int | None = None, seed: int = 0, device: str = "cpu", pretrained: bool = True,
                 budget_minutes: float | None = None):
        super().__init__()
        self.encoder = encoder.to(device)
        self.field_specs = list(field_specs)
        self.columns = batch_columns(self.field_specs)
        self.layout = FeatureLayout(tuple(entities), int(encoder.config.hidden_size))
        self.hidden_sizes, self.dropout = [int(s) for s in hidden_sizes], float(dropout)
        self.encoder_lr, self.head_lr, self.weight_decay = float(encoder_lr), float(head_lr), float(weight_decay)
        self.steps, self.batch_size, self.eval_every = int(steps), int(batch_size), int(eval_every)
        self.patience, self.positive_share = int(patience), float(positive_share)
        self.train_window = None if train_window is None else int(train_window)
        self.seed, self.device, self.pretrained = int(seed), torch.device(device), bool(pretrained)
        self.budget_minutes = None if budget_minutes is None else float(budget_minutes)
        torch.manual_seed(self.seed)
        self.head = mlp_body(self.layout.n_features, self.hidden_sizes, self.dropout).to(self.device)
        self.inputs = HeadInputs.of(self.layout)

    @classmethod
    def for_task(cls, task: Any, encoder: Any = None, field_specs: Sequence[Mapping[str, Any]] = (),
                 **settings: Any) -> FullHead:
        """conf/head/full.yaml `_target_`: the encoder to fine-tune and the task's entities complete the settings."""
        return cls(encoder, field_specs, task.entities, **settings)

    def result_extra(self) -> dict[str, Any]:
        return {"best_step": self.info["best_step"], "validation_pr_auc": self.info["validation_pr_auc"]}

    @property
    def n_features(self) -> int:
        return self.layout.n_features

    def settings(self) -> dict[str, Any]:
        return {"hidden_sizes": self.hidden_sizes, "dropout": self.dropout, "encoder_lr": self.encoder_lr,
                "head_lr": self.head_lr, "weight_decay": self.weight_decay, "steps": self.steps,
                "batch_size": self.batch_size, "eval_every": self.eval_every, "patience": self.patience,
                "positive_share": self.positive_share, "train_window": self.train_window, "seed": self.seed,
                "pretrained": self.pretrained, "budget_minutes": self.budget_minutes}

    # ------------------------------------------------------------ features

    def _batch(self, table: pa.Table, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return windows_batch(table, rows, self.columns, self.device)

    def features(self, windows: WindowSet) -> torch.Tensor:
        """(N, D) task features of a WindowSet with the current encoder, in `task_features` order.

        Runs with autograd when grad is enabled (training), so the loss reaches the encoder.
        """
        n = len(windows)
        hidden, flags = [], []
        for entity in self.layout.entities:
            table = windows.entities[entity]
            lengths = table["length"].to_numpy().astype(np.int64)
            rows = np.flatnonzero(lengths > 0)
            state = torch.zeros(n, self.layout.hidden_size, device=self.device)
            if len(rows):
                out = self.encoder(self._batch(table, rows)).entity_embedding  # (B', H)
                state = state.index_copy(0, torch.as_tensor(rows, device=self.device), out)
            hidden.append(state)
            flags.append(torch.as_tensor(lengths > 0, dtype=torch.float32, device=self.device).unsqueeze(1))
        # The scorer's event_vectors runs under inference mode; its undecorated body keeps the graph.
        vector = event_vectors.__wrapped__(self.encoder, self._batch(windows.events, np.arange(n)),
                                           self.field_specs)[:, 0]  # (N, H)
        return torch.cat([*hidden, vector, *flags], dim=1)

    # ------------------------------------------------------------ training

    def _sample(self, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
        return positive_share_batch(rng, labels, self.batch_size, self.positive_share)

    def predict_windows(self, windows: WindowSet, batch_size: int = 256) -> np.ndarray:
        """(N,) probabilities from a WindowSet (encoder and head in eval mode)."""
        self.encoder.eval()
        self.head.eval()
        out = []
        with torch.inference_mode():
            for a in range(0, len(windows), batch_size):
                part = windows.take(np.arange(a, min(a + batch_size, len(windows))))
                out.append(torch.sigmoid(self.head(self.features(part)).squeeze(-1)).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def fit(self, train: WindowSet, validation: WindowSet) -> FullHead:
        """Fine-tune for at most `steps` steps, keeping the weights with the best validation PR-AUC.

        Args:
            train: training examples (both classes).
            validation: early-stopping examples (both classes).
        Returns:
            self.
        """
        for name, labels in (("train", train.labels), ("validation", validation.labels)):
            if len(np.unique(labels)) < 2:
                raise ValueError(f"full head: the {name} examples hold a single class")
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        loss_fn = nn.BCEWithLogitsLoss()

        def step_loss() -> torch.Tensor:
            batch = train.take(self._sample(rng, train.labels))
            logits = self.head(self.features(batch)).squeeze(-1)
            return loss_fn(logits, torch.as_tensor(batch.labels, dtype=torch.float32, device=self.device))

        run = train_end_to_end(self.encoder, self.head, (self.encoder_lr, self.head_lr, self.weight_decay), step_loss,
                               lambda: pr_auc(validation.labels, self.predict_windows(validation)), self.steps,
                               self.eval_every, self.patience, self.budget_minutes)
        self.info = {"best_step": run.best_step, "steps_run": len(run.losses), "stopped_by": run.stopped_by,
                     "validation_pr_auc": run.best, "validation_pr_auc_by_step": run.history,
                     "final_train_loss": float(np.mean(run.losses[-10:])),
                     "n_train": int(len(train)), "n_train_positive": int(train.labels.sum()),
                     "n_validation_early_stopping": int(len(validation))}
        log.info("full head: best step %d/%d (stopped by %s), validation PR-AUC %.4f", run.best_step,
                 len(run.losses), run.stopped_by, run.best)
        return self

    def choose_threshold(self, labels: np.ndarray, scores: np.ndarray) -> float:
        """Set the F1-best threshold on validation scores (computed with exact point-in-time features)."""
        self.threshold, f1 = best_f1_threshold(np.asarray(labels), np.asarray(scores))
        self.info["validation_f1_at_threshold"] = f1
        return self.threshold

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N,) probabilities of task features X (N, D) computed with this head's encoder."""
        X = check_width(X, self.n_features)
        self.head.eval()
        out = [torch.sigmoid(self.head(torch.as_tensor(X[a:a + 65536], device=self.device)).squeeze(-1))
               for a in range(0, len(X), 65536)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    # ------------------------------------------------------------ files

    def save(self, directory: str | Path, tokenizer: Any = None, **metadata: Any) -> Path:
        """Write head.safetensors, encoder/ (HF format, plus the tokenizer when given) and head.json."""
        return save_with_tokenizer(super().save(directory, **metadata), tokenizer)

    def _write_weights(self, directory: Path) -> dict[str, Any]:
        write_head_and_encoder(directory, self.head, self.encoder)
        return {"encoder": "encoder", "entity_types": list(self.layout.entities), "settings": self.settings()}

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> FullHead:
        """Load a head written by save(): the fine-tuned encoder and the head; predictions are identical."""
        return super().load(directory, device=device)

    @classmethod
    def _read(cls, directory: Path, meta: dict[str, Any], device: str = "cpu", **options: Any) -> FullHead:
        from foundation.model import FoundationModel

        encoder = FoundationModel.from_pretrained(directory / "encoder").eval()
        model = cls(encoder, encoder.config.fields, meta["feature_layout"]["entities"], device=device,
                    **dict(meta.get("settings", {})))
        model.head.load_state_dict(load_file(directory / "head.safetensors"))
        model.head.eval()
        return model
