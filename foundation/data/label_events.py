"""Landed labels as events of the sequences (`label_events:` in the data config).

A fraud team's strongest features read labels that have landed: the share of a merchant's recent charges
known to be fraud once the label delay has passed. A self-supervised model sees only the event stream, so a
label that never shows up as an event (a declined fraud attempt is never disputed; a dataset may carry labels
as a column only) is invisible to it. With `label_events`, each event whose label is positive gets a copy at
`event_time + splits.label_delay`: the moment the label is known, by the schema's own contract. The copy keeps
the entity ids and the non-outcome fields of the labelled event, carries the label's name in the categorical
outcome field `label_events.field`, and has null outcome fields and labels, so it is never an example and no
label is read before it lands. Sequences, the tokenizer, the Embedder and the service treat it as any event.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema

SEPARATOR = ":landed:"  # label event id = "<labelled event id>:landed:<label>"


def append_label_events(table: pa.Table, schema: DataSchema) -> pa.Table:
    """The canonical events plus one label event per positive label of `schema.label_events.labels`.

    Args:
        table: validated canonical events (the label-event field present and null).
        schema: the dataset schema; a schema without `label_events` returns `table` unchanged.
    Returns:
        `table` followed by the label events (same columns and types).
    """
    spec = schema.label_events
    if spec is None:
        return table
    outcome = [f.name for f in schema.fields.values() if f.outcome and f.name != spec.field]
    parts = [table]
    for label in spec.labels:
        positive = table.filter(pc.fill_null(pc.equal(table[label], 1.0), False))
        if positive.num_rows:
            parts.append(_landed(positive, label, spec.field, outcome, list(schema.labels), schema.splits.label_delay_ms))
    return pa.concat_tables(parts) if len(parts) > 1 else table


def _landed(positive: pa.Table, label: str, field: str, outcome: list[str], labels: list[str],
            delay_ms: int) -> pa.Table:
    n = positive.num_rows
    columns = {name: positive[name] for name in positive.column_names}
    columns["event_id"] = pc.binary_join_element_wise(positive["event_id"], pa.array([f"{SEPARATOR}{label}"] * n), "")
    times = positive["event_time"].cast(pa.int64()).to_numpy() + np.int64(delay_ms)
    columns["event_time"] = pa.array(times).cast(pa.timestamp("ms"))
    for name in (*outcome, *labels):
        columns[name] = pa.nulls(n, positive.schema.field(name).type)
    columns[field] = pa.array([label] * n, pa.string())
    return pa.table([columns[name] for name in positive.column_names], schema=positive.schema)


def is_label_event(table: pa.Table, schema: DataSchema) -> np.ndarray:
    """(N,) bool: the rows of `table` that are label events (all False without `label_events`)."""
    spec = schema.label_events
    if spec is None or spec.field not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return pc.is_valid(table[spec.field]).to_numpy(zero_copy_only=False)
