"""Labels set by outcome events of the stream (`labels.<name>.from_events` in the data config).

A dataset often has no label column: fraud is known when a dispute arrives, days after the charge. The
label of an event is then 1 when an outcome event marks it, 0 otherwise, and null on the outcome events
themselves (they are not examples). An outcome event marks either the event whose id it names in `ref`, or,
without `ref`, the latest non-outcome event at or before it that shares every `match` entity id or field value
with it (no more than `within` earlier). When the label becomes known (the outcome's time) is the schema's
`splits.label_delay` contract, as for a label column: point-in-time readers never see it earlier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.field_specs import DerivedLabel
from foundation.data.schema import DataSchema


def derive_labels(table: pa.Table, schema: DataSchema) -> pa.Table:
    """Fill every derived label column of a validated canonical table (other columns unchanged).

    Args:
        table: canonical events (event_id, event_time, <entity>_id, fields, labels).
        schema: the dataset schema; its `derived_labels` are filled.
    Returns:
        the table with each derived label set to 1/0 (null on the outcome events).
    """
    for spec in schema.derived_labels:
        values = label_values(table, spec.from_events, schema)
        table = table.set_column(table.schema.get_field_index(spec.name), spec.name, pa.array(values, pa.float64()))
    return table


def label_values(table: pa.Table, derived: DerivedLabel, schema: DataSchema) -> np.ndarray:
    """(N,) float: 1.0 on marked events, 0.0 on the other events, NaN on the outcome events."""
    outcome = pc.fill_null(pc.is_in(table[derived.field], value_set=pa.array(derived.values, pa.string())),
                           False).to_numpy(zero_copy_only=False)
    marked = (_marked_by_ref(table, derived, outcome) if derived.ref is not None
              else _marked_by_match(table, derived, outcome, schema))
    values = marked.astype(np.float64)
    values[outcome] = np.nan
    return values


def _marked_by_ref(table: pa.Table, derived: DerivedLabel, outcome: np.ndarray) -> np.ndarray:
    refs = pc.unique(pa.chunked_array(table[derived.ref].filter(pa.array(outcome))).combine_chunks())
    return pc.fill_null(pc.is_in(table["event_id"], value_set=pc.drop_null(refs)), False).to_numpy(zero_copy_only=False)


def _marked_by_match(table: pa.Table, derived: DerivedLabel, outcome: np.ndarray, schema: DataSchema) -> np.ndarray:
    keys = [schema.entities[e].id_column if e in schema.entities else e for e in derived.match]
    frame = pd.DataFrame({"t": table["event_time"].cast(pa.int64()).to_numpy(zero_copy_only=False),
                          **{k: table[k].to_pandas() for k in keys}})
    frame["row"] = np.arange(len(frame))
    known = frame[keys].notna().all(axis=1).to_numpy()
    outcomes = frame[outcome & known].sort_values("t", kind="stable")
    candidates = frame[~outcome & known].sort_values("t", kind="stable")
    marked = np.zeros(len(frame), dtype=bool)
    if outcomes.empty or candidates.empty:
        return marked
    # merge_asof: for each outcome, the latest candidate with the same keys at or before it (ties: the later row).
    joined = pd.merge_asof(outcomes, candidates.rename(columns={"row": "marked_row"}), on="t", by=keys,
                           direction="backward", allow_exact_matches=True,
                           tolerance=None if derived.within_ms is None else derived.within_ms)
    rows = joined["marked_row"].dropna().astype(np.int64).to_numpy()
    marked[rows] = True
    return marked
