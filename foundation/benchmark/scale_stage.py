"""The two stages of the scale run that have no entry point of their own (scripts/scale_stage.py runs them in
their own process for scripts/scale_run.py, so each gets its own wall time and peak memory):

`validate` reads and validates the source with the sequence backend (what every sequence build does first); `tokenizer` fits the
tokenizer on the pretraining-period sequences and encodes them (`foundation.preparation.prepare`, as
scripts/pretrain.py does before training; the sequence folders must already be built). Each writes a small
JSON of counts to RESULT.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import open_dict


def _config(name: str, overrides: list[str]):
    from foundation.benchmark.context import compose_config

    cfg = compose_config(name, overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(str(cfg.paths.root_dir)) / "outputs" / "scale_stage")  # outside Hydra's app
    return cfg


def run_validate(overrides: list[str]) -> dict:
    """Read and validate the source of conf/build_sequences.yaml + `overrides` with its backend (pyarrow, or
    Spark with `backend=spark spark.master='local[2]'`), as a sequence build does first; returns the row counts."""
    from foundation.data.schema import DataSchema

    cfg = _config("build_sequences", overrides)
    schema = DataSchema.from_config(cfg.data)
    if str(cfg.backend.name) != "spark":
        from foundation.preparation import load_events

        table, result = load_events(schema)
        return {"input_rows": result.n_input_rows, "clean_rows": table.num_rows, "quarantined": result.n_quarantined}
    from foundation.data.spark.session import session_from_config
    from foundation.data.spark.source import raw_arrow_schema, read_events
    from foundation.data.spark.validate import validate

    spark = session_from_config(cfg.spark)
    result = validate(read_events(spark, schema), schema, raw_arrow=raw_arrow_schema(schema))
    result.unpersist()
    return {"input_rows": result.n_input_rows, "clean_rows": result.n_clean_rows,
            "quarantined": sum(result.quarantine_counts.values())}


def run_tokenizer(overrides: list[str]) -> dict:
    """Fit the tokenizer and encode the pretraining period; returns the sequence elements encoded."""
    from foundation.data.sequences import SequenceManifest
    from foundation.preparation import prepare

    data = prepare(_config("pretrain", overrides), ("pretrain",))
    manifest = SequenceManifest.read(data.sequence_dir("pretrain"))
    return {"elements": sum(s.events for s in manifest.entity_types.values()),
            "entities": {t: s.entities for t, s in manifest.entity_types.items()},
            "prepared": str(data.root)}


STAGES = {"validate": run_validate, "tokenizer": run_tokenizer}


def run_stage(name: str, result_path: str, overrides: list[str]) -> dict:
    """Run stage `name` on conf/pretrain.yaml + `overrides`; write its counts as JSON to `result_path`.

    Raises:
        ValueError: an unknown stage.
    """
    if name not in STAGES:
        raise ValueError(f"stage {name!r}: valid stages are {sorted(STAGES)}")
    counts = STAGES[name](overrides)
    Path(result_path).write_text(json.dumps(counts, indent=2) + "\n")
    return counts
