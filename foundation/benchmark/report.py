"""The results format: errors recorded in benchmarks/results.json instead of numbers, and results.md, one
markdown table per section with each error shown where its numbers would be (never a made-up figure)."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any


def error_entry(err: BaseException) -> dict[str, str]:
    """An error as results.json records it: type, message and the end of the traceback."""
    tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
    return {"error": f"{type(err).__name__}: {err}", "traceback": tail[-2000:]}


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _error(entry: Mapping[str, Any]) -> str:
    return "error: " + str(entry.get("error", "")).splitlines()[0][:200] if entry.get("error") else ""


def _ci(metric: Mapping[str, Any] | None) -> str:
    if not metric:
        return "-"
    return f"{metric['value']:.4f} [{metric['ci_low']:.4f}, {metric['ci_high']:.4f}]"


def data_section(res: Mapping[str, Any]) -> list[str]:
    stages = ["generation", "read", "validation", "sequences", "tokenizer_fit", "tokenizer_encode"]
    notes = {"sequences": "customer + merchant + issuer shards", "tokenizer_fit": "customer sequences",
             "tokenizer_encode": "customer sequences"}
    rows = [[s, _num(res[s]["events"]), _num(res[s]["seconds"], 1), _num(res[s]["events_per_s"]), notes.get(s, "")]
            for s in stages if s in res]
    return _table(["stage", "events", "seconds", "events/s", "note"], rows)


def training_section(res: Mapping[str, Any]) -> list[str]:
    rows = []
    for run in res.get("runs", []):
        if run.get("error"):
            rows.append([run.get("preset"), run.get("encoder"), "-", "-", "-", "-", "-", "-", _error(run)])
            continue
        rows.append([run["preset"], run["encoder"], _num(run["params"]), _num(run["events_per_s"]),
                     _num(run.get("events_per_cpu_s")), f"{100 * run['mfu']:.1f}%",
                     f"{100 * run['data_share']:.1f}%", _num(run["step_ms"]), ""])
    settings = res.get("settings", {})
    head = (f"Objective next_event, AdamW; {settings.get('entity_type')} sequences, batch {settings.get('batch_size')}, "
            f"windows of {settings.get('max_len')} events, {settings.get('steps')} timed steps after "
            f"{settings.get('warmup')} untimed. MFU against the measured fp32 matmul peak "
            f"({_num(settings.get('peak_gflops'), 1)} GFLOP/s); data share = time outside the model (batch "
            "selection + collation).")
    return [head, ""] + _table(["preset", "encoder", "params", "events/s", "events/CPU-s", "MFU", "data share",
                                "step ms", "note"], rows)


def lifestream_section(res: Mapping[str, Any]) -> list[str]:
    s = res.get("settings", {})
    env = res.get("lifestream_env", {})
    lines = [f"CoLES-style contrastive pretraining on the same customer shards (pretraining period), hidden "
             f"{s.get('hidden')}, {s.get('layers')} transformer layers x {s.get('heads')} heads, feed-forward "
             f"{s.get('ffn')}; budget: **{s.get('optimizer_steps')} optimizer steps** per model "
             f"(first {s.get('warmup_steps_untimed')} untimed), {s.get('entities_per_batch')} entities x "
             f"{s.get('views')} views per batch, views of {s.get('min_len')}-{s.get('max_len')} events, lr "
             f"{s.get('lr')}, {s.get('threads')} threads. Events/s count the real events of all views, data "
             "loading included.", ""]
    if env.get("status") != "ok":
        lines += [f"pytorch-lifestream not run: {_error(env) or env.get('status')}", ""]
    ratios = {r["ours"]: r for r in res.get("ratios", [])}
    rows = []
    for name, m in res.get("models", {}).items():
        if m.get("error"):
            rows.append([name, m.get("framework", ""), m.get("encoder", ""), "-", "-", "-", "-", "-", "-",
                         _error(m)])
            continue
        d = m.get("downstream", {})
        ratio = ratios.get(name)
        rows.append([name, m["framework"], m["encoder"], _num(m["params"]), _num(m["events_per_s"]),
                     _num(m.get("events_per_cpu_s")),
                     f"{ratio['events_per_s_ratio']:.2f} ({ratio['events_per_cpu_s_ratio']:.2f} CPU)"
                     if ratio and ratio.get("events_per_cpu_s_ratio") else "",
                     _ci(d.get("pr_auc")), _ci(d.get("roc_auc")), _error(d)])
    ref = res.get("reference", {})
    if ref:
        d = ref.get("downstream", {})
        rows.append(["raw fields only", "-", "-", "-", "-", "-", "", _ci(d.get("pr_auc")), _ci(d.get("roc_auc")),
                     _error(ref)])
    lines += _table(["model", "framework", "encoder", "params", "events/s", "events/CPU-s", "ours/theirs",
                     "fraud PR-AUC [95% CI]", "ROC-AUC [95% CI]", "note"], rows)
    if res.get("order"):
        lines += ["", f"Trained in this order, each pair back to back: {', '.join(res['order'])}. params: the "
                      "sequence encoder with its event embedding (ours also embeds the text descriptor, which ptls "
                      "does not read); ptls' GRU and ours-gru have one layer, as in ptls' CoLES."]
    ex = res.get("examples", {})
    if ex:
        test = ex.get("test", {})
        lines += ["", f"Downstream: the same LightGBM head on [customer embedding strictly before the attempt, "
                      f"has_history, the attempt's raw fields], trained on {ex.get('train', {}).get('n')} train "
                      f"examples (early stopping on {ex.get('validation', {}).get('n')} validation), scored on "
                      f"{test.get('n')} test examples ({test.get('positive')} fraud; base rate "
                      f"{test.get('positive', 0) / max(test.get('n', 1), 1):.4f}), out-of-time split; 95% "
                      "bootstrap intervals."]
    return lines


def embeddings_section(res: Mapping[str, Any]) -> list[str]:
    rows = []
    for mode, per_type in res.get("modes", {}).items():
        for etype, r in per_type.items():
            if r.get("error"):
                rows.append([mode, etype, "-", "-", "-", "-", _error(r)])
                continue
            rows.append([mode, etype, _num(r["entities"]), _num(r["seconds"], 1), _num(r["entities_per_s"]),
                         _num(r["events_per_s"]), ""])
    subset = f"first {res['max_shards']} shard(s) per entity type" if res.get("max_shards") else "every entity"
    head = (f"`{res.get('preset')}` model, windows of {res.get('max_len')} events, {res.get('threads')} threads, "
            f"{subset} of the default world's full history; events/s = events passed through the encoder "
            "(the block windows of foundation.pointintime); parquet writing included.")
    return [head, ""] + _table(["mode", "entity type", "entities", "seconds", "entities/s", "events/s", "note"], rows)


def serving_section(res: Mapping[str, Any]) -> list[str]:
    rows = []
    for r in res.get("score", []):
        rows.append(["/v1/score", f"{r['clients']} client(s)", _num(r["requests"]), _num(r["errors"]),
                     _num(r["p50_ms"], 2), _num(r["p99_ms"], 2), _num(r.get("p999_ms"), 2),
                     f"{_num(r['requests_per_second'])} req/s"])
    for r in res.get("ingest", []):
        rows.append(["/v1/events", f"batches of {r['batch_size']}", _num(r["events"]), "0", "", "", "",
                     f"{_num(r['events_per_second'])} events/s"])
    h = res.get("history_ingest")
    if h:
        rows.append(["/v1/events (history load)", f"batches of {h['batch_size']}", _num(h["events"]), "0", "", "", "",
                     f"{_num(h['events_per_second'])} events/s"])
    hist = res.get("history", {})
    head = (f"scripts/serve.py in a subprocess (SQLite state, synchronous=FULL, model windows of "
            f"{res.get('model_max_position')} events, GBDT heads for fraud and authorization); histories of the "
            f"{hist.get('customers')} busiest customers ({hist.get('min_events')}-{hist.get('max_events')} events "
            f"each, {_num(hist.get('events'))} events) loaded first; scores are live charge attempts of those "
            "customers; ingestion on new entities.")
    lines = [head, ""] + _table(["endpoint", "load", "n", "errors", "p50 ms", "p99 ms", "p99.9 ms", "throughput"], rows)
    if res.get("score_table"):  # where a score request's time goes (HTTP, features, model, head)
        lines += ["", "Share of a `/v1/score` request per stage (from the service's own /metrics timers):", "",
                  str(res["score_table"])]
    return lines


RENDERERS = {"data": ("1. Data stages", data_section), "training": ("2. Pretraining throughput", training_section),
             "lifestream": ("3. Against pytorch-lifestream", lifestream_section),
             "embeddings": ("4. Embedding export", embeddings_section), "serving": ("5. Serving", serving_section)}


def render_markdown(results: Mapping[str, Any]) -> str:
    """results.json -> markdown: machine facts, one table per section, then every section's status and time."""
    m = results.get("machine", {})
    lines = ["# Benchmark results", "",
             f"{results.get('date')} on {m.get('cpu_model')} ({m.get('cores')} cores, {m.get('memory_gb')} GB), "
             f"torch {m.get('torch')} ({m.get('torch_threads')} threads), Python {m.get('python')}, commit "
             f"{m.get('git_commit')}. Regenerate with `make bench` (`python scripts/benchmark.py`).", ""]
    if results.get("suite_wall_s") is not None:
        load = m.get("load_avg", [None])[0], (m.get("load_avg_end") or [None])[0]
        lines += [f"Last run: {results['suite_wall_s']:,.0f} s wall for sections {', '.join(results.get('last_run', []))}; "
                  f"load average (1 min) {load[0]} at its start, {load[1]} at its end.", ""]
    sections = results.get("sections", {})
    for name, (title, render) in RENDERERS.items():
        entry = sections.get(name)
        if entry is None:
            continue
        lines += [f"## {title}", ""]
        if entry.get("results"):
            try:
                lines += render(entry["results"])
            except (KeyError, TypeError, ValueError) as err:  # a partial result: show what is there
                lines += [f"(could not render: {type(err).__name__}: {err}; see results.json)"]
        if entry.get("error"):
            lines += ["", f"**Section failed**: {_error(entry)}"]
        lines.append("")
    lines += ["## Sections", ""]
    rows = [[name, e.get("status"), e.get("date", ""), _num(e.get("wall_s"), 1), _num(e.get("cpu_s"), 1),
             " / ".join(f"{v:.1f}" for v in e.get("load_avg_start", [])[:1] + e.get("load_avg_end", [])[:1]),
             " / ".join(f"{v:,.0f}" for v in e.get("cpu_probe_ms", [])) or "-",
             "distorted by other load" if e.get("distorted") else ""] for name, e in sections.items()]
    lines += _table(["section", "status", "date", "wall s", "CPU s (suite process)", "load avg 1 min (start / end)",
                     "CPU probe ms (start / end)", "note"], rows)
    prepared = results.get("prepared")
    if prepared:
        lines += ["", f"Data of sections 2-5: `{prepared.get('root')}`, prepared or loaded in "
                      f"{_num(prepared.get('seconds'), 1)} s before them. {_error(prepared)}".rstrip()]
    lines += ["", "CPU s counts the suite's own process (all its threads), not the pytorch-lifestream or service "
                  "subprocesses. A section is flagged when the 5-minute load average per core exceeded "
                  f"{results.get('config', {}).get('busy_load_per_core', '-')} at its start or end: other jobs "
                  "shared the cores and its figures are lower than this machine gives. CPU probe: milliseconds of "
                  "a fixed pure-Python loop at the section's start and end; on a VM whose CPU speed drifts, sections "
                  "(or runs) with different probes ran on CPUs of different speed."]
    return "\n".join(lines) + "\n"
