"""The report: metrics.json, report.md, plots, and logging them to an offline wandb run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from foundation.evaluation.metrics import roc_auc
from foundation.evaluation.report import ModelResult, TraitEmbeddings, log_report_to_wandb, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _results() -> list[ModelResult]:
    rng = np.random.default_rng(0)
    out = []
    for task, n, rate in (("fraud", 600, 0.05), ("authorization", 400, 0.85)):
        y = (rng.random(n) < rate).astype(int)
        ids = np.array([f"{task}{i}" for i in range(n)])
        for model, signal in (("velocity_lgbm_baseline", 1.0), ("probe", 2.0)):
            for fraction in (0.1, 1.0):
                scores = rng.random(n) + signal * fraction * y
                out.append(ModelResult(task, model, y, scores, fraction, n_train=int(2000 * fraction),
                                       event_ids=ids, extra={"threshold": 0.5}))
    return out


def _loss_csv(path: Path) -> Path:
    lines = ["epoch,step,train/loss,val/loss"]
    lines += [f"0,{s},{2.0 / (1 + s / 10):.4f}," for s in range(0, 50, 5)]
    lines += ["0,49,,1.1", "1,99,,0.9"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(1)
    traits = np.repeat(["tight", "loose"], 50)
    embeddings = rng.normal(size=(100, 8)) + 3.0 * (traits == "tight")[:, None]
    results = _results()
    paths = write_report(run_dir, results, loss_log=_loss_csv(run_dir / "metrics.csv"),
                         embeddings=TraitEmbeddings(embeddings, traits, "funds"), n_bootstrap=200)
    return run_dir, results, paths


def test_metrics_json_has_every_model_with_intervals(report):
    run_dir, results, paths = report
    document = json.loads(paths["metrics_json"].read_text())
    rows = document["results"]
    assert len(rows) == len(results) == 8
    assert document["protocol"]["bootstrap"]["n_resamples"] == 200
    for row, result in zip(rows, results):
        assert (row["task"], row["model"], row["label_fraction"]) == (result.task, result.model,
                                                                     result.label_fraction)
        assert row["n_test"] == len(result.labels) and row["n_train"] == result.n_train
        assert row["threshold"] == 0.5
        for key in ("roc_auc", "pr_auc", "recall_at_1pct_fpr"):
            assert row[key]["ci_low"] <= row[key]["value"] <= row[key]["ci_high"]
        assert row["roc_auc"]["value"] == roc_auc(result.labels, result.scores)


def test_markdown_and_plots_are_written(report):
    run_dir, _, paths = report
    text = paths["report_md"].read_text()
    assert "## fraud" in text and "## authorization" in text
    assert "| probe | 10% | 200 |" in text and "| velocity_lgbm_baseline | 100% | 2000 |" in text
    expected = {"curves_fraud", "scores_fraud", "label_efficiency_fraud", "curves_authorization",
                "scores_authorization", "label_efficiency_authorization", "pretraining_loss",
                "embedding_projection"}
    assert expected <= set(paths)
    for name in expected:
        assert paths[name].read_bytes()[:8] == PNG
        assert f"]({paths[name].relative_to(run_dir).as_posix()})" in text


def test_models_scored_on_different_examples_are_refused(tmp_path):
    results = _results()[:2]
    other = results[1]
    results[1] = ModelResult(other.task, other.model, other.labels[::-1].copy(), other.scores)
    with pytest.raises(ValueError, match="not scored on the same test examples as velocity_lgbm_baseline@10%"):
        write_report(tmp_path, results, n_bootstrap=10)
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, [])


@pytest.mark.slow  # starting a wandb service takes several seconds
def test_log_report_to_an_offline_wandb_logger(report, tmp_path):
    from pytorch_lightning.loggers import WandbLogger

    _, _, paths = report
    assert log_report_to_wandb(None, paths) == {}
    logger = WandbLogger(project="report-test", save_dir=str(tmp_path), offline=True)
    try:
        payload = log_report_to_wandb(logger, paths)
        media = Path(logger.experiment.dir) / "media"
    finally:
        logger.experiment.finish()
    images = [k for k in payload if k != "report/metrics"]
    assert len(images) == 8
    assert len(list((media / "images").rglob("*.png"))) == 8
    table = json.loads(next((media / "table").rglob("*.json")).read_text())
    assert len(table["data"]) == 8 and "pr_auc_ci_low" in table["columns"]
