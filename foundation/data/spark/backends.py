"""Build one sequence folder from config with either backend: the job behind scripts/build_sequences.py.

`backend.name: pyarrow` reads, validates and builds on one machine (foundation.data.events / validate /
sequences); `backend.name: spark` does the same on a SparkSession (local or a cluster, conf/backend/spark.yaml).
Both write the same quarantine files and the same shards; pyspark is only imported for the Spark backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from foundation.data.prepared_layout import PERIODS, fingerprint
from foundation.data.schema import DataSchema
from foundation.data.sequences import SequenceManifest

BACKENDS = ("pyarrow", "spark")


@dataclass
class BuildReport:
    """What one build did.

    Attributes:
        out_dir: the sequence folder written.
        backend: "pyarrow" or "spark".
        manifest: its manifest.
        input_rows: raw rows read; quarantine_counts: reason -> rows set aside.
        seconds: wall time from reading to the manifest.
        startup_seconds: wall time to start the SparkSession (0 for pyarrow), not in `seconds`.
    """

    out_dir: Path
    backend: str
    manifest: SequenceManifest
    input_rows: int
    quarantine_counts: dict[str, int]
    seconds: float
    startup_seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.input_rows / max(self.seconds, 1e-9)

    def lines(self) -> list[str]:
        """Human summary, one line per entity type."""
        startup = f" (+{self.startup_seconds:.1f}s to start Spark)" if self.startup_seconds else ""
        out = [f"{self.backend}: {self.input_rows:,} input rows in {self.seconds:.1f}s{startup} "
               f"({self.events_per_second:,.0f} events/s)"]
        if self.quarantine_counts:
            out.append("quarantined " + ", ".join(f"{k}={v}" for k, v in self.quarantine_counts.items()))
        for name, stats in self.manifest.entity_types.items():
            out.append(f"{name}: {stats.entities:,} entities, {stats.events:,} elements, {len(stats.shards)} shard(s)")
        return out


def build_sequence_folder(cfg: DictConfig) -> BuildReport:
    """Read, validate and build the sequences of `cfg.period` with `cfg.backend.name`.

    Args:
        cfg: composed conf/build_sequences.yaml: `data`, `paths`, `backend`, `period` (a split name or "all":
            every event before the end of the test split), `until`, `entities_per_shard`, `entity_types`,
            `count_values_from` (a sequence folder whose manifest pins the aggregate count columns), `out_dir`,
            `prepared` (write into the folder foundation.preparation reads instead of `out_dir`), and `spark`
            (master, app_name, conf) for the Spark backend.
    Returns:
        the BuildReport.
    """
    backend = str(cfg.backend.name)
    if backend not in BACKENDS:
        raise ValueError(f"backend.name: {backend!r} is not one of {', '.join(BACKENDS)}")
    _ensure_synthetic(cfg)
    schema = DataSchema.from_config(cfg.data)
    period, until = _window(cfg, schema)
    out_dir, pinned_from = Path(str(cfg.out_dir)), cfg.get("count_values_from")
    if cfg.get("prepared"):
        out_dir, pinned_from = _prepared_target(cfg, schema, pinned_from)
    options: dict[str, Any] = {"until": until, "entities_per_shard": int(cfg.entities_per_shard),
                               "entity_types": _list(cfg.get("entity_types")),
                               "count_values": _pinned_counts(pinned_from)}
    began, startup = time.perf_counter(), 0.0
    if backend == "pyarrow":
        from foundation.data.events import read_events
        from foundation.data.sequences import build_sequences
        from foundation.data.validate import validate

        result = validate(read_events(schema), schema)
        manifest = build_sequences(result.table, schema, out_dir, period, **options)
        rows, counts = result.n_input_rows, result.quarantine_counts
    else:
        from foundation.data.spark.sequences import build_sequences
        from foundation.data.spark.session import session_from_config
        from foundation.data.spark.source import raw_arrow_schema, read_events
        from foundation.data.spark.validate import validate

        spark = session_from_config(cfg.spark)
        startup = time.perf_counter() - began
        began = time.perf_counter()
        result = validate(read_events(spark, schema), schema, raw_arrow=raw_arrow_schema(schema))
        try:
            manifest = build_sequences(result.frame, schema, out_dir, period, **options)
        finally:
            result.unpersist()
        rows, counts = result.n_input_rows, result.quarantine_counts
    return BuildReport(out_dir, backend, manifest, rows, counts, time.perf_counter() - began, startup)


def _window(cfg: DictConfig, schema: DataSchema) -> tuple[str | None, Any]:
    """(period, until) for `build_sequences`: "all" = no start, ends with the test split (as preparation)."""
    period, until = str(cfg.period), cfg.get("until")
    if period != "all":
        return period, until
    test_end = schema.splits.period("test").end
    if until is None:
        return None, test_end
    return None, min(test_end, pd.Timestamp(str(until)).to_pydatetime())


def _prepared_target(cfg: DictConfig, schema: DataSchema, pinned_from: Any) -> tuple[Path, Any]:
    """The sequence folder foundation.preparation reads for `cfg.period`, and where "all" takes its aggregate
    columns from (the pretrain folder, as preparation does), so scripts/pretrain.py finds both folders complete
    and uses these shards."""
    period = str(cfg.period)
    if period not in PERIODS:
        raise ValueError(f"prepared: true writes the folders pretraining reads ({', '.join(PERIODS)}), "
                         f"not period {period!r}")
    if cfg.get("until") is not None or cfg.get("entity_types") is not None:
        raise ValueError("prepared: true builds exactly what preparation builds; leave until and entity_types null")
    sequences = Path(str(cfg.paths.data_dir)) / schema.name / "prepared" / fingerprint(cfg.data, schema) / "sequences"
    if period == "all" and pinned_from is None:
        if not (sequences / "pretrain" / "manifest.json").exists():
            raise FileNotFoundError(f"{sequences / 'pretrain'}: build period=pretrain first (period=all counts the "
                                    f"aggregate values chosen on the pretraining period)")
        pinned_from = sequences / "pretrain"
    return sequences / period, pinned_from


def _list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in (OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)]


def _pinned_counts(folder: Any) -> dict[str, list[str]] | None:
    """Aggregate count values of an earlier build (its manifest), e.g. the pretraining period's."""
    if not folder:
        return None
    manifest = SequenceManifest.read(str(folder))
    return {t: s.count_values for t, s in manifest.entity_types.items() if s.count_values} or None


def _ensure_synthetic(cfg: DictConfig) -> None:
    """Generate the synthetic world when it is the dataset and its folder holds no files yet. Unlike
    preparation, files already there are used as they are (never regenerated over), whatever made them."""
    if str(cfg.data.get("name")) != "synthetic" or cfg.get("synthetic") is None:
        return
    source = Path(str(cfg.data.source.path))
    if source.exists() and (source.is_file() or any(source.glob("*.parquet"))):
        return
    from foundation.data.synthetic import ensure_synthetic

    ensure_synthetic(cfg.synthetic, out_dir=str(source))
