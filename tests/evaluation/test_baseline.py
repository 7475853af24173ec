"""Baseline (a) end to end on a tiny table: examples -> velocity features -> LightGBM -> report."""

from __future__ import annotations

import numpy as np

from foundation.evaluation.baseline import MODEL_NAME, velocity_baseline
from foundation.evaluation.report import write_report
from foundation.evaluation.splits import TaskSpec
from foundation.heads.gbdt import GBDTHead

from .conftest import make_events, make_schema


def test_velocity_baseline_scores_the_test_examples(tmp_path):
    events = make_events(1500, seed=11)
    task = TaskSpec.from_config({
        "name": "fraud", "label": "is_fraud", "entities": ["customer", "merchant"],
        "examples": {"field": "event_type", "values": ["charge", "decline"]},
        "gbdt": {"params": {"min_data_in_leaf": 5, "num_leaves": 4}, "num_boost_round": 30,
                 "early_stopping_rounds": 5},
    })
    results = velocity_baseline(events, make_schema(), task, label_fractions=[0.5, 1.0], save_dir=tmp_path)
    assert [r.label_fraction for r in results] == [0.5, 1.0]
    assert results[0].n_train < results[1].n_train
    np.testing.assert_array_equal(results[0].labels, results[1].labels)
    test_ids = results[1].event_ids
    assert len(test_ids) > 0 and all(i.startswith("e") for i in test_ids)  # attempts, not disputes
    head = GBDTHead.load(tmp_path / "heads" / "fraud" / MODEL_NAME)
    assert head.metadata["task"] == "fraud" and "merchant_dispute_rate" in head.feature_names
    paths = write_report(tmp_path, results, n_bootstrap=50)
    assert "velocity_gbdt" in paths["report_md"].read_text()
