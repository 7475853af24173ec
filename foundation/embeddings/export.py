"""Entity embeddings as parquet for downstream teams (DESIGN.md: `embeddings: parquet (entity_type, entity_id,
as_of, embedding)`).

Layout: `<out_dir>/<entity_type>/part-00000.parquet, ...` (one file per sequence shard, written chunk by
chunk) and `<out_dir>/manifest.json` (mode, width, counts, speed). Columns:

| column | type | meaning |
|---|---|---|
| `entity_type` | string | customer, merchant, issuer |
| `entity_id` | string | |
| `as_of` | timestamp[ms] | time of the event (bucket end) the state follows: valid for any time after it |
| `embedding` | fixed_size_list<float32>[H] | the hidden state after that event (its block window) |
| `event_id` | string | `per_event` mode only: the event, since several can share a millisecond |

`mode="last"`: one row per entity, its state at the end of its history. `mode="per_event"`: one row per
event, the entity's state **right after** that event: the event itself is an input (its outcome fields
too), so a row is never a feature of its own event. The state *as of* an event e (what a head scoring e
may see) is the entity's previous row: the last row with (as_of, event_id) strictly before e's
(foundation.pointintime). `manifest.json` also names the checkpoint: `{"hf_dir", "digest"}` (the sha256
prefix of its weights, foundation.pointintime.PretrainedRun.digest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from foundation.pointintime import PointInTimeStates

MODES = ("last", "per_event")


def embedding_schema(hidden_size: int, per_event: bool = False) -> pa.Schema:
    """The arrow schema of an embeddings file."""
    fields = [pa.field("entity_type", pa.string()), pa.field("entity_id", pa.string()),
              pa.field("as_of", pa.timestamp("ms")),
              pa.field("embedding", pa.list_(pa.float32(), int(hidden_size)))]
    if per_event:
        fields.append(pa.field("event_id", pa.string()))
    return pa.schema(fields)


def embedding_table(entity_type: str, entity_ids: pa.Array, as_of: pa.Array, hidden: np.ndarray,
                    event_ids: pa.Array | None = None) -> pa.Table:
    """Rows of an embeddings file.

    Args:
        entity_type: one type for every row.
        entity_ids: (N,) strings.
        as_of: (N,) timestamp[ms] (or int64 epoch ms).
        hidden: (N, H) float32 states.
        event_ids: (N,) strings, per_event mode only.
    """
    hidden = np.ascontiguousarray(hidden, dtype=np.float32)
    n, width = hidden.shape
    columns = [pa.array(np.full(n, entity_type, dtype=object), pa.string()), pa.array(entity_ids).cast(pa.string()),
               pa.array(as_of).cast(pa.timestamp("ms")),
               pa.FixedSizeListArray.from_arrays(pa.array(hidden.reshape(-1)), width)]
    if event_ids is not None:
        columns.append(pa.array(event_ids).cast(pa.string()))
    return pa.Table.from_arrays(columns, schema=embedding_schema(width, event_ids is not None))


@dataclass
class ExportSummary:
    """What an export wrote (also `<out_dir>/manifest.json`)."""

    out_dir: str
    mode: str
    hidden_size: int
    entities: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    events_read: int = 0
    checkpoint: dict[str, str] = field(default_factory=dict)

    @property
    def entities_per_s(self) -> float:
        return sum(self.entities.values()) / max(self.seconds, 1e-9)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "entities_per_s": self.entities_per_s}, indent=2) + "\n"


def export_embeddings(states: PointInTimeStates, out_dir: str | Path, mode: str = "last",
                      entity_types: Sequence[str] | None = None, chunk_entities: int = 1024,
                      checkpoint: Mapping[str, str] | None = None) -> ExportSummary:
    """Write the embeddings of every entity of a store (streamed: one chunk of entities in memory at a time).

    Args:
        states: PointInTimeStates over the sequences to embed, with the model.
        out_dir: output folder (created; existing part files of the exported types are replaced).
        mode: "last" (one row per entity, after its last event) or "per_event" (one row per event).
        entity_types: default every type of the store.
        chunk_entities: entities per forward chunk and parquet row group.
        checkpoint: what computed the states, recorded in manifest.json ({"hf_dir", "digest"}).
    Returns:
        ExportSummary (entities, rows, files, seconds, entities_per_s).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = Path(out_dir)
    types = list(entity_types) if entity_types is not None else states.store.entity_types
    width = states.encoder.hidden_size
    summary = ExportSummary(str(out), mode, width, checkpoint=dict(checkpoint or {}))
    started, events_before = time.perf_counter(), states.encoder.events_read
    for entity_type in types:
        folder = out / entity_type
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.parquet"):
            old.unlink()
        total = states.store.manifest.entity_types[entity_type].entities
        summary.entities[entity_type] = summary.rows[entity_type] = 0
        summary.files[entity_type] = []
        schema = embedding_schema(width, per_event=mode == "per_event")
        bar = tqdm(total=total, desc=f"embed {entity_type}", unit="entity", unit_scale=True)
        stream = (states.iter_last_states(entity_type, chunk_entities) if mode == "last"
                  else states.iter_event_states(entity_type, chunk_entities))
        shard_files = iter(states.store.shards(entity_type))
        writer, written_in_shard, shard_rows = None, 0, 0
        for keys, hidden in stream:
            if writer is None or written_in_shard >= shard_rows:
                if writer is not None:
                    writer.close()
                shard = next(shard_files)
                shard_rows = pq.ParquetFile(shard.sequences).metadata.num_rows
                path = folder / shard.sequences.name
                writer, written_in_shard = pq.ParquetWriter(path, schema), 0
                summary.files[entity_type].append(str(path.relative_to(out)))
            table = _rows(entity_type, keys, hidden, mode)
            writer.write_table(table)
            written_in_shard += keys.num_rows
            summary.entities[entity_type] += keys.num_rows
            summary.rows[entity_type] += table.num_rows
            bar.update(keys.num_rows)
        if writer is not None:
            writer.close()
        bar.close()
    summary.seconds = time.perf_counter() - started
    summary.events_read = states.encoder.events_read - events_before
    (out / "manifest.json").write_text(summary.to_json())
    return summary


