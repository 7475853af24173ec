"""The encoder pass: exact point-in-time hidden states and outcome-free event vectors, in padded batches.

- `event_vectors`: the model's own event embedding with the `outcome` fields removed (set to padding), so an
  event's own result never leaks into its score; the online scorer calls it on one event.
- `PointInTimeEncoder`: the hidden state after any set of events of an encoded table, computed with the block
  windows of `foundation.pointintime.windows` (one causal pass per block holding a queried event, padded
  batches sorted by window length), plus the event vectors and (with next-event heads) the event surprise.
- `gather_windows`: a compact encoded table of chosen windows (the full fine-tune's inputs).

Online == batch: the windows are `window_start`'s, the batch tensors come from the same `assemble` as
`foundation.pointintime.batches.window_batch`, and the event vectors are `event_vectors` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from foundation.data.collate import ArrowRows, assemble, batch_columns
from foundation.pointintime.windows import WindowPlan, block_windows, plan_windows


def outcome_keys(field_specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Batch keys of the `outcome` fields (e.g. event_type, decline_code): unknown when an event is scored."""
    keys: list[str] = []
    for spec in field_specs:
        if spec.get("outcome"):
            keys += {"categorical": [spec["name"]], "numeric": [f"{spec['name']}_bin", f"{spec['name']}_value"],
                     "text": [f"{spec['name']}_tokens"]}.get(spec["kind"], [])
    return keys


