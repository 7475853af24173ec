"""Outcome features of an entity's past: declines, disputes and label-delayed fraud risk.

Label-delayed risk (`<entity>_risk_count_<d>`, `<entity>_risk_rate_<d>`): of the entity's attempts in
(t - delay - d, t - delay], how many are known frauds by t, and their share. An attempt is a known fraud
from the earlier of
- its label (a `risk_labels` column equal to 1) landing `delay` after it (the schema's `splits.label_delay`),
- a dispute naming it (`dispute_ref_field`) placed strictly before the scored event in (time, id) order.
Each attempt i is therefore counted for the scored events at positions [max(window entry, known), window
exit) of its entity timeline: intervals, summed with one difference array. A dispute that names no event
of the table (only the entity ids, as some datasets deliver them) cannot be dated back to its charge; it
counts for its entity while it landed within the last d before the event, which matches the definition
when disputes land `delay` after the charge. A label is never read before it lands: the scored event's own
label never counts, nor a label whose delay has not passed, nor a dispute placed after the event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.data.schema import DataSchema
from foundation.evaluation.splits import to_timedelta
from foundation.pointintime.velocity_config import VelocityConfig
from foundation.pointintime.velocity_timeline import EntityTimeline, as_string, covered, prefix, to_ms

log = logging.getLogger(__name__)


@dataclass
class LabelEvidence:
    """When each event's fraud label becomes known (per row of the event table).

    Attributes:
        delay_ms: how long a label column takes to land.
        labelled: (N,) bool: a risk label column says fraud (known delay_ms after the event).
        dispute_rank: (N,) int64: global (time, id) rank of the first dispute naming the event; -1 = none.
        loose_disputes: (N,) bool: disputes naming no event of the table (counted when they land).
    """

    delay_ms: int
    labelled: np.ndarray
    dispute_rank: np.ndarray
    loose_disputes: np.ndarray


def label_evidence(events: pa.Table, schema: DataSchema, config: VelocityConfig, rank: np.ndarray,
                   disputes: np.ndarray | None) -> LabelEvidence | None:
    """The label columns and disputes the risk features read; None when the table has neither."""
    n = len(events)
    labels = set(schema.labels)
    # A derived label (from_events) becomes known when its outcome event lands, which the delay rule cannot
    # promise: its evidence is read from the outcome events themselves (the disputes below), never the column.
    derived = {spec.name for spec in schema.derived_labels}
    present = [name for name in config.risk_labels if name in events.column_names and name not in derived]
    not_labels = [name for name in present if name not in labels]
    if not_labels:  # a column that is not a label would be read without its delay
        raise ValueError(f"velocity.risk_labels {not_labels} are columns but not labels of the schema "
                         f"({sorted(labels)})")
    labelled = np.zeros(n, dtype=bool)
    for name in present:
        try:
            values = pc.cast(events.column(name), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ValueError(f"velocity.risk_labels: label column {name!r} is not numeric ({err})") from err
        labelled |= pc.fill_null(pc.equal(values, 1.0), False).to_numpy(zero_copy_only=False)
    dispute_rank = np.full(n, -1, dtype=np.int64)
    loose = np.zeros(n, dtype=bool)
    if disputes is not None and disputes.any():
        loose = disputes.copy()
        ref = config.dispute_ref_field
        if ref is not None and ref in events.column_names:
            index = pc.index_in(as_string(events.column(ref)), value_set=as_string(events.column("event_id")))
            target = pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            named = disputes & (target >= 0)
            loose = disputes & ~named
            first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, target[named], rank[named])  # the earliest dispute of each disputed event
            dispute_rank = np.where(first < np.iinfo(np.int64).max, first, -1)
    if not present and not (dispute_rank >= 0).any() and not loose.any():
        log.info("velocity: no risk label column %s and no disputes; no risk features", list(config.risk_labels))
        return None
    delay_ms = (int(to_timedelta(config.risk_delay, "velocity.risk_delay") / np.timedelta64(1, "ms"))
                if config.risk_delay is not None else schema.splits.label_delay_ms)
    return LabelEvidence(delay_ms, labelled, dispute_rank, loose)


def risk_features(entity: str, line: EntityTimeline, attempts: np.ndarray, evidence: LabelEvidence,
                  windows: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Known frauds among the entity's attempts of (t - delay - d, t - delay], per window d (sorted order)."""
    n, delay = line.n, evidence.delay_ms
    position = np.arange(n)
    counted = line.sorted(attempts)
    labelled, dispute_rank = line.sorted(evidence.labelled), line.sorted(evidence.dispute_rank)
    fraud = np.flatnonzero(counted & line.known & (labelled | (dispute_rank >= 0)))
    # the first scored position that may see attempt i: its label has landed and it is strictly earlier
    enters = np.maximum(np.searchsorted(line.key, line.key[fraud] + delay, side="left"), fraud + 1)
    known = np.where(labelled[fraud], fraud + 1, n)
    disputed = dispute_rank[fraud] >= 0
    after_dispute = np.searchsorted(line.rank_key, line.codes[fraud] * n + dispute_rank[fraud], side="right")
    known = np.where(disputed, np.minimum(known, after_dispute), known)
    starts = np.maximum(enters, known)
    loose_prefix = prefix(line.sorted(evidence.loose_disputes))
    attempt_prefix = prefix(counted)
    out: dict[str, np.ndarray] = {}
    for window in windows:
        span = to_ms(window)
        leaves = np.searchsorted(line.key, line.key[fraud] + delay + span, side="left")
        count = covered(starts, leaves, n).astype(np.float64)
        count += loose_prefix[position] - loose_prefix[line.window_start(span)]
        low = np.searchsorted(line.key, line.key - delay - span, side="right")
        high = np.minimum(np.searchsorted(line.key, line.key - delay, side="right"), position)
        cohort = np.maximum(attempt_prefix[high] - attempt_prefix[np.minimum(low, high)], 0)
        out[f"{entity}_risk_count_{window}"] = count
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{entity}_risk_rate_{window}"] = np.where(cohort > 0, count / cohort, np.nan)
    return out


