"""Collate encoded sequences into the padded batch of the batch contract (`foundation.batch`).

A batch arrives as a ``pa.Table``/``pa.RecordBatch`` slice of encoded rows (fast path: windows are
gathered straight from the arrow buffers through the list offsets, so the cost follows B * T and not
the full history length) or as HF-dataset rows (a list of dicts, or a dict of columns). Windows:

- ``"random"``: a random contiguous crop of min(length, max_len) events (pretraining);
- ``"last"``: the last max_len events (scoring "now");
- ``views > 1``: CoLES-style contrastive sub-sequences, each of random length in [min_len, max_len];
  rows i, i + B, i + 2B, ... are views of entity i and share ``entity_index``.

A cropped window keeps its first event's ``time_gap`` as encoded (gap to the true previous event),
which is earlier information, so cropping never breaks point-in-time correctness.

Example::

    collate = EventCollator(tokenizer.field_specs(), max_len=256, window="random", seed=0)
    batch = collate(encoded.slice(0, 64))   # dict[str, torch.Tensor], the foundation.batch contract
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

TIME_COLUMNS = {"time_gap_bin": "int", "time_gap": "float", "hour": "int", "dow": "int"}
WINDOWS = ("random", "last")


@dataclass(frozen=True)
class BatchColumn:
    """One per-event column of the batch: ``kind`` is int (long ids), float, tokens (B, T, K) or label."""

    name: str
    kind: str
    max_tokens: int = 0

    @property
    def pad(self) -> float:
        return float("nan") if self.kind == "label" else 0


def batch_columns(field_specs: Sequence[Mapping[str, Any]], label_names: Sequence[str] = ()) -> list[BatchColumn]:
    """The per-event columns a batch holds, from the tokenizer's field specs (``event_time`` first)."""
    columns = [BatchColumn("event_time", "int")]
    for spec in field_specs:
        kind, name = spec["kind"], spec["name"]
        if kind == "time":
            columns += [BatchColumn(c, k) for c, k in TIME_COLUMNS.items()]
        elif kind == "categorical":
            columns.append(BatchColumn(name, "int"))
        elif kind == "numeric":
            columns += [BatchColumn(f"{name}_bin", "int"), BatchColumn(f"{name}_value", "float")]
        elif kind == "text":
            columns.append(BatchColumn(f"{name}_tokens", "tokens", int(spec["max_tokens"])))
        else:
            raise ValueError(f"field spec {name!r}: unknown kind {kind!r}")
    columns += [BatchColumn(f"label_{name}", "label") for name in label_names]
    return columns


# ---------------------------------------------------------------- batch sources


