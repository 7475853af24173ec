"""What a sequence build writes, decided once for both backends (`foundation.data.sequences` and
`foundation.data.spark.sequences`): the time window, the entity types and their aggregate specs, the expected
canonical columns, the output Arrow schema of a shard, the folder preparation and the manifest entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from foundation.data.aggregate_spec import AggregateSpec
from foundation.data.schema import SPLIT_NAMES, DataSchema, EntitySpec
from foundation.data.sequence_manifest import MANIFEST, EntitySequenceStats, SequenceManifest, shard_file

# Canonical column kind of each field type (the canonical event table contract); labels are "double".
FIELD_KINDS = {"categorical": "string", "text": "string", "numeric": "double", "timestamp": "timestamp"}
ARROW_KINDS = {"string": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("ms")}


def to_ms(value: Any) -> int:
    """Epoch milliseconds of an ISO string / date / datetime / Timestamp (naive = UTC)."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value // 1_000_000)


def iso(ms: int | None) -> str | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms").isoformat()


def period_bounds(schema: DataSchema, period: str) -> tuple[int, int]:
    """[start, end) of the schema's split `period` in epoch ms."""
    bounds = getattr(schema.splits, period) if period in SPLIT_NAMES else None
    if bounds is None:
        have = [n for n in SPLIT_NAMES if getattr(schema.splits, n) is not None]
        raise ValueError(f"period {period!r} is not a split of schema {schema.name!r}: have {have}")
    return bounds.start_ms, bounds.end_ms


@dataclass(frozen=True)
class EntityPlan:
    """One entity type to build: its name, canonical key column and aggregate spec (None = raw events)."""

    name: str
    column: str
    aggregate: AggregateSpec | None


# (entity type, bucket in ms, key column, count_by, pinned count values) -> the backend's AggregateSpec
AggregateResolver = Callable[[str, Any, str, Any, Any], AggregateSpec]


