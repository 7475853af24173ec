"""Embeddings in a few lines for downstream teams, and the `scripts/embed.py` job.

    from foundation.embeddings import Embedder

    embedder = Embedder.from_pretrained("checkpoints/<run>")          # or checkpoints/<run>/hf
    table = embedder.embed(events_df)                                  # raw columns, as in the run's data files
    table = embedder.embed(events_df, mode="per_event")                # the state right after every event

`embed` validates the raw events with the run's data schema (a bad value is a clear error naming the
column), builds the entity sequences exactly as training did (time-ordered, issuer hours aggregated) and
returns the parquet layout of `foundation.embeddings.export`: entity_type, entity_id, as_of, embedding.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from omegaconf import DictConfig, OmegaConf

from foundation.data.schema import DataSchema
from foundation.embeddings.export import MODES, ExportSummary, export_embeddings, read_embeddings
from foundation.pointintime import (
    PointInTimeEncoder,
    PointInTimeStates,
    PretrainedRun,
    SequenceStore,
    aggregate_specs,
)

log = logging.getLogger(__name__)


class Embedder:
    """A pretrained model with its tokenizer and data schema, turning raw events into entity embeddings.

    Args:
        run: the loaded pretraining run (model, tokenizer, config).
        schema: the data schema of the raw events (default: the run's own data config).
        device: where the model runs.
        batch_tokens: padded events per forward pass.
        progress: show progress bars.
    """

    def __init__(self, run: PretrainedRun, schema: DataSchema | None = None, device: str = "cpu",
                 batch_tokens: int = 32768, progress: bool = False):
        self.run = run
        if schema is None:
            if run.config is None or "data" not in run.config:
                raise ValueError(f"{run.run_dir}: no config.yaml with a data config; pass schema=")
            schema = DataSchema.from_config(run.config.data)
        self.schema = schema
        self.encoder = PointInTimeEncoder(run.model, run.tokenizer.field_specs(), batch_tokens, device, progress)

    @classmethod
    def from_pretrained(cls, path: str | Path, data: Any = None, device: str = "cpu",
                        batch_tokens: int = 32768, progress: bool = False) -> Embedder:
        """Load a pretraining run folder (or its hf/ folder).

        Args:
            path: checkpoints/<run> or checkpoints/<run>/hf.
            data: the raw events' data config (DataSchema, DictConfig/dict or conf/data/<name>.yaml) when it
                is not the run's own.
            device: "cpu", "cuda", ...
        """
        run = PretrainedRun.load(path)
        schema = None
        if isinstance(data, DataSchema):
            schema = data
        elif data is not None:
            root = OmegaConf.create({"paths": (run.config or {}).get("paths") or {"data_dir": "data", "root_dir": "."}})
            root.data = OmegaConf.load(data) if isinstance(data, (str, Path)) else data
            schema = DataSchema.from_config(root.data)
        return cls(run, schema, device, batch_tokens, progress)

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    def embed(self, events: Any, mode: str = "last", entity_types: Sequence[str] | None = None) -> pa.Table:
        """Embeddings of the entities in a table of raw events.

        Args:
            events: pa.Table or pandas.DataFrame with the raw columns of the data schema (label columns may be
                left out: they are never inputs).
            mode: "last" (one row per entity, its state after its last event) or "per_event" (one row per
                event, the state right after it, the event included; adds `event_id`). The state *before*
                an event is the entity's previous row (foundation.embeddings.export).
            entity_types: which entity types (default: every type of the schema).
        Returns:
            pa.Table: entity_type, entity_id, as_of timestamp[ms], embedding fixed_size_list<float32>[H]
            (+ event_id for per_event), entity types in schema order, entities in id order.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        table = self._raw_table(events)
        from foundation.data.sequences import build_sequences
        from foundation.data.validate import validate

        canonical = validate(table, self.schema, on_error="raise").table
        pinned = {t: spec.count_values for t, spec in aggregate_specs(self.schema, self.run.tokenizer).items()
                  if spec.count_values}
        with tempfile.TemporaryDirectory(prefix="embed-") as tmp:
            build_sequences(canonical, self.schema, Path(tmp) / "sequences", entity_types=entity_types,
                            count_values=pinned or None)
            store = SequenceStore(Path(tmp) / "sequences", self.run.tokenizer)
            export_embeddings(PointInTimeStates(store, self.encoder), Path(tmp) / "embeddings", mode)
            return read_embeddings(Path(tmp) / "embeddings")

    def _raw_table(self, events: Any) -> pa.Table:
        if not isinstance(events, pa.Table):
            try:
                events = pa.Table.from_pandas(events, preserve_index=False)
            except (TypeError, AttributeError) as err:
                raise TypeError(f"events must be a pyarrow Table or a pandas DataFrame, got "
                                f"{type(events).__name__}") from err
        for column in self.schema.label_columns:  # labels are never inputs: absent ones are unknown
            if column not in events.column_names:
                events = events.append_column(column, pa.nulls(events.num_rows, pa.float64()))
        return events


def embed(cfg: DictConfig) -> Path:
    """The `scripts/embed.py` job: embeddings of every entity of a dataset's full history as parquet.

    Args:
        cfg: conf/embed.yaml: checkpoint, data (optional: default the run's), mode, entity_types, out_dir,
            device, batch_tokens, chunk_entities, torch_threads.
    Returns:
        The output folder (manifest.json + <entity_type>/part-*.parquet).
    """
    if not cfg.get("checkpoint"):
        raise ValueError("checkpoint: required, e.g. checkpoint=checkpoints/<pretraining run>")
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    run = PretrainedRun.load(cfg.checkpoint)
    data = cfg.get("data")
    paths = {"root_dir": cfg.paths.root_dir, "data_dir": cfg.paths.data_dir} if data is not None else None
    _, store, _ = run.store(run.data_config(data, paths), period=str(cfg.period))
    encoder = PointInTimeEncoder(run.model, run.tokenizer.field_specs(), int(cfg.batch_tokens), str(cfg.device))
    checkpoint = {"hf_dir": str(run.hf_dir.resolve()), "digest": run.digest()}
    summary: ExportSummary = export_embeddings(PointInTimeStates(store, encoder), cfg.out_dir, str(cfg.mode),
                                               cfg.get("entity_types"), int(cfg.chunk_entities), checkpoint)
    for entity_type, n in summary.entities.items():
        print(f"{entity_type}: {n} entities, {summary.rows[entity_type]} rows")
    print(f"embedded {sum(summary.entities.values())} entities in {summary.seconds:.1f} s "
          f"({summary.entities_per_s:.0f} entities/s, {summary.events_read / max(summary.seconds, 1e-9):.0f} "
          f"events/s through the encoder)")
    return Path(cfg.out_dir)
