"""Full fine-tuning: its features equal the section-8 features of its encoder, it learns a planted signal,
and it round-trips through head.safetensors + encoder/."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from sklearn.metrics import roc_auc_score

from foundation.data.validate import validate
from foundation.heads.full import FullHead, window_set
from foundation.model import FoundationModel
from foundation.pointintime import PointInTimeEncoder, PointInTimeStates, example_keys, example_states
from tests.embeddings.world import World, raw_events, session_world

ENTITIES = ("customer", "merchant")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return session_world(tmp_path_factory)


@pytest.fixture(scope="module")
def examples(world):
    events = validate(raw_events(), world.schema, on_error="raise").table
    attempts = pc.is_in(events["event_type"], value_set=pa.array(["charge", "decline"])).to_numpy(
        zero_copy_only=False)
    rows = np.flatnonzero(attempts)
    keys = example_keys(events, pa.table({"row": pa.array(rows)}), ["customer", "merchant"])
    encoder = PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), 256, progress=False)
    states = example_states(PointInTimeStates(world.store, encoder), keys, ENTITIES)
    labels = events["is_fraud"].to_numpy(zero_copy_only=False)[rows].astype(int)
    return states, labels


def _head(world, **settings) -> FullHead:
    encoder = FoundationModel.from_pretrained(world.run.run_dir / "hf")
    return FullHead(encoder, world.run.tokenizer.field_specs(), ENTITIES, **settings)


def test_training_features_equal_the_section8_features(world, examples):
    states, labels = examples
    head = _head(world, dropout=0.0)
    frozen = PointInTimeStates(world.store, PointInTimeEncoder(head.encoder, head.field_specs, 256, progress=False))
    windows = window_set(frozen, states.take(np.arange(40)), labels[:40], ENTITIES)
    head.encoder.eval()
    with torch.inference_mode():
        found = head.features(windows).numpy()
    np.testing.assert_allclose(found, states.take(np.arange(40)).features(ENTITIES), atol=2e-5)


@pytest.mark.slow
def test_learns_a_planted_signal_and_round_trips(world, examples, tmp_path):
    states, labels = examples
    n = len(labels)
    train, val, test = np.arange(0, n // 2), np.arange(n // 2, 3 * n // 4), np.arange(3 * n // 4, n)
    head = _head(world, steps=60, batch_size=32, eval_every=20, patience=3, positive_share=0.3,
                 train_window=6, head_lr=3e-3, seed=0)
    frozen = PointInTimeStates(world.store, PointInTimeEncoder(head.encoder, head.field_specs, 256, progress=False))
    sets = {name: window_set(frozen, states.take(rows), labels[rows], ENTITIES, head.train_window)
            for name, rows in (("train", train), ("val", val))}
    head.fit(sets["train"], sets["val"])
    assert head.info["best_step"] in (20, 40, 60)
    exact = window_set(frozen, states.take(test), labels[test], ENTITIES)
    scores = head.predict_windows(exact)
    assert roc_auc_score(labels[test], scores) > 0.8  # fraud = gambling bought online: in the event itself
    # serving path: section-8 features computed with the head's own encoder -> predict_proba
    tuned = PointInTimeStates(world.store, PointInTimeEncoder(head.encoder, head.field_specs, 256, progress=False))
    features = example_states(tuned, states.keys.take(pa.array(test)), ENTITIES).features(ENTITIES)
    np.testing.assert_allclose(head.predict_proba(features), scores, atol=1e-5)
    head.choose_threshold(labels[val], head.predict_windows(window_set(frozen, states.take(val), labels[val],
                                                                       ENTITIES)))
    head.save(tmp_path / "full", tokenizer=world.run.tokenizer, task="fraud")
    loaded = FullHead.load(tmp_path / "full")
    np.testing.assert_array_equal(loaded.predict_proba(features), head.predict_proba(features))
    assert loaded.threshold == head.threshold
    assert (tmp_path / "full" / "encoder" / "tokenizer_config.json").exists()
    for key, value in head.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[key], value)


def test_a_time_budget_stops_training_and_keeps_the_best_weights(world, examples):
    states, labels = examples
    n = len(labels)
    train, val = np.arange(0, n // 2), np.arange(n // 2, 3 * n // 4)
    head = _head(world, steps=10_000, batch_size=16, eval_every=1_000, patience=3, train_window=6,
                 budget_minutes=0.02, seed=0)  # ~1 s: far fewer than 10,000 steps, one validation at the stop
    frozen = PointInTimeStates(world.store, PointInTimeEncoder(head.encoder, head.field_specs, 256, progress=False))
    head.fit(window_set(frozen, states.take(train), labels[train], ENTITIES, 6),
             window_set(frozen, states.take(val), labels[val], ENTITIES, 6))
    assert head.info["stopped_by"] == "budget" and head.info["steps_run"] < 10_000
    assert head.info["best_step"] == head.info["steps_run"] and len(head.info["validation_pr_auc_by_step"]) == 1
    assert head.settings()["budget_minutes"] == 0.02
