"""Embedding export speed: `foundation.embeddings.export_embeddings` (the path of scripts/embed.py) over the
full-history sequences of a pretraining run's data, per entity type, in entities/s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from foundation.benchmark.report import error_entry
from foundation.embeddings.export import export_embeddings
from foundation.pointintime import PointInTimeEncoder, PointInTimeStates, PretrainedRun, SequenceStore, Shard


class FirstShards(SequenceStore):
    """A SequenceStore that serves only the first `max_shards` shards of each entity type (bounds the work of a
    benchmark on a large store; shards are contiguous ranges of sorted entity ids, so this is a plain subset)."""

    def __init__(self, store: SequenceStore, max_shards: int):
        super().__init__(store.seq_dir, store.tokenizer, store.encoded_dir)
        self.max_shards = int(max_shards)

    def shards(self, entity_type: str) -> list[Shard]:
        return super().shards(entity_type)[: self.max_shards]


def bench_export(checkpoint: Path, ecfg: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Export the embeddings of every entity (or of the first `max_shards` shards) of each type; time each type.

    Args:
        checkpoint: a pretraining run folder.
        ecfg: the `embeddings` block of conf/benchmark.yaml (modes, entity_types, max_shards, batch_tokens,
            chunk_entities).
        out_dir: the parquet files go to `<out_dir>/<mode>/<entity_type>/`.
    Returns:
        {"modes": {mode: {entity_type: {entities, rows, seconds, entities_per_s, events_read, events_per_s}}},
         plus the model's window, width and the torch threads}.
    """
    run = PretrainedRun.load(checkpoint)
    _, store, _ = run.store(run.data_config())
    if ecfg.get("max_shards"):
        store = FirstShards(store, int(ecfg["max_shards"]))
    encoder = PointInTimeEncoder(run.model, run.tokenizer.field_specs(), int(ecfg["batch_tokens"]), "cpu",
                                 progress=False)
    states = PointInTimeStates(store, encoder)
    types: Sequence[str] = list(ecfg.get("entity_types") or store.entity_types)
    modes: dict[str, dict[str, Any]] = {}
    for mode in ecfg["modes"]:
        mode = str(mode)
        modes[mode] = {}
        for entity_type in types:
            try:
                summary = export_embeddings(states, out_dir / mode, mode, [entity_type], int(ecfg["chunk_entities"]))
                n, seconds = summary.entities[entity_type], max(summary.seconds, 1e-9)
                modes[mode][entity_type] = {
                    "entities": n, "rows": summary.rows[entity_type], "seconds": round(summary.seconds, 2),
                    "entities_per_s": round(n / seconds, 1), "events_read": summary.events_read,
                    "events_per_s": round(summary.events_read / seconds, 1)}
            except Exception as err:  # one entity type failing does not hide the others
                modes[mode][entity_type] = error_entry(err)
    return {"max_len": int(run.model.config.max_position), "hidden_size": int(run.model.config.hidden_size),
            "threads": torch.get_num_threads(), "checkpoint": str(checkpoint), "max_shards": ecfg.get("max_shards"),
            "modes": modes}
