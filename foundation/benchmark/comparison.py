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

import logging
import subprocess
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from foundation.benchmark.training import bench_training, matmul_peak_flops
from foundation.embeddings.pointintime import PointInTimeEncoder, PointInTimeStates, SequenceStore
from foundation.evaluation.metrics import evaluate_scores
from foundation.evaluation.splits import TaskSpec, select_examples
from foundation.finetuning import bound_examples, chosen_customers
from foundation.heads.features import raw_field_features
from foundation.heads.gbdt import GBDTHead
from foundation.model import build_config
from foundation.preparation import encode_period, load_events

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "validation", "test")
TASK_CONF = ROOT / "conf" / "task"


class LifestreamUnavailable(RuntimeError):
    """The pytorch-lifestream environment is missing and could not be created (the reason says why)."""


def error_entry(err: BaseException) -> dict[str, str]:
    """An error as results.json records it: type, message and the end of the traceback."""
    tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
    return {"error": f"{type(err).__name__}: {err}", "traceback": tail[-2000:]}


def ensure_lifestream_env(create: bool, timeout: float, log_path: Path) -> Path:
    """The ptls interpreter; runs benchmarks/lifestream/setup_env.sh first when the environment is missing.

    Raises:
        LifestreamUnavailable: missing and `create` is off, or the setup failed / timed out (with its log).
    """
    from benchmarks.lifestream.harness import LifestreamEnvMissing, lifestream_python

    try:
        return lifestream_python()
    except LifestreamEnvMissing as err:
        if not create:
            raise LifestreamUnavailable(f"{err} (lifestream.create_env is false)") from None
    script = ROOT / "benchmarks" / "lifestream" / "setup_env.sh"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"creating the pytorch-lifestream environment ({script}; a few minutes), log {log_path}", flush=True)
    with open(log_path, "w") as out:
        try:
            done = subprocess.run(["bash", str(script)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LifestreamUnavailable(f"setup_env.sh did not finish in {timeout:.0f} s; log {log_path}") from None
    if done.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise LifestreamUnavailable(f"setup_env.sh failed (exit {done.returncode}); log {log_path}:\n{tail}")
    try:
        return lifestream_python()
    except LifestreamEnvMissing as err:
        raise LifestreamUnavailable(str(err)) from None


# ---------------------------------------------------------------- examples and shards


def fraud_examples(events: pa.Table, schema: Any, task: TaskSpec, bounds: Mapping[str, Any],
                   seed: int) -> dict[str, pa.Table]:
    """The task's out-of-time examples per split, bounded like a fine-tune run (a seeded share of customers,
    the last/first days of each period), so four models can be embedded and compared in minutes."""
    customers = chosen_customers(events, bounds.get("customers"), seed)
    out = {}
    for split in SPLITS:
        table = bound_examples(select_examples(events, schema, task, split), split, schema, bounds, customers)
        labels = table.column("label").to_numpy()
        if len(labels) == 0 or labels.min() == labels.max():
            raise ValueError(f"{split}: {len(labels)} examples, {int(labels.sum())} positive: one class only; "
                             "widen lifestream.examples (customers, days)")
        out[split] = table
    return out


def truncate_sequences(table: pa.Table, until_ms: int) -> pa.Table:
    """Sequence rows cut to their events strictly before `until_ms` (every list column), lengths updated.

    Args:
        table: sequence rows (architecture.md section 3).
        until_ms: epoch milliseconds.
    """
    times = table.column("event_time").combine_chunks()
    offsets = times.offsets.to_numpy().astype(np.int64)
    flat = times.flatten().cast(pa.int64()).to_numpy()
    keep = flat < until_ms
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    new_offsets = pa.array(kept_before[offsets - offsets[0]].astype(np.int32))
    mask = pa.array(keep)
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):
            values = column.combine_chunks().flatten().filter(mask)
            columns[name] = pa.ListArray.from_arrays(new_offsets, values)
        else:
            columns[name] = column
    columns["length"] = pa.array(np.diff(kept_before[offsets - offsets[0]]).astype(np.int32))
    return pa.table(columns)


def customer_shard(seq_dir: Path, entity_type: str, entity_ids: pa.Array, until_ms: int, out_dir: Path) -> Path:
    """One shard holding the sequences of `entity_ids` (cut at `until_ms`): what ptls embeds.

    Returns:
        `out_dir` (with `<entity_type>/part-00000.parquet`).
    """
    files = sorted((seq_dir / entity_type).glob("part-*.parquet"))
    tables = []
    for path in files:
        table = pq.read_table(path)
        tables.append(table.filter(pc.is_in(table.column("entity_id"), value_set=entity_ids)))
    target = out_dir / entity_type / "part-00000.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(truncate_sequences(pa.concat_tables(tables), until_ms), target)
    return out_dir


def example_keys(examples: dict[str, pa.Table]) -> pa.Table:
    """row, event_id, event_time, customer_id, label, split of every example, splits in order."""
    parts = [t.select(["row", "event_id", "event_time", "customer_id", "label"])
             .append_column("split", pa.array([s] * t.num_rows, pa.string())) for s, t in examples.items()]
    return pa.concat_tables(parts)


# ---------------------------------------------------------------- embeddings of both frameworks


def our_embeddings(model: torch.nn.Module, field_specs: Sequence[Mapping], store: SequenceStore,
                   keys: pa.Table) -> tuple[np.ndarray, np.ndarray, float]:
    """Customer states strictly before each example with our trained model (section-8 windows).

    Returns:
        (embedding (N, H) float32, has_history (N,) bool, seconds).
    """
    start = time.perf_counter()
    encoder = PointInTimeEncoder(model, field_specs, progress=False)
    times = pc.cast(keys.column("event_time"), pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    found = PointInTimeStates(store, encoder).as_of("customer", keys.column("customer_id"), times,
                                                     keys.column("event_id"))
    return found.hidden, found.has_history, time.perf_counter() - start


def their_embeddings(pit_path: str | Path, keys: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """ptls point-in-time embeddings (state strictly before each event) in the order of `keys`.

    Raises:
        KeyError: examples without an embedding (the embedded shard or its filters missed them).
    """
    table = pq.read_table(pit_path, columns=["event_id", "has_history", "embedding"])
    index = pc.index_in(pc.cast(keys.column("event_id"), pa.string()), value_set=table.column("event_id"))
    if index.null_count:
        raise KeyError(f"{index.null_count} of {keys.num_rows} examples have no ptls embedding in {pit_path}")
    rows = index.to_numpy(zero_copy_only=False).astype(np.int64)
    embedding = table.column("embedding").combine_chunks()
    width = embedding.type.list_size
    vectors = embedding.flatten().to_numpy().reshape(-1, width)[rows].astype(np.float32)
    return vectors, table.column("has_history").to_numpy()[rows].astype(bool)


# ---------------------------------------------------------------- the head


def gbdt_head(task: TaskSpec, overrides: Mapping[str, Any] | None) -> GBDTHead:
    """The task's LightGBM settings with `overrides` ({num_boost_round, early_stopping_rounds, params})."""
    settings = {**task.gbdt}
    extra = dict(overrides or {})
    settings["params"] = {**settings.get("params", {}), **dict(extra.pop("params", {}) or {})}
    settings.update(extra)
    return GBDTHead.from_config(settings)


def score_features(name: str, features: np.ndarray, keys: pa.Table, raw: np.ndarray, raw_names: list[str],
                   categorical: list[str], task: TaskSpec, head: Mapping[str, Any] | None,
                   n_bootstrap: int) -> dict[str, Any]:
    """Fit the head on train (early stopping on validation) and score the test examples.

    Args:
        features: (N, D) model features of every example (D = 0 for the raw-only reference).
        keys: example_keys (split and label per row).
        raw: (N, R) raw fields of the examples.
    Returns:
        pr_auc / roc_auc / recall_at_1pct_fpr {value, ci_low, ci_high}, n_test, n_test_positive, trees.
    """
    split = keys.column("split").to_numpy(zero_copy_only=False)
    labels = keys.column("label").to_numpy().astype(np.int64)
    X = np.hstack([features, raw]).astype(np.float32)
    names = [f"{name}_{i}" for i in range(features.shape[1])] + raw_names
    tr, va, te = (split == s for s in SPLITS)
    model = gbdt_head(task, head).fit(X[tr], labels[tr], X[va], labels[va], feature_names=names,
                                      categorical_features=categorical)
    metrics = evaluate_scores(labels[te], model.predict_proba(X[te]), n_bootstrap=n_bootstrap)
    return {**{k: v for k, v in metrics.items() if isinstance(v, dict)}, "n_test": metrics["n"],
            "n_test_positive": metrics["n_positive"], "n_train": int(tr.sum()),
            "trees": model.info.get("best_iteration")}


# ---------------------------------------------------------------- the section


def bench_comparison(prepared: Any, lcfg: Mapping[str, Any], work_dir: Path, load: Any) -> dict[str, Any]:
    """Section 3: ptls CoLES (GRU, transformer) against ours (contrastive; transformer, GRU).

    Args:
        prepared: PreparedData of the default synthetic world (sequences/pretrain and /all, tokenizer).
        lcfg: the `lifestream` block of conf/benchmark.yaml.
        work_dir: where ptls writes its models and embeddings.
        load: callable returning the load average (recorded per run).
    Returns:
        {"settings", "examples", "models": {name: {framework, encoder, throughput..., downstream...}},
         "reference": raw-fields-only downstream, "lifestream_env": status}. A failing model is an
        `error` entry under its name; the others still run.
    """
    lcfg = dict(lcfg)
    schema, tokenizer = prepared.schema, prepared.tokenizer
    field_specs, entity_types = tokenizer.field_specs(), list(tokenizer.entity_types)
    preset = str(lcfg["preset"])
    width = build_config(preset, field_specs, entity_types)
    steps, warmup = int(lcfg["steps"]), int(lcfg["warmup"])
    batch_size, max_len, views = int(lcfg["batch_size"]), int(lcfg["max_len"]), int(lcfg["views"])
    min_len, lr, seed = int(lcfg["min_len"]), float(lcfg["lr"]), int(lcfg.get("seed", 0))
    threads = torch.get_num_threads()
    settings = {"preset": preset, "hidden": width.hidden_size, "layers": width.num_layers,
                "heads": width.num_heads, "ffn": width.intermediate_size, "optimizer_steps": steps,
                "warmup_steps_untimed": warmup, "entities_per_batch": batch_size, "views": views,
                "max_len": max_len, "min_len": min_len, "lr": lr, "threads": threads,
                "entity_type": "customer", "task": str(lcfg["task"])}
    out: dict[str, Any] = {"settings": settings, "models": {}}

    # Examples, raw fields and the shards each framework reads.
    task = TaskSpec.from_config(TASK_CONF / f"{lcfg['task']}.yaml")
    events, _ = load_events(schema)
    examples = fraud_examples(events, schema, task, dict(lcfg["examples"]), seed)
    keys = example_keys(examples)
    out["examples"] = {s: {"n": t.num_rows, "positive": int(pc.sum(t.column("label")).as_py())}
                       for s, t in examples.items()}
    raw = raw_field_features(events, schema, task.velocity)
    raw_values = raw.values[keys.column("row").to_numpy()]
    del events
    train_seq = prepared.root / "sequences" / "pretrain"
    encoded = pa.concat_tables([pq.read_table(f) for f in
                                sorted((prepared.root / "encoded" / "pretrain" / "customer").glob("part-*.parquet"))])
    # ptls trains only on entities with at least min_len events; ours draws from the same set.
    encoded = encoded.filter(pc.greater_equal(encoded.column("length"), min_len))
    store = SequenceStore(prepared.root / "sequences" / "all", tokenizer, encode_period(tokenizer, prepared.root, "all"))
    head, n_boot = lcfg.get("head"), int(lcfg["n_bootstrap"])

    def downstream(name: str, vectors: np.ndarray, has_history: np.ndarray) -> dict[str, Any]:
        features = np.hstack([vectors, has_history[:, None].astype(np.float32)])
        return score_features(name, features, keys, raw_values, raw.names, raw.categorical, task, head, n_boot)

    # Theirs first (its environment may need creating), then ours, back to back.
    theirs = [str(e) for e in lcfg["theirs"]]
    try:
        python = ensure_lifestream_env(bool(lcfg["create_env"]), float(lcfg["create_env_timeout_s"]),
                                       work_dir / "setup_env.log")
        out["lifestream_env"] = {"status": "ok", "python": str(python)}
    except Exception as err:  # the section still reports ours
        out["lifestream_env"] = {"status": "skipped", **error_entry(err)}
        theirs = []
    if theirs:
        from benchmarks.lifestream.harness import run_lifestream_benchmark

        chosen = pc.unique(keys.column("customer_id"))
        until = int(pc.max(pc.cast(examples["test"].column("event_time"), pa.int64())).as_py()) + 1
        pit_from = pc.min(keys.column("event_time")).as_py().isoformat()
        embed_dir = customer_shard(prepared.root / "sequences" / "all", "customer", chosen, until,
                                   work_dir / "embed_sequences")
        for encoder in theirs:
            name = f"ptls-{encoder}"
            try:
                started = load()
                res = run_lifestream_benchmark(
                    train_seq, width.hidden_size, steps, work_dir / "ptls", encoders=[encoder], schema=schema,
                    embed_seq_dir=embed_dir, batch_size=batch_size, max_len=max_len, warmup=warmup,
                    threads=threads, timeout=float(lcfg["timeout_s"]), split_count=views, min_len=min_len, lr=lr,
                    layers=width.num_layers, heads=width.num_heads, ffn=width.intermediate_size,
                    rnn_layers=int(lcfg["gru_layers"]), pit_from=pit_from, pit_where="event_type=charge,decline",
                    seed=seed)[encoder]
                vectors, has_history = their_embeddings(res["pit_embeddings"], keys)
                out["models"][name] = {
                    "framework": f"pytorch-lifestream {res.get('ptls_version', '')}".strip(), "encoder": encoder,
                    "params": res["params"], "events_per_s": round(res["events_per_s"], 1),
                    "events_per_cpu_s": round(res["events_per_cpu_s"], 1), "train_wall_s": round(res["fit_s"], 1),
                    "final_loss": res.get("final_loss"), "embed_wall_s": round(res["embed_wall_s"], 1),
                    "pit_rows": res.get("pit_rows"), "load_avg": [started, load()],
                    "downstream": downstream(name, vectors, has_history)}
            except Exception as err:
                out["models"][name] = {"framework": "pytorch-lifestream", "encoder": encoder, **error_entry(err)}

    peak = matmul_peak_flops()
    for spec in lcfg["ours"]:
        name, encoder = str(spec["name"]), str(spec["encoder"])
        try:
            started = load()
            t0 = time.perf_counter()
            result, model = bench_training(
                encoded, field_specs, entity_types, preset, encoder, batch_size=batch_size, max_len=max_len,
                steps=steps - warmup, warmup=warmup, peak_flops=peak, objectives={"contrastive": 1.0}, seed=seed,
                views=views, min_len=min_len, lr=lr, model_overrides=dict(spec.get("overrides") or {}),
                return_model=True)
            train_wall = time.perf_counter() - t0
            vectors, has_history, embed_s = our_embeddings(model.foundation, field_specs, store, keys)
            out["models"][name] = {
                "framework": "ours", "encoder": encoder, "params": result["params"],
                "events_per_s": result["events_per_s"], "events_per_cpu_s": result["events_per_cpu_s"],
                "train_wall_s": round(train_wall, 1), "final_loss": result["final_loss"],
                "mfu": result["mfu"], "data_share": result["data_share"], "embed_wall_s": round(embed_s, 1),
                "overrides": dict(spec.get("overrides") or {}), "load_avg": [started, load()],
                "downstream": downstream(name, vectors, has_history)}
        except Exception as err:
            out["models"][name] = {"framework": "ours", "encoder": encoder, **error_entry(err)}

    try:
        out["reference"] = {"name": "raw fields only", "downstream": score_features(
            "none", np.zeros((keys.num_rows, 0), np.float32), keys, raw_values, raw.names, raw.categorical, task,
            head, n_boot)}
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

