"""The comparison's fraud examples (out-of-time, bounded like a fine-tune run) and the sequence shard ptls
embeds them from (each customer's history cut before the last test example)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foundation.data.schema import DataSchema
from foundation.evaluation.splits import TaskSpec, select_examples
from foundation.finetuning import bound_examples, chosen_customers

SPLITS = ("train", "validation", "test")


def fraud_examples(events: pa.Table, schema: DataSchema, task: TaskSpec, bounds: Mapping[str, Any],
                   seed: int) -> dict[str, pa.Table]:
    """The task's out-of-time examples per split, bounded like a fine-tune run (a seeded share of customers,
    the last/first days of each period), so four models can be embedded and compared in minutes."""
    customers = chosen_customers(events, bounds.get("customers"), seed)
    out = {}
    for split in SPLITS:
        table = bound_examples(select_examples(events, schema, task, split), split, schema, bounds, customers)
        labels = table.column("label").to_numpy()
        if len(labels) == 0 or labels.min() == labels.max():
            raise ValueError(f"{split}: {len(labels)} examples, {int(labels.sum())} positive: one class only; "
                             "widen lifestream.examples (customers, days)")
        out[split] = table
    return out


def truncate_sequences(table: pa.Table, until_ms: int) -> pa.Table:
    """Sequence rows cut to their events strictly before `until_ms` (every list column), lengths updated.

    Args:
        table: sequence rows (the per-entity sequence layout).
        until_ms: epoch milliseconds.
    """
    times = table.column("event_time").combine_chunks()
    offsets = times.offsets.to_numpy().astype(np.int64)
    flat = times.flatten().cast(pa.int64()).to_numpy()
    keep = flat < until_ms
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    new_offsets = pa.array(kept_before[offsets - offsets[0]].astype(np.int32))
    mask = pa.array(keep)
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):
            values = column.combine_chunks().flatten().filter(mask)
            columns[name] = pa.ListArray.from_arrays(new_offsets, values)
        else:
            columns[name] = column
    columns["length"] = pa.array(np.diff(kept_before[offsets - offsets[0]]).astype(np.int32))
    return pa.table(columns)


def customer_shard(seq_dir: Path, entity_type: str, entity_ids: pa.Array, until_ms: int, out_dir: Path) -> Path:
    """One shard holding the sequences of `entity_ids` (cut at `until_ms`): what ptls embeds.

    Returns:
        `out_dir` (with `<entity_type>/part-00000.parquet`).
    """
    files = sorted((seq_dir / entity_type).glob("part-*.parquet"))
    tables = []
    for path in files:
        table = pq.read_table(path)
        tables.append(table.filter(pc.is_in(table.column("entity_id"), value_set=entity_ids)))
    target = out_dir / entity_type / "part-00000.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(truncate_sequences(pa.concat_tables(tables), until_ms), target)
    return out_dir


def example_keys(examples: dict[str, pa.Table]) -> pa.Table:
    """row, event_id, event_time, customer_id, label, split of every example, splits in order."""
    parts = [t.select(["row", "event_id", "event_time", "customer_id", "label"])
             .append_column("split", pa.array([s] * t.num_rows, pa.string())) for s, t in examples.items()]
    return pa.concat_tables(parts)