@torch.inference_mode()
def event_vectors(model: Any, batch: Mapping[str, torch.Tensor],
                  field_specs: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """The model's event embedding of every event with its outcome fields removed (set to padding, which
    embeds to zero), so an event's own result never leaks into its score.

    Args:
        model: FoundationModel (its `embeddings` module).
        batch: model batch (B, T).
        field_specs: EventTokenizer.field_specs() (carry the `outcome` flags).
    Returns:
        (B, T, H) event vectors.
    """
    clean = dict(batch)
    for key in outcome_keys(field_specs):
        if key in clean:
            clean[key] = torch.zeros_like(clean[key])
    return model.embeddings(clean)  # (B, T, H)



class PointInTimeEncoder:
    """Exact point-in-time hidden states and event vectors of a FoundationModel, in padded batches.

    Args:
        model: FoundationModel (put in eval mode here; its `max_position` is the window length).
        field_specs: EventTokenizer.field_specs().
        batch_tokens: padded events per forward pass (B * T), the memory/speed knob.
        device: where the model runs ("cpu", "cuda", ...); the model is moved there.
        progress: show tqdm bars for long passes.
        surprise: EventSurprise of the model's next-event heads: `as_of(..., with_event_vectors=True)` then also
            returns each queried event's surprise under its entity's state.

    Example:
        >>> encoder = PointInTimeEncoder(model, tokenizer.field_specs())  # doctest: +SKIP
        >>> h = encoder.states(encoded, rows=[0, 0], positions=[3, 70])  # (2, H)  # doctest: +SKIP
    """

    def __init__(self, model: Any, field_specs: Sequence[Mapping[str, Any]], batch_tokens: int = 32768,
                 device: str | torch.device = "cpu", progress: bool = True, surprise: Any = None):
        self.model = model.eval().to(device)
        self.surprise = surprise  # EventSurprise (foundation.embeddings.surprise) or None
        self.field_specs = list(field_specs)
        self.columns = batch_columns(self.field_specs)
        self.max_len = int(model.config.max_position)
        self.hidden_size = int(model.config.hidden_size)
        self.batch_tokens = max(int(batch_tokens), self.max_len)
        self.device = torch.device(device)
        self.progress = progress
        self.events_read = 0  # events passed through the encoder so far (cost counter)

    def _batch(self, source: ArrowRows, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray
               ) -> dict[str, torch.Tensor]:
        batch = assemble(source, self.columns, rows, starts, counts, rows)
        return {key: value.to(self.device) for key, value in batch.items()}

    @torch.inference_mode()
    def run_plan(self, encoded: pa.Table | ArrowRows, plan: WindowPlan, desc: str = "states") -> torch.Tensor:
        """Hidden states of a plan's queries.

        Args:
            encoded: encoded sequences (EventTokenizer.encode output) or their ArrowRows.
            plan: windows and queries (windows.plan_windows / block_windows).
            desc: progress-bar label.
        Returns:
            (Q, H) float32 tensor, query order, on the encoder's device.
        """
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        out = torch.zeros(len(plan.window), self.hidden_size, device=self.device)
        if not len(plan.window):
            return out
        # Longest windows first; batches of equal-ish length waste little padding.
        order = np.argsort(-plan.counts, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        query_rank = rank[plan.window]  # (Q,) sorted-window index of each query
        by_window = np.argsort(query_rank, kind="stable")
        bounds = np.searchsorted(query_rank[by_window], np.arange(len(order) + 1))
        total = int(plan.counts.sum())
        pieces = []
        with tqdm(total=total, desc=desc, unit="event", unit_scale=True, leave=False,
                  disable=not self.progress or total < 200_000) as bar:
            a = 0
            while a < len(order):
                width = int(plan.counts[order[a]])
                b = min(len(order), a + max(1, self.batch_tokens // max(width, 1)))
                chosen = order[a:b]
                batch = self._batch(source, plan.rows[chosen], plan.starts[chosen], plan.counts[chosen])
                hidden = self.model(batch).last_hidden_state  # (B, T, H)
                queries = by_window[bounds[a]:bounds[b]]
                local = torch.as_tensor(query_rank[queries] - a, device=self.device)
                offset = torch.as_tensor(plan.offset[queries], device=self.device)
                pieces.append((torch.as_tensor(queries, device=self.device), hidden[local, offset]))
                self.events_read += int(plan.counts[chosen].sum())
                bar.update(int(plan.counts[chosen].sum()))
                a = b
        for queries, values in pieces:
            out[queries] = values.float()
        return out

    def states(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
               positions: Sequence[int] | np.ndarray, desc: str = "states") -> np.ndarray:
        """The hidden state right after event `positions[q]` of row `rows[q]` (its block window).

        Args:
            encoded: encoded sequences.
            rows, positions: (Q,) queries; positions index the row's full sequence.
        Returns:
            (Q, H) float32.
        """
        plan = plan_windows(np.asarray(rows), np.asarray(positions), self.max_len)
        return self.run_plan(encoded, plan, desc).cpu().numpy()

    def all_states(self, encoded: pa.Table | ArrowRows, desc: str = "states") -> np.ndarray:
        """Hidden states of every event of every row, rows in order: (sum(length), H) float32."""
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        return self.run_plan(source, block_windows(source.lengths, self.max_len), desc).cpu().numpy()

    def event_vectors(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
                      positions: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Outcome-free event vectors (foundation.serving.features.event_vectors) of single events.

        Each event is embedded alone (T = 1), exactly as the scorer's `event_batch` does, so its vector
        depends on nothing but its own encoding (time gap to its entity's previous event included).

        Returns:
            (Q, H) float32 tensor on the encoder's device.
        """
        return self.event_features(encoded, rows, positions)[0]

    def event_features(self, encoded: pa.Table | ArrowRows, rows: Sequence[int] | np.ndarray,
                       positions: Sequence[int] | np.ndarray, hidden: np.ndarray | None = None,
                       has_history: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
        """Event vectors of single events and, given the states just before them (`hidden`, `has_history`)
        and next-event heads, their surprise (foundation.embeddings.surprise), from the same batches.

        Returns:
            ((Q, H) float32 tensor on the encoder's device, (Q, F) float32 surprise or None).
        """
        source = encoded if isinstance(encoded, ArrowRows) else ArrowRows(encoded)
        rows = np.asarray(rows, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        with_surprise = self.surprise is not None and hidden is not None
        vectors, surprise = [], []
        step = max(self.batch_tokens, 1)
        for a in range(0, len(rows), step):
            part = slice(a, a + step)
            batch = self._batch(source, rows[part], positions[part], np.ones(len(rows[part]), np.int64))
            vectors.append(event_vectors(self.model, batch, self.field_specs)[:, 0].float())  # (B, H)
            if with_surprise:
                h = torch.as_tensor(hidden[part], device=self.device)
                flags = torch.as_tensor(has_history[part], device=self.device)
                surprise.append(self.surprise(h, batch, flags).float().cpu().numpy())
        out = torch.cat(vectors) if vectors else torch.zeros(0, self.hidden_size, device=self.device)
        if not with_surprise:
            return out, None
        return out, np.concatenate(surprise) if surprise else np.zeros((0, len(self.surprise.names)), np.float32)


def gather_windows(encoded: pa.Table, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> pa.Table:
    """A compact encoded table whose row j is events [starts[j], starts[j] + counts[j]) of row rows[j].

    Every list column (nested ones too: text tokens) is gathered through its offsets, so a window keeps its
    events' encodings exactly (including the first event's time gap to its true predecessor). A count of
    0 gives an empty row.

    Args:
        encoded: EventTokenizer.encode output.
        rows, starts, counts: (J,) window of each output row.
    Returns:
        pa.Table with the same columns and J rows (`length` = counts).
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(rows) and (counts.min() < 0 or starts.min() < 0):
        raise ValueError("window starts and counts must be >= 0")
    lengths = encoded["length"].to_numpy().astype(np.int64)
    if len(rows) and np.any(starts + counts > lengths[rows]):
        raise ValueError("a window reaches past the end of its sequence")
    new_offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    columns = {}
    for name in encoded.column_names:
        column = encoded[name].combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            columns[name] = column.take(pa.array(rows))
            continue
        offsets = column.offsets.to_numpy().astype(np.int64)
        flat = np.repeat(offsets[rows] + starts, counts) + within
        columns[name] = pa.ListArray.from_arrays(new_offsets, column.values.take(pa.array(flat)))
    columns["length"] = pa.array(counts.astype(np.int32))
    return pa.table(columns)