@dataclass
class SequenceJob:
    """The arguments of `build_sequences`, checked against the schema.

    Attributes:
        schema_name, period: as written to the manifest.
        start_ms, end_ms: the half-open window in epoch ms (None = open).
        entities_per_shard: entities per parquet shard.
        fields: (name, type) of every schema field; labels: label names.
        chosen: (entity type, key column, spec) of the types to build, in schema order.
    """

    schema_name: str
    period: str | None
    start_ms: int | None
    end_ms: int | None
    entities_per_shard: int
    fields: list[tuple[str, str]]
    labels: list[str]
    chosen: list[tuple[str, str, EntitySpec]]

    @classmethod
    def from_args(cls, schema: DataSchema, period: str | None, until: Any, entities_per_shard: int,
                  entity_types: Sequence[str] | None) -> SequenceJob:
        if entities_per_shard < 1:
            raise ValueError(f"entities_per_shard must be >= 1, got {entities_per_shard}")
        start_ms, end_ms = period_bounds(schema, period) if period is not None else (None, None)
        if until is not None:
            end_ms = to_ms(until) if end_ms is None else min(end_ms, to_ms(until))
        wanted = list(schema.entities) if entity_types is None else list(entity_types)
        unknown = sorted(set(wanted) - set(schema.entities))
        if unknown:
            raise ValueError(f"entity_types {unknown} are not declared in schema {schema.name!r}")
        fields = [(name, spec.type) for name, spec in schema.fields.items()]
        chosen = [(name, spec.id_column, spec) for name, spec in schema.entities.items() if name in wanted]
        return cls(schema.name, period, start_ms, end_ms, entities_per_shard, fields, list(schema.labels), chosen)

    def expected_columns(self) -> dict[str, str]:
        """Canonical column -> kind ("string", "double", "timestamp") the input must have."""
        expected = {"event_id": "string", "event_time": "timestamp"}
        expected.update({column: "string" for _, column, _ in self.chosen})
        for name, kind in self.fields:
            if kind not in FIELD_KINDS:
                raise ValueError(f"field {name!r}: unknown type {kind!r} (expected one of {sorted(FIELD_KINDS)})")
            expected[name] = FIELD_KINDS[kind]
        expected.update({name: "double" for name in self.labels})
        return expected

    def plans(self, resolve_aggregate: AggregateResolver,
              count_values: Mapping[str, Sequence[str]] | None) -> list[EntityPlan]:
        """One EntityPlan per chosen type; aggregate specs come from the backend's `resolve_aggregate`."""
        plans = []
        for name, column, spec in self.chosen:
            aggregate = None
            if spec.representation == "aggregate":  # the schema guarantees its bucket
                pinned = count_values.get(name) if count_values else None
                # count_by None: the builder counts the values of the `event_type` field
                aggregate = resolve_aggregate(name, spec.bucket_ms, column, None, pinned)
            plans.append(EntityPlan(name, column, aggregate))
        return plans

    def window(self) -> str:
        """The window in words, for messages: "period 'pretrain' [a, b)", "before b" or "all time"."""
        bounds = f"[{iso(self.start_ms) or '-inf'}, {iso(self.end_ms) or '+inf'})"
        if self.period is not None:
            return f"period {self.period!r} {bounds}"
        return f"the window {bounds}" if self.end_ms is not None else "the event table"

    def check_not_empty(self, n_rows: int, n_in_window: int, first_ms: int | None, last_ms: int | None) -> None:
        """Stop with one line when the window holds no event: every later stage would fail on it."""
        if n_in_window:
            return
        if n_rows == 0:
            raise ValueError(f"schema {self.schema_name!r}: the event table is empty (0 rows after validation); "
                             f"nothing to build for {self.window()} (check source.path and the quarantine)")
        raise ValueError(f"schema {self.schema_name!r}: no events in {self.window()}; the {n_rows} events span "
                         f"{iso(first_ms)} .. {iso(last_ms)} (check the splits in the data config)")

    def manifest(self) -> SequenceManifest:
        return SequenceManifest(schema=self.schema_name, period=self.period, start=iso(self.start_ms),
                                end=iso(self.end_ms), entities_per_shard=self.entities_per_shard)

    def output_schema(self, plan: EntityPlan) -> pa.Schema:
        """Arrow schema of a shard (the sequence shard contract): keys, then one list column per field/label."""
        head = [("entity_type", pa.string()), ("entity_id", pa.string()), ("length", pa.int32())]
        head += [("event_id", pa.list_(pa.string())), ("event_time", pa.list_(pa.timestamp("ms")))]
        if plan.aggregate is not None:
            return pa.schema(head + [(c, pa.list_(pa.float64())) for c in plan.aggregate.columns()])
        lists = [(n, pa.list_(ARROW_KINDS[FIELD_KINDS[k]])) for n, k in self.fields]
        return pa.schema(head + lists + [(n, pa.list_(pa.float64())) for n in self.labels])

    def dictionary_columns(self, schema: pa.Schema) -> list[str]:
        """Parquet columns written with dictionary pages: repetitive strings only (unique ids and floats
        compress better without). Parquet names the leaf of list column `c` "c.list.element"."""
        return ["entity_type"] + [f"{n}.list.element" for n, kind in self.fields
                                  if kind in ("categorical", "text") and n in schema.names]


def start_folder(out_dir: str | os.PathLike) -> Path:
    """Create the sequence folder and drop its manifest: the manifest is written last and marks a complete
    folder, so an interrupted rebuild is never mistaken for a finished one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    return out


def start_type_folder(out: Path, entity_type: str) -> Path:
    """`<out>/<entity_type>/` without the shards of a previous build (which may have had more of them)."""
    type_dir = out / entity_type
    type_dir.mkdir(exist_ok=True)
    for stale in type_dir.glob("part-*.parquet"):
        stale.unlink()
    return type_dir


def entity_stats(plan: EntityPlan, schema: pa.Schema, n_shards: int, *, entities: int, elements: int,
                 in_period: int, keyed: int, selected: int) -> EntitySequenceStats:
    """The manifest entry of one entity type.

    Args:
        plan: the entity type.
        schema: its shard schema.
        n_shards: shards written.
        entities: entities written; elements: list elements written (events, or buckets).
        in_period: rows in the window; keyed: of those, rows with this type's key; selected: rows used
            (keyed rows in whole buckets for an aggregate type).
    """
    agg = plan.aggregate
    return EntitySequenceStats(
        representation="events" if agg is None else "aggregate",
        key_column=plan.column,
        entities=entities,
        events=elements,
        source_events=selected,
        skipped_null_key=in_period - keyed,
        skipped_partial_bucket=keyed - selected,
        shards=[shard_file(plan.name, s) for s in range(n_shards)],
        columns=schema.names,
        bucket_ms=None if agg is None else agg.bucket_ms,
        count_by=None if agg is None else agg.count_by,
        count_values=None if agg is None else list(agg.count_values),
    )
