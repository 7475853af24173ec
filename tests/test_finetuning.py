"""finetune / finetune_all: example bounds, and end to end on a tiny real pretraining run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from foundation.evaluation.splits import TaskSpec
from foundation.finetuning import CONF_DIR, bound_examples, chosen_customers, results_table, training_pool
from tests.conftest import make_schema
from tests.embeddings.world import REPO, raw_events, write_events

SCHEMA = make_schema()  # the synthetic periods, label delay 7d


def _examples(days: list[str]) -> pa.Table:
    times = pa.array(np.array(days, dtype="datetime64[ms]"))
    return pa.table({"row": np.arange(len(days)), "event_id": [str(i) for i in range(len(days))],
                     "event_time": times, "customer_id": ["a", "b", "c", "a"][: len(days)],
                     "label": pa.array([0, 1, 0, 1][: len(days)], pa.int8())})


def test_bounds_keep_the_last_train_days_and_the_first_test_days():
    bounds = OmegaConf.create({"days": {"train": 7, "test": 2}})
    train = _examples(["2024-03-01", "2024-04-02", "2024-04-07T23:00", "2024-04-01T00:00"])
    assert bound_examples(train, "train", SCHEMA, bounds, None)["event_id"].to_pylist() == ["1", "2", "3"]
    test = _examples(["2024-05-20", "2024-05-21T23:59", "2024-05-22", "2024-06-30"])
    assert bound_examples(test, "test", SCHEMA, bounds, None)["event_id"].to_pylist() == ["0", "1"]
    customers = pa.array(["a"])
    assert bound_examples(test, "test", SCHEMA, None, customers)["event_id"].to_pylist() == ["0", "3"]
    capped = bound_examples(test, "test", SCHEMA, OmegaConf.create({"max": {"test": 3}}), None)
    assert capped.num_rows == 3


def test_customer_share_is_seeded_and_the_pool_keeps_positives():
    events = pa.table({"customer_id": [str(i) for i in range(100)] + [None]})
    first, again = chosen_customers(events, 0.2, 3), chosen_customers(events, 0.2, 3)
    assert len(first) == 20 and first.equals(again) and not first.equals(chosen_customers(events, 0.2, 4))
    assert chosen_customers(events, None, 0) is None and chosen_customers(events, 1.0, 0) is None
    labels = np.r_[np.ones(10, int), np.zeros(990, int)]
    pool = training_pool(labels, 100, 0.25, 0)
    assert labels[pool].sum() == 10 and len(pool) == 100 and len(np.unique(pool)) == 100


def test_results_table_lists_every_model_with_intervals(tmp_path):
    cell = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    rows = [{"task": "fraud", "model": m, "label_fraction": f, "n_train": 10, "n_test": 100, "n_test_positive": 5,
             "pr_auc": cell, "roc_auc": cell} for m in ("probe", "velocity_lgbm_baseline") for f in (0.1, 1.0)]
    (tmp_path / "metrics.json").write_text(json.dumps({"results": rows}))
    table = results_table(tmp_path / "metrics.json")
    assert "fraud: 100 test examples, 5 positive (base rate 0.0500)" in table
    assert table.count("0.5000 [0.4000, 0.6000]") == 8 and "velocity_lgbm_baseline " in table and " 10% " in table


def test_every_head_and_baseline_is_built_from_its_yaml():
    from foundation.finetuning import finetune_config, instantiate_models
    from foundation.finetuning.blend import Blend
    from foundation.finetuning.blocks import RawFields, VelocityFeatures
    from foundation.finetuning.recipes import FrozenFeatures, FullFinetune
    from foundation.heads import FullHead, FusionHead, GBDTHead, MLPHead, ProbeHead

    models = instantiate_models(finetune_config(["checkpoint=x", "head=all"]))
    assert list(models) == ["probe", "mlp", "gbdt", "fusion", "embeddings_velocity_blend", "full", "scratch",
                            "velocity_lgbm_baseline"]
    task = TaskSpec.from_config(CONF_DIR / "task" / "fraud.yaml")
    heads = {name: m.head(task=task) for name, m in models.items() if isinstance(m, FrozenFeatures)}
    assert type(heads["probe"]) is ProbeHead and type(heads["mlp"]) is MLPHead
    assert heads["mlp"].hidden_sizes == [256, 128] and heads["probe"].max_epochs == 15
    # the gbdt heads are the task's LightGBM block with the head's overrides on top
    assert heads["gbdt"].num_boost_round == 200 and heads["gbdt"].params["feature_fraction"] == 0.5
    assert heads["gbdt"].params["num_leaves"] == task.gbdt["params"]["num_leaves"]
    assert isinstance(heads["velocity_lgbm_baseline"], GBDTHead) and not models["velocity_lgbm_baseline"].embeddings
    assert isinstance(models["gbdt"].extra, RawFields) and isinstance(models["fusion"].extra, RawFields)
    assert type(heads["fusion"]) is FusionHead and heads["fusion"].embedding_dim == 8
    assert isinstance(models["embeddings_velocity_blend"], Blend)
    assert list(models["embeddings_velocity_blend"].members) == ["mlp", "velocity_lgbm_baseline"]
    assert heads["mlp"].members == 3
    one = instantiate_models(finetune_config(["checkpoint=x", "head=embeddings_velocity_lgbm"]))
    assert isinstance(one["embeddings_velocity_lgbm"].extra, VelocityFeatures)
    # the embeddings alone under two head families and their blend (opt-in, not in head=all)
    alone = instantiate_models(finetune_config(["checkpoint=x", "head=[mlp,gbdt_embeddings,embeddings_blend]"]))
    assert alone["gbdt_embeddings"].extra is None and alone["gbdt_embeddings"].embeddings
    assert alone["gbdt_embeddings"].head(task=task).num_boost_round == 3000
    assert list(alone["embeddings_blend"].members) == ["mlp", "gbdt_embeddings"]
    assert isinstance(models["full"], FullFinetune) and models["full"].head.func == FullHead.for_task
    assert models["full"].pretrained and not models["scratch"].pretrained
    none = instantiate_models(finetune_config(["checkpoint=x", "head=probe", "baselines.scratch=false",
                                               "baselines.velocity_lgbm_baseline=false"]))
    assert list(none) == ["probe"]


def test_a_single_class_split_names_the_overrides_of_the_run_experiment():
    from foundation.finetuning.examples import check_classes, widening_hint

    one_class = _examples(["2024-05-20", "2024-05-21"]).filter(pa.array([True, False]))
    smoke = ["examples.customers=null", "examples.days=null", "label_fractions=[1.0]"]
    with pytest.raises(ValueError, match=r"test examples \(1, 0 positive\) hold a single class; the pretraining "
                                         r"run's experiment fine-tunes with `examples.customers=null "
                                         r"examples.days=null label_fractions=\[1.0\]`"):
        check_classes("fraud", "test", one_class, widening_hint(smoke))
    with pytest.raises(ValueError, match="examples.customers=null examples.days=null"):
        check_classes("fraud", "test", one_class, widening_hint([]))
    check_classes("fraud", "test", _examples(["2024-05-20", "2024-05-21"]), widening_hint([]))


@pytest.mark.slow
def test_finetune_end_to_end_on_a_tiny_pretraining_run(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from foundation.finetuning import finetune_all, finetune_config
    from foundation.heads import load_head
    from foundation.training import pretrain

    events = write_events(tmp_path / "events", raw_events())
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("pretrain", return_hydra_config=True, overrides=[
            f"paths.root_dir={tmp_path}", f"data.source.path={events}", "~synthetic", "model=tiny",
            "+model.max_position=16", "logger=csv", "trainer.max_epochs=1", "datamodule.batches_per_epoch=3",
            "datamodule.val_batches=1", "datamodule.batch_size=8", "datamodule.min_len=4", "tokenizer.min_count=2",
            "run_name=tiny"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        del cfg["hydra"]
    run_dir = pretrain(cfg)
    GlobalHydra.instance().clear()

    quick = ["examples.customers=null", "examples.days=null", "label_fractions=[0.5,1.0]", "heads.full.head.steps=4",
             "heads.full.label_fractions=[0.5,1.0]",
             "heads.full.head.eval_every=2", "heads.full.head.train_window=4", "heads.full.max_validation=200",
             "heads.probe.head.max_epochs=3", "heads.mlp.head.max_epochs=3", "heads.gbdt.head.num_boost_round=20",
             "heads.embeddings_velocity_lgbm.head.num_boost_round=20", "heads.gbdt_embeddings.head.num_boost_round=20",
             "report.n_bootstrap=50", "report.trait_customers=50", "torch_threads=1"]
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), f"checkpoint={run_dir}",
                          f"paths.root_dir={tmp_path}", "task=authorization", "run_name=ft", *quick,
                          "head=[probe,mlp,gbdt,fusion,embeddings_velocity_blend,embeddings_velocity_lgbm,full,"
                          "gbdt_embeddings,embeddings_blend]"],
                         capture_output=True, text=True, cwd=REPO, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder == tmp_path / "checkpoints" / "ft"
    rows = json.loads((folder / "metrics.json").read_text())["results"]
    models = {(r["model"], r["label_fraction"]) for r in rows}
    for model in ("probe", "mlp", "full", "gbdt", "embeddings_velocity_lgbm", "scratch", "velocity_lgbm_baseline"):
        assert {(model, 0.5), (model, 1.0)} <= models
        head_dir = folder / "heads" / "authorization" / model
        if model != "velocity_lgbm_baseline":
            head = load_head(head_dir)
            meta = json.loads((head_dir / "head.json").read_text())
            assert meta["task"] == "authorization" and meta["threshold"] == head.threshold
    assert ("embeddings_velocity_blend", 1.0) in models and ("embeddings_velocity_blend", 0.5) not in models
    assert {("gbdt_embeddings", 1.0), ("embeddings_blend", 1.0)} <= models and ("gbdt_embeddings", 0.5) not in models
    # the LightGBM on the embeddings alone reads the task features and nothing else: servable online
    alone = load_head(folder / "heads" / "authorization" / "gbdt_embeddings")
    assert alone.inputs.servable and alone.inputs.raw is None and alone.inputs.velocity_names is None
    # its trees name the layout's features (importances a user can read), not f0..fN
    assert alone.feature_names[0] == "h_customer_0" and "surprise_total" in alone.feature_names
    # frozen heads read the event surprise under the pretrained next-event heads; embeddings_velocity_lgbm adds
    # the embeddings to the velocity baseline's own features
    probe_layout = json.loads((folder / "heads" / "authorization" / "probe" / "head.json").read_text())["feature_layout"]
    assert "surprise_total" in probe_layout["surprise"]
    both = load_head(folder / "heads" / "authorization" / "embeddings_velocity_lgbm")
    assert both.inputs.velocity_names and both.inputs.embeddings and not both.inputs.servable
    from foundation.serving.scorer import Scorer

    with pytest.raises(ValueError, match="cannot be served online"):  # no velocity windows in the service
        Scorer.from_pretrained(run_dir, heads={"authorization": {"run": str(folder),
                                                                 "head": "embeddings_velocity_lgbm"}})
    served = Scorer.from_pretrained(run_dir, heads={"authorization": {"run": str(folder), "head": "probe"}})
    assert served.heads[0].surprise == tuple(probe_layout["surprise"])
    trees = Scorer.from_pretrained(run_dir, heads={"authorization": {"run": str(folder), "head": "gbdt_embeddings"}})
    assert trees.heads[0].surprise == tuple(probe_layout["surprise"])
    # every model is compared with the baselines on paired resamples of the same test examples
    comparisons = json.loads((folder / "metrics.json").read_text())["comparisons"]
    pairs = {(c["model"], c["label_fraction"], c["baseline"]) for c in comparisons}
    assert {("probe", 1.0, "velocity_lgbm_baseline"), ("embeddings_velocity_lgbm", 1.0, "velocity_lgbm_baseline"),
            ("embeddings_velocity_blend", 1.0, "velocity_lgbm_baseline"), ("mlp", 0.5, "scratch")} <= pairs
    assert all(c["ci_low"] <= c["delta"] <= c["ci_high"] and c["beats_baseline"] == (c["ci_low"] > 0)
               for c in comparisons)
    assert "Against the baselines" in (folder / "report.md").read_text()
    for name in ("report.md", "plots/customer_embeddings.png", "plots/pretraining_loss.png",
                 "plots/authorization_label_efficiency.png", "finetune.json", "plots/authorization_slices.png",
                 "plots/authorization_drift.png"):
        assert (folder / name).exists(), name
    # per-example scores of every model trained on all labels, aligned on the test events, with slice columns
    from foundation.evaluation.scores import read_scores

    scores, scored_models, extra = read_scores(folder / "scores.parquet")
    test_rows = [r for r in rows if r["label_fraction"] == 1.0]
    assert set(scored_models) == {r["model"] for r in test_rows}
    assert scores.num_rows == test_rows[0]["n_test"] and set(scores.column("task").to_pylist()) == {"authorization"}
    assert int(scores.column("label").to_numpy().sum()) == test_rows[0]["n_test_positive"]
    assert {"task", "amount", "history_length", "channel"} <= set(extra)
    report = (folder / "report.md").read_text()
    assert "authorization: PR-AUC per slice" in report and "| channel |" in report
    assert "authorization: feature drift between the train and test examples (PSI)" in report

    both, table = finetune_all(finetune_config([f"checkpoint={run_dir}", f"paths.root_dir={tmp_path}",
                                                "head=probe", "baselines.scratch=false", "run_name=all",
                                                *[q for q in quick if not q.startswith("heads.")]]))
    assert "fraud:" in table and "authorization:" in table and "velocity_lgbm_baseline" in table
    assert both == tmp_path / "checkpoints" / "all"