def _rows(entity_type: str, keys: pa.Table, hidden: np.ndarray, mode: str) -> pa.Table:
    """Output rows of one chunk of entities."""
    times = keys["event_time"].combine_chunks()
    if mode == "last":
        lengths = keys["length"].to_numpy().astype(np.int64)
        last = times.offsets.to_numpy()[1:].astype(np.int64) - 1  # flat index of each entity's last event
        return embedding_table(entity_type, keys["entity_id"].combine_chunks(),
                               times.values.take(pa.array(np.maximum(last, 0))), hidden[: len(lengths)])
    lengths = keys["length"].to_numpy().astype(np.int64)
    entity_ids = keys["entity_id"].combine_chunks().take(pa.array(np.repeat(np.arange(len(lengths)), lengths)))
    start, stop = int(times.offsets[0].as_py()), int(times.offsets[-1].as_py())
    return embedding_table(entity_type, entity_ids, times.values.slice(start, stop - start), hidden,
                           keys["event_id"].combine_chunks().values.slice(start, stop - start))


def read_embeddings(path: str | Path, entity_type: str | None = None) -> pa.Table:
    """Load an export folder (or one parquet file) as one table; `entity_type` picks one type's folder."""
    path = Path(path)
    if path.is_file():
        return pq.read_table(path)
    if entity_type:
        folders = [path / entity_type]
    elif (path / "manifest.json").exists():  # the export's entity type order (schema order)
        folders = [path / t for t in json.loads((path / "manifest.json").read_text())["entities"]]
    else:
        folders = sorted(p for p in path.iterdir() if p.is_dir())
    files = [f for folder in folders for f in sorted(folder.glob("part-*.parquet"))]
    if not files:
        raise FileNotFoundError(f"{path}: no embeddings part-*.parquet files"
                                + (f" for entity type {entity_type!r}" if entity_type else ""))
    return pa.concat_tables(pq.read_table(f) for f in files)
