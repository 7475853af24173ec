"""Side by side with pytorch-lifestream (ptls): CoLES pretraining throughput and downstream fraud PR-AUC.

Both frameworks train a contrastive (CoLES-style) model on the same customer sequence shards (the pretraining
period of the prepared default data), at the width and depth of our `small` preset, with the same entities per
batch, views per entity, longest view and number of optimizer steps. ptls runs in its own environment
(`benchmarks/lifestream`, created here when missing); ours runs `bench_training` with the contrastive objective.

Downstream, each model gives the customer's point-in-time embedding strictly before every fraud example (a
charge attempt, out-of-time split of `foundation.evaluation.splits`); the same LightGBM head is fitted on
`[embedding, has_history, the attempt's raw fields]` for each, plus the raw fields alone as the reference, and
scored on the same test examples with bootstrap intervals (`foundation.evaluation.metrics.evaluate_scores`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from foundation.benchmark.downstream import our_embeddings, score_features, their_embeddings
from foundation.benchmark.examples import customer_shard, example_keys, fraud_examples
from foundation.benchmark.lifestream_env import ensure_lifestream_env
from foundation.benchmark.report import error_entry
from foundation.benchmark.training import bench_training, matmul_peak_flops
from foundation.data.schema import DataSchema
from foundation.evaluation.splits import TaskSpec
from foundation.model import build_config
from foundation.pointintime import SequenceStore, raw_field_features
from foundation.preparation import encode_period, load_events

TASK_CONF = Path(__file__).resolve().parents[2] / "conf" / "task"


@dataclass
class Comparison:
    """What every model of the comparison shares: settings, examples, raw fields and the shards read.

    Attributes:
        settings: the budget and architecture (also written to results.json).
        width: FoundationConfig of the preset (hidden, layers, heads, feed-forward of both frameworks).
        task: the downstream task; keys: example_keys of every example; raw: (N, R) raw fields of them.
        train_seq: sequence folder both frameworks train on; encoded: its customers, encoded, >= min_len events.
        store: full-history sequences our models embed from; prepared_root: the prepared data folder.
        schema: the data schema (its categorical and numeric fields are ptls' inputs, its labels never).
    """

    settings: dict[str, Any]
    width: Any
    task: TaskSpec
    examples: dict[str, pa.Table]
    keys: pa.Table
    raw: np.ndarray
    raw_names: list[str]
    raw_categorical: list[str]
    train_seq: Path
    encoded: pa.Table
    store: SequenceStore
    prepared_root: Path
    schema: DataSchema

    def downstream(self, name: str, vectors: np.ndarray, has_history: np.ndarray, lcfg: Mapping[str, Any]
                   ) -> dict[str, Any]:
        """The head's test metrics on [vectors, has_history, raw fields] (vectors (N, H) in key order)."""
        features = np.hstack([vectors, has_history[:, None].astype(np.float32)])
        return score_features(name, features, self.keys, self.raw, self.raw_names, self.raw_categorical, self.task,
                              lcfg.get("head"), int(lcfg["n_bootstrap"]))


def prepare_comparison(prepared: Any, lcfg: Mapping[str, Any]) -> Comparison:
    """Settings, examples, raw fields and training table of the comparison (see `bench_comparison`)."""
    schema, tokenizer = prepared.schema, prepared.tokenizer
    field_specs, entity_types = tokenizer.field_specs(), list(tokenizer.entity_types)
    width = build_config(str(lcfg["preset"]), field_specs, entity_types)
    settings = {"preset": str(lcfg["preset"]), "hidden": width.hidden_size, "layers": width.num_layers,
                "heads": width.num_heads, "ffn": width.intermediate_size, "optimizer_steps": int(lcfg["steps"]),
                "warmup_steps_untimed": int(lcfg["warmup"]), "entities_per_batch": int(lcfg["batch_size"]),
                "views": int(lcfg["views"]), "max_len": int(lcfg["max_len"]), "min_len": int(lcfg["min_len"]),
                "lr": float(lcfg["lr"]), "threads": torch.get_num_threads(), "entity_type": "customer",
                "task": str(lcfg["task"])}
    task = TaskSpec.from_config(TASK_CONF / f"{lcfg['task']}.yaml")
    events, _ = load_events(schema)
    examples = fraud_examples(events, schema, task, dict(lcfg["examples"]), int(lcfg.get("seed", 0)))
    keys = example_keys(examples)
    raw = raw_field_features(events, schema, task.velocity)
    files = sorted((prepared.root / "encoded" / "pretrain" / "customer").glob("part-*.parquet"))
    encoded = pa.concat_tables([pq.read_table(f) for f in files])
    # ptls trains only on entities with at least min_len events; ours draws from the same set.
    encoded = encoded.filter(pc.greater_equal(encoded.column("length"), int(lcfg["min_len"])))
    store = SequenceStore(prepared.root / "sequences" / "all", tokenizer,
                          encode_period(tokenizer, prepared.root, "all"))
    return Comparison(settings, width, task, examples, keys, raw.values[keys.column("row").to_numpy()], raw.names,
                      raw.categorical, prepared.root / "sequences" / "pretrain", encoded, store, prepared.root, schema)


@dataclass
class Trained:
    """A trained model of the comparison: its results.json entry and the examples' embeddings."""

    entry: dict[str, Any]
    vectors: np.ndarray
    has_history: np.ndarray


def run_theirs(cmp: Comparison, encoder: str, embed_dir: Path, lcfg: Mapping[str, Any], work_dir: Path,
               load: Callable[[], float]) -> Trained:
    """Train ptls CoLES with `encoder` ("rnn" | "transformer") and embed the examples (one ptls process)."""
    from benchmarks.lifestream.harness import run_lifestream_benchmark

    s, width = cmp.settings, cmp.width
    started = load()
    res = run_lifestream_benchmark(
        cmp.train_seq, width.hidden_size, s["optimizer_steps"], work_dir / "ptls", encoders=[encoder],
        schema=cmp.schema, embed_seq_dir=embed_dir, batch_size=s["entities_per_batch"],
        max_len=s["max_len"], warmup=s["warmup_steps_untimed"], threads=s["threads"],
        timeout=float(lcfg["timeout_s"]), split_count=s["views"], min_len=s["min_len"], lr=s["lr"],
        layers=width.num_layers, heads=width.num_heads, ffn=width.intermediate_size,
        rnn_layers=int(lcfg["gru_layers"]), pit_from=pc.min(cmp.keys.column("event_time")).as_py().isoformat(),
        pit_where="event_type=charge,decline", seed=int(lcfg.get("seed", 0)))[encoder]
    vectors, has_history = their_embeddings(res["pit_embeddings"], cmp.keys)
    entry = {"framework": f"pytorch-lifestream {res.get('ptls_version', '')}".strip(), "encoder": encoder,
             "params": res["params"], "events_per_s": round(res["events_per_s"], 1),
             "events_per_cpu_s": round(res["events_per_cpu_s"], 1), "train_wall_s": round(res["fit_s"], 1),
             "final_loss": res.get("final_loss"), "embed_wall_s": round(res["embed_wall_s"], 1),
             "pit_rows": res.get("pit_rows"), "load_avg": [started, load()]}
    return Trained(entry, vectors, has_history)


def run_ours(cmp: Comparison, spec: Mapping[str, Any], field_specs: Sequence[Mapping], entity_types: Sequence[str],
             lcfg: Mapping[str, Any], peak: float, load: Callable[[], float]) -> Trained:
    """Train ours with the contrastive objective (`spec`: name, encoder, overrides) and embed the examples."""
    s = cmp.settings
    overrides = dict(spec.get("overrides") or {})
    started = load()
    t0 = time.perf_counter()
    result, model = bench_training(
        cmp.encoded, field_specs, entity_types, s["preset"], str(spec["encoder"]), batch_size=s["entities_per_batch"],
        max_len=s["max_len"], steps=s["optimizer_steps"] - s["warmup_steps_untimed"],
        warmup=s["warmup_steps_untimed"], peak_flops=peak, objectives={"contrastive": 1.0},
        seed=int(lcfg.get("seed", 0)), views=s["views"], min_len=s["min_len"], lr=s["lr"],
        model_overrides=overrides, return_model=True)
    train_wall = time.perf_counter() - t0
    vectors, has_history, embed_s = our_embeddings(model.foundation, field_specs, cmp.store, cmp.keys)
    entry = {"framework": "ours", "encoder": str(spec["encoder"]), "params": result["params"],
             "events_per_s": result["events_per_s"], "events_per_cpu_s": result["events_per_cpu_s"],
             "train_wall_s": round(train_wall, 1), "final_loss": result["final_loss"], "mfu": result["mfu"],
             "data_share": result["data_share"], "embed_wall_s": round(embed_s, 1), "overrides": overrides,
             "load_avg": [started, load()]}
    return Trained(entry, vectors, has_history)


def run_order(ours: Sequence[str], theirs: Sequence[str], pairs: Sequence[Sequence[str]]) -> list[str]:
    """Model names in training order: each (ours, theirs) pair back to back (ours first: its embedding is
    short, so the two trainings are seconds apart and see the same machine load), then the unpaired ones."""
    order: list[str] = []
    for pair in pairs:
        order += [name for name in pair if name in (*ours, *theirs) and name not in order]
    return order + [name for name in (*ours, *theirs) if name not in order]


def bench_comparison(prepared: Any, lcfg: Mapping[str, Any], work_dir: Path, load: Callable[[], float]
                     ) -> dict[str, Any]:
    """Section 3: ptls CoLES (GRU, transformer) against ours (contrastive; transformer, GRU).

    Args:
        prepared: PreparedData of the default synthetic world (sequences/pretrain and /all, tokenizer).
        lcfg: the `lifestream` block of conf/benchmark.yaml.
        work_dir: where ptls writes its models and embeddings.
        load: returns the 1-minute load average (recorded around each model).
    Returns:
        {"settings", "examples", "lifestream_env", "order", "models": {name: {framework, encoder, params,
         events_per_s, events_per_cpu_s, ..., downstream}}, "reference" (raw fields only), "ratios"}. A failing
        model is an `error` entry under its name; the others still run.
    """
    lcfg = dict(lcfg)
    cmp = prepare_comparison(prepared, lcfg)
    out: dict[str, Any] = {"settings": cmp.settings, "models": {},
                           "examples": {s: {"n": t.num_rows, "positive": int(pc.sum(t.column("label")).as_py())}
                                        for s, t in cmp.examples.items()}}
    theirs = {f"ptls-{e}": str(e) for e in lcfg["theirs"]}
    try:
        python = ensure_lifestream_env(bool(lcfg["create_env"]), float(lcfg["create_env_timeout_s"]),
                                       work_dir / "setup_env.log")
        out["lifestream_env"] = {"status": "ok", "python": str(python)}
    except Exception as err:  # the section still reports ours
        out["lifestream_env"] = {"status": "skipped", **error_entry(err)}
        theirs = {}
    embed_dir = None
    if theirs:
        # ptls embeds every charge attempt of the example customers from the first example on: cut their
        # histories after the last test example so nothing later is embedded for nothing.
        until = int(pc.max(pc.cast(cmp.examples["test"].column("event_time"), pa.int64())).as_py()) + 1
        embed_dir = customer_shard(cmp.prepared_root / "sequences" / "all", "customer",
                                   pc.unique(cmp.keys.column("customer_id")), until, work_dir / "embed_sequences")
    ours = {str(spec["name"]): spec for spec in lcfg["ours"]}
    tokenizer = prepared.tokenizer
    peak = matmul_peak_flops()
    trained: dict[str, Trained] = {}
    out["order"] = run_order(list(ours), list(theirs), lcfg.get("pairs") or [])
    for name in out["order"]:
        try:
            if name in ours:
                trained[name] = run_ours(cmp, ours[name], tokenizer.field_specs(), list(tokenizer.entity_types),
                                         lcfg, peak, load)
            else:
                trained[name] = run_theirs(cmp, theirs[name], embed_dir, lcfg, work_dir, load)
            out["models"][name] = trained[name].entry
        except Exception as err:
            framework, encoder = ("ours", str(ours[name]["encoder"])) if name in ours else \
                ("pytorch-lifestream", theirs[name])
            out["models"][name] = {"framework": framework, "encoder": encoder, **error_entry(err)}
    # The head after every training, so the paired trainings stay back to back.
    for name, model in trained.items():
        try:
            model.entry["downstream"] = cmp.downstream(name, model.vectors, model.has_history, lcfg)
        except Exception as err:
            model.entry["downstream"] = error_entry(err)
    try:
        reference = score_features("none", np.zeros((cmp.keys.num_rows, 0), np.float32), cmp.keys, cmp.raw,
                                   cmp.raw_names, cmp.raw_categorical, cmp.task, lcfg.get("head"),
                                   int(lcfg["n_bootstrap"]))
        out["reference"] = {"name": "raw fields only", "downstream": reference}
    except Exception as err:
        out["reference"] = {"name": "raw fields only", **error_entry(err)}
    out["ratios"] = throughput_ratios(out["models"], lcfg.get("pairs") or [])
    return out


def throughput_ratios(models: Mapping[str, Mapping[str, Any]], pairs: Sequence[Sequence[str]]) -> list[dict]:
    """ours / theirs events/s (wall and CPU) for each (ours, theirs) pair whose two runs succeeded."""
    out = []
    for ours, theirs in pairs:
        a, b = models.get(ours, {}), models.get(theirs, {})
        if "events_per_s" not in a or "events_per_s" not in b:
            continue
        out.append({"ours": ours, "theirs": theirs,
                    "events_per_s_ratio": round(a["events_per_s"] / b["events_per_s"], 2),
                    "events_per_cpu_s_ratio": round(a["events_per_cpu_s"] / b["events_per_cpu_s"], 2)
                    if a.get("events_per_cpu_s") and b.get("events_per_cpu_s") else None})
    return out