class ArrowRows:
    """Encoded rows as arrow list columns; windows are gathered through the list offsets (zero copy)."""

    def __init__(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self.table = table
        self.num_rows = table.num_rows
        for required in ("entity_type", "length", "event_time"):
            if required not in table.column_names:
                raise ValueError(f"encoded batch lacks column {required!r} (has {table.column_names})")
        self.entity_type = table["entity_type"].to_numpy().astype(np.int64)
        self.lengths = table["length"].to_numpy().astype(np.int64)
        event_offsets = self._list(table["event_time"], "event_time")[0]
        if not np.array_equal(np.diff(event_offsets), self.lengths):
            raise ValueError("column 'length' disagrees with the number of events in 'event_time'")
        # Gather index of the last window request, reused by every column with the same offsets: building
        # it costs more than the gathers themselves.
        self._index_key: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None
        self._index: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def has(self, column: str) -> bool:
        return column in self.table.column_names

    @staticmethod
    def _list(data: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, pa.Array]:
        """(offsets (rows + 1,) int64 into values, values) of a list column, without copying values."""
        if isinstance(data, pa.ChunkedArray):
            data = data.chunk(0) if data.num_chunks == 1 else data.combine_chunks()
        if not (pa.types.is_list(data.type) or pa.types.is_large_list(data.type)):
            raise ValueError(f"column {name!r}: expected a list column, got {data.type}")
        if data.null_count:
            raise ValueError(f"column {name!r}: null rows in an encoded batch")
        return data.offsets.to_numpy().astype(np.int64), data.values

    @staticmethod
    def _numpy(values: pa.Array, name: str) -> np.ndarray:
        if values.null_count:
            raise ValueError(f"column {name!r}: null values in an encoded batch (encode writes none)")
        return values.to_numpy(zero_copy_only=False)

    def _gather_index(self, first: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                      width: int) -> tuple[np.ndarray, np.ndarray]:
        """(event (B', T) flat index, 0 on padding; mask (B', T)) for windows at row offsets ``first``."""
        key = self._index_key
        if key is None or key[3] != width or not (np.array_equal(key[0], first) and np.array_equal(
                key[1], starts) and np.array_equal(key[2], counts)):
            t = np.arange(width)
            mask = t[None, :] < counts[:, None]  # (B', T)
            event = (first + starts)[:, None] + t[None, :]  # (B', T)
            event *= mask
            self._index_key, self._index = (first, starts, counts, width), (event, mask)
        return self._index

    def window(self, column: BatchColumn, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray,
               width: int) -> np.ndarray:
        """Events [start, start + count) of each row, right-padded: (B', width) or (B', width, K)."""
        offsets, values = self._list(self.table[column.name], column.name)
        event, mask = self._gather_index(offsets[rows], starts, counts, width)
        if column.kind == "tokens":
            # Each event's tokens are a fixed-size run: view them as (events, K) when the offsets are
            # regular, which they are for anything EventTokenizer.encode wrote.
            token_offsets, token_values = self._list(values, column.name)
            k, base = column.max_tokens, token_offsets[0]
            if not (np.array_equal(token_offsets[event], base + k * event)
                    and np.array_equal(token_offsets[event + 1], base + k * (event + 1))):
                raise ValueError(f"column {column.name!r}: events must hold exactly {k} tokens")
            flat = self._numpy(token_values, column.name)[base:]
            n_events = len(token_offsets) - 1
            if n_events == 0:
                return np.zeros(mask.shape + (k,), dtype=np.int64)
            out = flat[: n_events * k].reshape(n_events, k)[event]  # (B', T, K)
            out *= mask[..., None]
            return out
        flat = self._numpy(values, column.name)
        if flat.size == 0:
            return np.full(mask.shape, column.pad, dtype=np.float32 if column.kind != "int" else np.int64)
        out = flat[event]  # (B', T)
        if column.kind == "int":
            out *= mask  # cheaper than a boolean scatter, exact for ids
        else:
            out[~mask] = column.pad  # floats: multiplying would keep NaN/inf on padding
        return out


class PythonRows:
    """Encoded rows from an HF dataset: a list of dicts, or a dict of columns (lists or arrays per row).

    Each (row, window) is sliced before conversion to numpy, so only the windowed events are copied.
    """

    def __init__(self, batch: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> None:
        if isinstance(batch, Mapping):
            self._columns = batch
            self.num_rows = len(batch["entity_type"])
        else:
            self._columns = {key: [row[key] for row in batch] for key in (batch[0] if batch else {})}
            self.num_rows = len(batch)
        for required in ("entity_type", "event_time"):
            if self.num_rows and required not in self._columns:
                raise ValueError(f"encoded rows lack column {required!r}")
        self.entity_type = np.asarray(self._columns.get("entity_type", []), dtype=np.int64)
        if "length" in self._columns:
            self.lengths = np.asarray(self._columns["length"], dtype=np.int64)
        else:
            self.lengths = np.array([len(v) for v in self._columns.get("event_time", [])], dtype=np.int64)

    def has(self, column: str) -> bool:
        return column in self._columns

    def window(self, column: BatchColumn, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray,
               width: int) -> np.ndarray:
        """Events [start, start + count) of each row, right-padded: (B', width) or (B', width, K)."""
        shape = (len(rows), width) + ((column.max_tokens,) if column.kind == "tokens" else ())
        dtype = np.float32 if column.kind in ("float", "label") else np.int64
        out = np.full(shape, column.pad, dtype=dtype)
        values = self._columns[column.name]
        for j, (row, start, count) in enumerate(zip(rows, starts, counts)):
            piece = np.asarray(values[row][start: start + count], dtype=dtype)
            if len(values[row]) != self.lengths[row]:
                raise ValueError(f"column {column.name!r}: row {row} has {len(values[row])} events, "
                                 f"length says {self.lengths[row]}")
            if column.kind == "tokens" and count and piece.shape[1:] != (column.max_tokens,):
                raise ValueError(f"column {column.name!r}: events must hold exactly {column.max_tokens} tokens")
            out[j, :count] = piece
        return out


def batch_source(batch: Any) -> ArrowRows | PythonRows:
    """Wrap any supported batch type (pa.Table, pa.RecordBatch, list of dicts, dict of columns)."""
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        return ArrowRows(batch)
    if isinstance(batch, (Mapping, Sequence)):
        return PythonRows(batch)
    raise TypeError(f"cannot collate a batch of type {type(batch).__name__}")


# ---------------------------------------------------------------- assembly


def assemble(source: ArrowRows | PythonRows, columns: Sequence[BatchColumn], rows: np.ndarray,
             starts: np.ndarray, counts: np.ndarray, entity_index: np.ndarray,
             pad_missing: bool = True) -> dict[str, torch.Tensor]:
    """Build the padded batch from one window (row, start, count) per output row.

    Args:
        source: the encoded rows.
        columns: per-event columns to emit (``batch_columns``).
        rows, starts, counts: (B',) source row, first event and number of events of each window.
        entity_index: (B',) value shared by windows of the same entity.
        pad_missing: field columns absent from the source become all-padding tensors (ids 0, values
            0.0) so every batch has the same keys; False leaves them out. A missing label is an error.
    Returns:
        dict of tensors; T = the longest window.
    """
    width = int(counts.max()) if len(counts) else 0
    batch: dict[str, torch.Tensor] = {
        "entity_type": torch.from_numpy(source.entity_type[rows]),
        "lengths": torch.from_numpy(counts.astype(np.int64)),
        "attention_mask": torch.from_numpy(np.arange(width)[None, :] < counts[:, None]),
        "entity_index": torch.from_numpy(np.asarray(entity_index, dtype=np.int64)),
    }
    for column in columns:
        if source.has(column.name):
            values = source.window(column, rows, starts, counts, width)
        elif column.kind == "label":  # a missing label would silently mean "no supervision": refuse
            raise ValueError(f"label column {column.name!r} is not in the batch")
        elif pad_missing:
            shape = (len(rows), width) + ((column.max_tokens,) if column.kind == "tokens" else ())
            values = np.full(shape, column.pad, dtype=np.float32 if column.kind in ("float", "label") else np.int64)
        else:
            continue
        dtype = np.float32 if column.kind in ("float", "label") else np.int64
        batch[column.name] = torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))
    return batch


