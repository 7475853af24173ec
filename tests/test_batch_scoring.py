"""Batch scoring (scripts/score.py): a saved head scores a raw event table exactly as its fine-tune run
scored the same test events (scores.parquet), with the label when the table has it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from foundation.evaluation.scores import read_scores, score_column
from foundation.finetuning.batch_scoring import METADATA_KEY, BatchScorer, score_events
from tests.embeddings.world import REPO, raw_events

HEADS = ("probe", "gbdt", "full")


@pytest.fixture(scope="module")
def finetuned(world, tmp_path_factory):
    """A fine-tune run of the probe, gbdt (raw fields) and full heads on the tiny world's pretraining run."""
    from foundation.finetuning import finetune, finetune_config

    root = tmp_path_factory.mktemp("finetune")
    cfg = finetune_config([f"checkpoint={world.run_dir}", f"paths.root_dir={root}", "task=authorization",
                           "head=[probe,gbdt,full]", "run_name=ft", "examples.customers=null", "examples.days=null",
                           "label_fractions=[1.0]", "baselines.scratch=false", "baselines.velocity_lgbm_baseline=false",
                           "heads.probe.head.max_epochs=2", "heads.gbdt.head.num_boost_round=10",
                           "heads.full.head.steps=2", "heads.full.head.eval_every=2", "heads.full.head.train_window=4",
                           "heads.full.max_validation=50", "report.n_bootstrap=10", "report.trait_customers=20",
                           "torch_threads=1"])
    return finetune(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_batch_scores_equal_the_finetune_test_scores(world, finetuned, tmp_path, head):
    events = tmp_path / "events.parquet"
    pq.write_table(raw_events(), events)
    out = score_events({"head_dir": str(finetuned / "heads" / "authorization" / head), "events": str(events),
                        "out": str(tmp_path / "scores.parquet")})
    batch = pq.read_table(out)
    assert batch.column_names == ["event_id", "customer_id", "issuer_id", "event_time", "score", "label"]
    meta = json.loads(batch.schema.metadata[METADATA_KEY])
    assert meta["checkpoint"]["digest"] == world.run.digest() and meta["task"] == "authorization"

    own, _, _ = read_scores(finetuned / "scores.parquet")
    position = pc.index_in(own.column("event_id"), value_set=batch.column("event_id"))
    assert position.null_count == 0, "every test event of the run is scored"
    mine = batch.take(position)
    np.testing.assert_allclose(mine.column("score").to_numpy(), own.column(score_column(head)).to_numpy(),
                               rtol=1e-4, atol=1e-5)
    assert mine.column("label").to_pylist() == own.column("label").to_pylist()
    assert mine.column("event_time").to_pylist() == own.column("event_time").to_pylist()


@pytest.mark.slow
def test_unlabelled_table_scores_every_attempt_without_a_label(finetuned, tmp_path):
    table = raw_events().slice(0, 300).drop_columns(["approved", "is_fraud"])
    scorer = BatchScorer.load(finetuned / "heads" / "authorization" / "probe")
    events = tmp_path / "new.parquet"
    pq.write_table(table, events)
    from foundation.finetuning.batch_scoring import read_raw_events

    raw, labels = read_raw_events(events, scorer.schema)
    assert labels == set()
    scores = scorer.score(raw, has_label=False)
    attempts = pc.sum(pc.is_in(table.column("event_type"), pa.array(["charge", "decline"]))).as_py()
    assert scores.num_rows == attempts and "label" not in scores.column_names
    assert ((scores.column("score").to_numpy() >= 0) & (scores.column("score").to_numpy() <= 1)).all()


@pytest.mark.slow
def test_score_script_prints_the_file_last(finetuned, tmp_path):
    events = tmp_path / "events.parquet"
    pq.write_table(raw_events().slice(0, 200), events)
    out = tmp_path / "s.parquet"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "score.py"),
                           f"head_dir={finetuned / 'heads' / 'authorization' / 'gbdt'}", f"events={events}", f"out={out}",
                           f"paths.root_dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out) and out.exists()
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "score.py"), f"head_dir={tmp_path / 'nope'}",
                              f"events={events}", f"out={out}"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert missing.returncode == 2 and "head.json" in missing.stderr


@pytest.mark.slow
def test_a_head_on_velocity_features_is_refused(finetuned, tmp_path):
    import shutil

    head_dir = tmp_path / "ft" / "heads" / "authorization" / "probe"
    shutil.copytree(finetuned / "heads" / "authorization" / "probe", head_dir)
    meta = json.loads((head_dir / "head.json").read_text())
    meta["feature_layout"] = {**meta["feature_layout"], "kind": "section8+velocity", "velocity_names": ["n_1h"]}
    (head_dir / "head.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="velocity features"):
        BatchScorer.load(head_dir)
