"""The benchmark suite (scripts/benchmark.py, foundation/benchmark): results.json / results.md layout, errors
recorded instead of numbers, merging of partial runs, and a tiny end-to-end run of sections 1-2 through the
real Hydra entry point. Nothing here needs the pytorch-lifestream environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from foundation.benchmark.comparison import run_order, throughput_ratios
from foundation.benchmark.examples import truncate_sequences
from foundation.benchmark.report import render_markdown
from foundation.benchmark.suite import SECTIONS, has_error, run_suite

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TINY_WORLD = ["experiment=smoke", "synthetic.n_events=3000", "synthetic.n_customers=40",
              "synthetic.n_merchants=60", "synthetic.n_issuers=3", "synthetic.block_customers=64"]


def compose_benchmark(tmp_path: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("benchmark", overrides=[f"paths.root_dir={tmp_path}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "hydra")  # ${hydra:...} only resolves inside the app
    return cfg


def test_config_lists_every_section(tmp_path):
    cfg = compose_benchmark(tmp_path, [])
    assert list(cfg.sections) == list(SECTIONS)
    assert cfg.data.n_events == 10_000_000
    assert str(tmp_path) in cfg.out_dir


def test_unknown_section_is_a_clear_error(tmp_path):
    cfg = compose_benchmark(tmp_path, ["sections=[data,gpu]"])
    with pytest.raises(ValueError, match=r"unknown \['gpu'\]; valid: \['data', 'training'"):
        run_suite(cfg)


def test_failed_section_is_recorded_and_other_sections_are_kept(tmp_path, capsys):
    out = tmp_path / "benchmarks"
    out.mkdir()
    earlier = {"sections": {"training": {"status": "ok", "date": "2026-01-01T00:00:00+00:00", "wall_s": 12.0,
                                         "load_avg_start": [0.5, 0.5, 0.5], "load_avg_end": [0.6, 0.5, 0.5],
                                         "results": {"settings": {"batch_size": 4}, "runs": [
                                             {"preset": "tiny", "encoder": "gru", "params": 10, "events_per_s": 5.0,
                                              "events_per_cpu_s": 6.0, "mfu": 0.01, "data_share": 0.1,
                                              "step_ms": 3.0}]}}}}
    (out / "results.json").write_text(json.dumps(earlier))
    # n_events below n_customers: the synthetic generator refuses it, a real failure of the data section.
    cfg = compose_benchmark(tmp_path, ["sections=[data]", "data.n_events=10", "data.n_customers=40"])
    md_path = run_suite(cfg)
    results = json.loads((out / "results.json").read_text())
    data = results["sections"]["data"]
    assert data["status"] == "error"
    assert "n_events" in data["error"] and "Traceback" not in data["error"]
    assert data["wall_s"] >= 0 and len(data["load_avg_start"]) == 3
    assert len(data["cpu_probe_ms"]) == 2 and all(ms > 0 for ms in data["cpu_probe_ms"])  # start and end
    assert results["sections"]["training"] == earlier["sections"]["training"]  # merged, not overwritten
    assert results["machine"]["cores"] >= 1 and results["machine"]["torch"]
    text = md_path.read_text()
    assert "**Section failed**: error: ValueError" in text
    assert "CPU probe ms (start / end)" in text and f"{data['cpu_probe_ms'][0]:,.0f} / " in text
    assert "| tiny | gru | 10 | 5 |" in text
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("results: ")


def test_markdown_shows_errors_where_numbers_would_be():
    results = {"date": "d", "machine": {}, "sections": {"lifestream": {"status": "partial", "results": {
        "settings": {"optimizer_steps": 60, "hidden": 128},
        "lifestream_env": {"status": "skipped", "error": "LifestreamUnavailable: setup_env.sh failed"},
        "models": {"ours-gru": {"framework": "ours", "encoder": "gru", "params": 5, "events_per_s": 100.0,
                                "events_per_cpu_s": 60.0,
                                "downstream": {"pr_auc": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6},
                                               "roc_auc": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}}},
                   "ptls-rnn": {"framework": "pytorch-lifestream", "encoder": "rnn",
                                "error": "RuntimeError: pytorch-lifestream run failed (exit 1)"}}}}}}
    text = render_markdown(results)
    assert "**60 optimizer steps**" in text
    assert "pytorch-lifestream not run: error: LifestreamUnavailable" in text
    assert "| ptls-rnn | pytorch-lifestream | rnn | - | - |" in text and "error: RuntimeError" in text
    assert "0.5000 [0.4000, 0.6000]" in text
    assert has_error(results["sections"]["lifestream"]["results"])


def test_throughput_ratios_pair_successful_runs_only():
    models = {"ours-gru": {"events_per_s": 300.0, "events_per_cpu_s": 200.0},
              "ptls-rnn": {"events_per_s": 100.0, "events_per_cpu_s": 80.0},
              "ours-transformer": {"events_per_s": 50.0}, "ptls-transformer": {"error": "x"}}
    ratios = throughput_ratios(models, [["ours-gru", "ptls-rnn"], ["ours-transformer", "ptls-transformer"]])
    assert ratios == [{"ours": "ours-gru", "theirs": "ptls-rnn", "events_per_s_ratio": 3.0,
                       "events_per_cpu_s_ratio": 2.5}]


def test_paired_models_train_back_to_back():
    order = run_order(["ours-transformer", "ours-gru", "ours-extra"], ["ptls-rnn", "ptls-transformer"],
                      [["ours-transformer", "ptls-transformer"], ["ours-gru", "ptls-rnn"]])
    assert order == ["ours-transformer", "ptls-transformer", "ours-gru", "ptls-rnn", "ours-extra"]
    # Without ptls (its environment could not be made) the pairs shrink to ours.
    assert run_order(["ours-gru"], [], [["ours-gru", "ptls-rnn"]]) == ["ours-gru"]


def test_truncate_sequences_cuts_every_list_column():
    times = pa.array([[1, 5, 9], [2], [7, 8]], pa.list_(pa.int64())).cast(pa.list_(pa.timestamp("ms")))
    table = pa.table({"entity_id": ["a", "b", "c"], "length": pa.array([3, 1, 2], pa.int32()), "event_time": times,
                      "event_id": [["a1", "a2", "a3"], ["b1"], ["c1", "c2"]],
                      "amount": [[1.0, 2.0, 3.0], [4.0], [5.0, 6.0]]})
    cut = truncate_sequences(table.slice(0, 3), until_ms=8)
    assert cut.column("length").to_pylist() == [2, 1, 1]
    assert cut.column("event_id").to_pylist() == [["a1", "a2"], ["b1"], ["c1"]]
    assert cut.column("amount").to_pylist() == [[1.0, 2.0], [4.0], [5.0]]
    assert cut.column("event_time").type == times.type
    # A slice keeps its own rows (offsets not starting at zero).
    tail = truncate_sequences(table.slice(1, 2), until_ms=8)
    assert tail.column("event_id").to_pylist() == [["b1"], ["c1"]]


@pytest.mark.slow
def test_tiny_run_of_data_and_training_sections(tmp_path):
    """Sections 1-2 end to end through scripts/benchmark.py: the last line printed is results.md."""
    world = ",".join(f"'{o}'" for o in TINY_WORLD)  # Hydra: quote list items holding '='
    overrides = [f"paths.root_dir={tmp_path}", "sections=[data,training]", "data.n_events=3000",
                 "data.n_customers=40", f"prepared.overrides=[{world}]", "training.presets=[tiny,huge]",
                 "training.encoders=[transformer,gru]", "training.batch_size=4", "training.max_len=16",
                 "training.steps=2", "training.warmup=1"]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), *overrides], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    md_path = Path(done.stdout.rstrip().splitlines()[-1])
    assert md_path == tmp_path / "benchmarks" / "results.md"
    results = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    assert {"cores", "torch", "torch_threads", "load_avg"} <= set(results["machine"]) and results["date"]

    data = results["sections"]["data"]
    assert data["status"] == "ok", data.get("error")
    generated = data["results"]["generation"]["events"]
    assert generated > 1000
    for stage in ("read", "validation", "sequences"):
        assert data["results"][stage]["events"] == generated  # a clean world: nothing quarantined
        assert data["results"][stage]["events_per_s"] > 0
    assert not (tmp_path / "outputs" / "benchmark" / "data-3000").exists()  # data.keep=false

    training = results["sections"]["training"]
    assert training["status"] == "partial"  # the unknown preset is an error entry, the others ran
    runs = {(r["preset"], r["encoder"]): r for r in training["results"]["runs"]}
    assert "unknown model preset 'huge'" in runs[("huge", "gru")]["error"]
    for encoder in ("transformer", "gru"):
        run = runs[("tiny", encoder)]
        assert run["events_per_s"] > 0 and run["events_per_cpu_s"] > 0
        assert 0 < run["mfu"] < 1 and 0 <= run["data_share"] < 1
        assert np.isfinite(run["final_loss"])
    text = md_path.read_text()
    assert "## 1. Data stages" in text and "## 2. Pretraining throughput" in text
    assert "| tiny | transformer |" in text and "error: ValueError: unknown model preset 'huge'" in text