class EventCollator:
    """Turns a batch of encoded rows into the padded batch dict of the `foundation.batch` contract.

    Args:
        field_specs: ``EventTokenizer.field_specs()``.
        max_len: longest window in events.
        window: "random" (random contiguous crop, pretraining) or "last" (the last max_len events).
        label_names: labels to emit as ``label_<name>`` (B, T) float32, NaN unknown; each must be in
            every batch (a missing label column is an error, never silent NaN).
        views: windows per entity; views > 1 draws contrastive sub-sequences of random length in
            [min_len, max_len] (needs window="random"); output rows i, i + B, ... share ``entity_index``.
        min_len: shortest contrastive view (shorter sequences give their whole length).
        seed: seed of the window draws; None draws fresh entropy. Inside DataLoader workers the draws
            are seeded from (seed, the worker's torch seed), so workers differ and epochs differ.
        pad_missing: fields absent from a batch (e.g. agg_* columns in a customer batch) become
            all-padding tensors so every batch has the same keys.
    """

    def __init__(self, field_specs: Sequence[Mapping[str, Any]], max_len: int, window: str = "random",
                 label_names: Sequence[str] = (), views: int = 1, seed: int | None = None, min_len: int = 1,
                 pad_missing: bool = True) -> None:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
        if max_len < 1 or not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
        if views < 1 or (views > 1 and window != "random"):
            raise ValueError(f"views={views} needs views >= 1, and window='random' when views > 1")
        self.columns = batch_columns(field_specs, label_names)
        self.max_len, self.window, self.views, self.min_len = max_len, window, views, min_len
        self.seed, self.pad_missing = seed, pad_missing
        self._rng: np.random.Generator | None = None
        self._rng_worker: int | None = None

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if self._rng is None or self._rng_worker != worker:
            if info is None:
                entropy = self.seed
            else:  # info.seed changes per worker and per epoch and follows torch's seed
                entropy = [info.seed] if self.seed is None else [self.seed, info.seed]
            self._rng, self._rng_worker = np.random.default_rng(entropy), worker
        return self._rng

    def windows(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Choose the windows of a batch of B sequences.

        Args:
            lengths: (B,) sequence lengths.
        Returns:
            rows, starts, counts, entity_index, each (B * views,).
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        rows = np.tile(np.arange(len(lengths)), self.views)
        total = lengths[rows]
        full = np.minimum(total, self.max_len)
        if self.window == "last":
            return rows, total - full, full, rows
        rng = self._generator()
        if self.views > 1:
            low = np.minimum(self.min_len, total)
            counts = rng.integers(low, full + 1)  # inclusive of full
        else:
            counts = full
        starts = rng.integers(0, total - counts + 1)
        return rows, starts, counts, rows

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        """Args: a pa.Table/RecordBatch of encoded rows, a list of row dicts or a dict of columns.
        Returns: the padded batch dict, B * views rows."""
        source = batch_source(batch)
        rows, starts, counts, entity_index = self.windows(source.lengths)
        return assemble(source, self.columns, rows, starts, counts, entity_index, self.pad_missing)


def per_event_windows(encoded: Any, field_specs: Sequence[Mapping[str, Any]], max_len: int,
                      positions: Sequence[int] | np.ndarray | None = None,
                      rows: Sequence[int] | np.ndarray | None = None, label_names: Sequence[str] = (),
                      pad_missing: bool = True) -> dict[str, torch.Tensor]:
    """Windows ending at given events, for scoring each event from its history up to and including it.

    Window j holds events [max(0, p_j - max_len + 1), p_j] of row r_j, right-padded, so the last real
    position (``lengths - 1``) is event p_j and a causal model's state there is its point-in-time view.

    Args:
        encoded: encoded rows (pa.Table/RecordBatch, list of dicts or dict of columns).
        field_specs: ``EventTokenizer.field_specs()``.
        max_len: longest window.
        positions: (J,) event index within its row; None = every event of every row, in order.
        rows: (J,) row of each position; None = row 0 for all (a one-entity table).
        label_names: labels to emit as ``label_<name>``.
        pad_missing: as in ``EventCollator``.
    Returns:
        The padded batch dict with J rows; ``entity_index`` holds the source row.
    """
    source = batch_source(encoded)
    lengths = source.lengths
    if positions is None:
        rows_np = np.repeat(np.arange(len(lengths)), lengths)
        pos = np.arange(len(rows_np)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    else:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        rows_np = np.zeros_like(pos) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows is None and source.num_rows != 1:
            raise ValueError(f"rows is required when the batch holds {source.num_rows} rows")
        if rows_np.shape != pos.shape:
            raise ValueError(f"rows {rows_np.shape} and positions {pos.shape} must have the same shape")
        if np.any((rows_np < 0) | (rows_np >= source.num_rows)):
            raise ValueError(f"rows must lie in [0, {source.num_rows})")
        bad = (pos < 0) | (pos >= lengths[rows_np])
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"position {pos[j]} is outside row {rows_np[j]} of length {lengths[rows_np[j]]}")
    counts = np.minimum(pos + 1, max_len)
    return assemble(source, batch_columns(field_specs, label_names), rows_np, pos - counts + 1, counts,
                    rows_np, pad_missing)