def decline_features(entity: str, line: EntityTimeline, declines: np.ndarray,
                     windows: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`<entity>_declines_<w>`: the entity's declines in [t - w, t) before each event (sorted order)."""
    position = np.arange(line.n)
    declined = prefix(line.sorted(declines))
    return {f"{entity}_declines_{w}": declined[position] - declined[line.window_start(to_ms(w))] for w in windows}


def dispute_features(entity: str, line: EntityTimeline, disputes: np.ndarray,
                     charges: np.ndarray) -> dict[str, np.ndarray]:
    """`<entity>_disputes_so_far` and `<entity>_dispute_rate` (disputes over charges, all history before e)."""
    position = np.arange(line.n)
    dispute_prefix, charge_prefix = prefix(line.sorted(disputes)), prefix(line.sorted(charges))
    n_disputes = dispute_prefix[position] - dispute_prefix[line.group_start]
    n_charges = charge_prefix[position] - charge_prefix[line.group_start]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n_charges > 0, n_disputes / n_charges, np.nan)
    return {f"{entity}_disputes_so_far": n_disputes, f"{entity}_dispute_rate": rate}


def dispute_entity_ids(events: pa.Table, entity: str, disputes: np.ndarray, ref_field: str | None):
    """The entity ids, with disputes that lack one attributed to the disputed event's entity."""
    ids = as_string(events.column(f"{entity}_id"))
    if ref_field is None or ref_field not in events.column_names:
        return ids
    lacking = pc.and_(pc.is_null(ids), pa.array(disputes))
    if not pc.any(lacking).as_py():
        return ids
    index = pc.index_in(as_string(events.column(ref_field)), value_set=as_string(events.column("event_id")))
    referenced = pc.take(ids, pc.fill_null(index, 0))
    referenced = pc.if_else(pc.is_null(index), pa.scalar(None, pa.string()), referenced)
    return pc.if_else(lacking, referenced, ids)
