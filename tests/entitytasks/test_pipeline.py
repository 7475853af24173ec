"""The entity task run end to end on the tiny test world (untrained tiny checkpoint), and the as-of rule of the
entity embeddings."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from omegaconf import open_dict

from foundation.entitytasks.embedding import DAY_MS, entity_embeddings
from foundation.entitytasks.pipeline import BASELINE
from foundation.finetuning import finetune, finetune_config
from foundation.heads import load_head
from foundation.pointintime import PointInTimeEncoder, PointInTimeStates

DECLINE_SOON = {  # a binary customer task the tiny world has both classes of
    "name": "decline_soon", "kind": "entity", "entity": "customer", "schedule": {"every": "7d"}, "horizon": "30d",
    "population": {"active_within": "30d"},
    "target": {"measure": "count", "events": {"field": "event_type", "values": ["decline"]}, "problem": "binary",
               "positive": {"op": ">", "value": 0}},
    "aggregates": {"windows": ["7d", "30d"], "rates": {"decline": {"field": "event_type", "values": ["decline"]}}},
    "label_fractions": [0.5, 1.0],
    "heads": {"probe": {"max_epochs": 3}, "mlp": {"max_epochs": 3, "hidden_sizes": [16]},
              "gbdt": {"num_boost_round": 20, "params": {"min_data_in_leaf": 5}},
              "full": {"steps": 4, "eval_every": 2, "batch_size": 8, "hidden_sizes": [16]}},
}


def test_entity_task_run_end_to_end(world, tmp_path, capsys):
    cfg = finetune_config([f"checkpoint={world.run_dir}", f"paths.root_dir={tmp_path}", "run_name=entity",
                           "head=[probe,mlp,gbdt,full]", "report.n_bootstrap=30"])
    with open_dict(cfg):
        cfg.task = DECLINE_SOON
    folder = finetune(cfg)
    summary = json.loads((folder / "entity_metrics.json").read_text())
    task = summary["tasks"]["decline_soon"]
    assert {"load", "decline_soon/features", "decline_soon/models", "report"} <= set(summary["timings_s"])
    assert task["problem"] == "binary" and task["entity"] == "customer"
    models = task["models"]
    # full: the encoder fine-tuned on the windows; baselines.scratch: the MLP on a random encoder's embeddings
    assert set(models) == {"probe", "mlp", "gbdt", "full", BASELINE, "embeddings_aggregates_lgbm",
                           "random_encoder_mlp"}
    for name, entry in models.items():
        assert set(entry["by_fraction"]) == {"0.5", "1.0"}
        assert entry["by_fraction"]["0.5"]["n_train"] < entry["by_fraction"]["1.0"]["n_train"]
        assert ("vs_" + BASELINE in entry) == (name != BASELINE)
    for name in ("probe", "mlp", "gbdt"):  # embedding heads are saved, servable by the entity route
        head = load_head(folder / "heads" / "decline_soon" / name)
        assert head.metadata["kind"] == "entity" and head.metadata["entity_type"] == "customer"
        assert head.n_features == world.run.model.config.hidden_size + 2
    full = load_head(folder / "heads" / "decline_soon" / "full")  # with its own fine-tuned encoder
    assert full.head_type == "entity_full" and full.steps == 4 and full.info["steps_run"] == 4
    assert (folder / "heads" / "decline_soon" / "full" / "encoder" / "config.json").exists()
    assert not (folder / "heads" / "decline_soon" / "random_encoder_mlp").exists()  # not a servable head
    assert (folder / "entity_report.md").read_text().count("| decline_soon (customer, binary) |") == 7
    assert (folder / "plots" / "entity_decline_soon_label_efficiency.png").exists()
    assert "| decline_soon (customer, binary) | mlp |" in capsys.readouterr().out


def test_entity_embeddings_read_the_events_at_or_before_as_of(world):
    encoder = PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), 4096, "cpu")
    keys = world.store.keys(world.store.shards("customer")[0])
    entity = keys["entity_id"][0].as_py()
    times = pc.cast(keys["event_time"][0].values, pa.int64()).to_numpy()
    k = next(i for i in range(len(times) // 2, len(times) - 1) if times[i - 1] < times[i] < times[i + 1])
    as_of = np.array([times[k], times[k] - 1, times[k] + 1, times[k] + 3 * DAY_MS], np.int64)
    got = entity_embeddings(world.store, encoder, "customer", pa.array([entity] * 4), as_of)
    states = PointInTimeStates(world.store, encoder).as_of("customer", pa.array([entity] * 2),
                                                          np.array([times[k] + 1, times[k]]))
    # at as_of = t_k the state includes event k; one ms earlier it does not; one ms later it is the same
    assert states.index.tolist() == [k, k - 1]
    hidden = world.run.model.config.hidden_size
    np.testing.assert_allclose(got[0, :hidden], states.hidden[0], rtol=1e-6)
    np.testing.assert_allclose(got[2], got[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(got[1, :hidden], got[0, :hidden]) and got[0, hidden] == 1.0
    # the last column counts the days since the last event at or before as_of
    assert got[0, -1] == 0.0 and got[1, -1] == pytest.approx(np.log1p((times[k] - 1 - times[k - 1]) / DAY_MS), abs=1e-6)
    if times[k + 1] > times[k] + 3 * DAY_MS:
        assert got[3, -1] == pytest.approx(np.log1p(3.0))


def test_the_quickstart_block_runs_the_named_tasks_within_its_bounds(world, tmp_path, monkeypatch):
    import yaml

    from foundation.entitytasks import pipeline

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "decline_soon.yaml").write_text(yaml.safe_dump(DECLINE_SOON))
    monkeypatch.setattr(pipeline, "TASK_DIR", tmp_path / "tasks")
    cfg = finetune_config([f"checkpoint={world.run_dir}", f"paths.root_dir={tmp_path}", "head=all",
                           "label_fractions=[0.5,1.0]"])
    table = pipeline.quickstart_entity_tasks(cfg, tmp_path / "out", ["decline_soon"])
    summary = json.loads((tmp_path / "out" / "entity_metrics.json").read_text())
    models = summary["tasks"]["decline_soon"]["models"]
    assert summary["n_bootstrap"] == pipeline.QUICKSTART_BOOTSTRAP and "random_encoder_mlp" not in models
    assert "full" not in models  # the quickstart's time budget
    assert all(set(entry["by_fraction"]) == {"1.0"} for entry in models.values())  # the task's [1.0], not the run's
    assert "| decline_soon (customer, binary) | mlp |" in table


@pytest.mark.parametrize("with_time_head", [True, False])
def test_hazard_columns_reach_the_saved_heads_or_are_dropped_with_a_warning(world, tmp_path, caplog, with_time_head):
    import shutil

    run_dir = world.run_dir
    if not with_time_head:  # a checkpoint pretrained without the next_event objective has no time head
        run_dir = tmp_path / "run"
        shutil.copytree(world.run_dir, run_dir)
        (run_dir / "hf" / "next_event_heads.safetensors").unlink()
    cfg = finetune_config([f"checkpoint={run_dir}", f"paths.root_dir={tmp_path}", "run_name=hazard", "head=[probe]",
                           "label_fractions=[1.0]", "baselines.scratch=false", "report.n_bootstrap=20"])
    with open_dict(cfg):
        cfg.task = {**DECLINE_SOON, "embedding": {"hazard": ["1d", "30d"]}}
    with caplog.at_level("WARNING"):
        folder = finetune(cfg)
    head = load_head(folder / "heads" / "decline_soon" / "probe")
    hidden = world.run.model.config.hidden_size
    if with_time_head:
        assert head.n_features == hidden + 2 + 3 and head.metadata["hazard_ms"] == [DAY_MS, 30 * DAY_MS]
    else:
        assert head.n_features == hidden + 2 and head.metadata["hazard_ms"] == []
        assert "goes without the embedding.hazard columns" in caplog.text
