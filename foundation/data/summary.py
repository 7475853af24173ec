"""A human-readable summary of a prepared dataset: events and entities per type, label and outcome rates."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from foundation.data.sequences import SequenceManifest


def _rate(table, column: str, value: str | None = None) -> float | None:
    if column not in table.column_names:
        return None
    col = table[column]
    if value is None:  # a 0/1 label: mean over rows where it is known
        known = pc.drop_null(col)
        return float(pc.mean(known).as_py() or 0.0) if len(known) else None
    return float(pc.sum(pc.equal(col, value)).as_py() or 0) / max(len(col), 1)


def describe_sequences(seq_dir: str | Path) -> dict:
    """Counts and rates from a sequence folder (its manifest plus the customer shards' flat columns)."""
    seq_dir = Path(seq_dir)
    manifest = SequenceManifest.read(seq_dir)
    summary: dict = {"sequences": str(seq_dir), "entity_types": {}}
    for etype, stats in manifest.entity_types.items():
        summary["entity_types"][etype] = {"entities": stats.entities, "events": stats.events, "representation": stats.representation}
    # Rates over raw events: every event has exactly one row in the first non-aggregate entity type.
    raw_type = next((t for t in manifest.entity_types if (seq_dir / t).exists()
                     and "event_type" in pq.read_schema(next((seq_dir / t).glob("part-*.parquet"))).names), None)
    if raw_type is not None:
        files = sorted((seq_dir / raw_type).glob("part-*.parquet"))
        cols = [c for c in ("event_type", "is_fraud", "approved") if c in pq.read_schema(files[0]).names]
        flat = pq.read_table(files, columns=cols)
        flat = flat.from_pydict({c: pc.list_flatten(flat[c]) for c in cols})
        attempts = pc.is_in(flat["event_type"], value_set=pa.array(["charge", "decline"]))
        summary["rates"] = {
            "fraud_rate_of_attempts": _rate(flat.filter(attempts), "is_fraud"),
            "decline_rate_of_attempts": _rate(flat.filter(attempts), "event_type", "decline"),
            "dispute_rate_of_events": _rate(flat, "event_type", "dispute"),
            "refund_rate_of_events": _rate(flat, "event_type", "refund"),
        }
    return summary


def format_summary(summary: dict) -> str:
    """The summary as aligned text lines for the terminal."""
    lines = [f"{'entity type':<12} {'entities':>10} {'events':>12}  representation"]
    for etype, s in summary["entity_types"].items():
        unit = "hourly buckets" if s["representation"] == "aggregate" else "events"
        lines.append(f"{etype:<12} {s['entities']:>10,} {s['events']:>12,}  {unit}")
    for name, value in (summary.get("rates") or {}).items():
        lines.append(f"{name:<28} {'n/a' if value is None else f'{value:.3%}'}")
    lines.append(f"sequences: {summary['sequences']}")
    return "\n".join(lines)
