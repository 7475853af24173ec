"""The entity full fine-tune: its windows give the frozen entity embedding before training, it trains for every
problem kind on the tiny world, and it saves and loads with identical predictions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from foundation.entitytasks.embedding import DAY_MS, entity_embeddings
from foundation.entitytasks.full import EntityFullHead, entity_windows
from foundation.heads import load_head
from foundation.model import FoundationModel
from foundation.pointintime import PointInTimeEncoder


def _queries(world, n: int = 60):
    """Customers of the first shard as of dates inside, before and after their histories."""
    keys = world.store.keys(world.store.shards("customer")[0])
    ids = keys["entity_id"].to_pylist()
    times = [pc.cast(keys["event_time"][i].values, pa.int64()).to_numpy() for i in range(len(ids))]
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(ids), n)
    as_of = np.array([rng.integers(t[0] - 5 * DAY_MS, t[-1] + 5 * DAY_MS) for t in (times[r] for r in rows)])
    as_of[:3] = [times[r][0] - DAY_MS for r in rows[:3]]  # before the first event: no history
    counts = np.array([int(np.sum(times[r] <= a)) for r, a in zip(rows, as_of)])  # events at or before as_of
    return pa.array([ids[r] for r in rows]), as_of.astype(np.int64), counts


def _head(world, problem: str, **settings) -> EntityFullHead:
    model = FoundationModel.from_pretrained(world.run.hf_dir)
    return EntityFullHead(model, world.run.tokenizer.field_specs(), problem, 3, hidden_sizes=[16], **settings)


def test_untrained_windows_give_the_frozen_entity_embedding(world):
    ids, as_of, counts = _queries(world)
    assert (counts == 0).any() and (counts > 0).any()
    inputs = entity_windows(world.store, world.run.model.config.max_position, "customer", ids, as_of)
    head = _head(world, "binary")
    head.encoder.eval()
    with torch.no_grad():
        got = head.features(inputs).numpy()
    encoder = PointInTimeEncoder(world.run.model, world.run.tokenizer.field_specs(), 4096, "cpu")
    expected = entity_embeddings(world.store, encoder, "customer", ids, as_of)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.array_equal(inputs.query[:, 0], (counts > 0).astype(np.float32))  # nothing after as_of
    lengths = inputs.windows["length"].to_numpy()
    assert np.all(lengths <= np.minimum(counts, world.run.model.config.max_position))




@pytest.mark.parametrize("problem", ["binary", "regression", "multiclass"])
def test_full_head_trains_and_round_trips(world, problem, tmp_path):
    ids, as_of, counts = _queries(world, 80)
    inputs = entity_windows(world.store, world.run.model.config.max_position, "customer", ids, as_of)
    y = {"binary": (counts > np.median(counts)).astype(np.int64), "regression": np.log1p(counts),
         "multiclass": np.digitize(counts, np.quantile(counts, [1 / 3, 2 / 3]))}[problem]
    train, validation, test = np.arange(0, 50), np.arange(50, 65), np.arange(65, 80)
    head = _head(world, problem, steps=6, eval_every=2, patience=5, batch_size=8)
    before = {k: v.clone() for k, v in head.encoder.state_dict().items()}
    head.fit(inputs.take(train), y[train], inputs.take(validation), y[validation])
    assert head.info["steps_run"] == 6 and len(head.info["validation_score_by_step"]) == 3
    assert any(not np.allclose(before[k], v) for k, v in head.encoder.state_dict().items())  # end to end
    scores = head.predict_windows(inputs.take(test))
    assert scores.shape == ((15, 3) if problem == "multiclass" else (15,)) and np.all(np.isfinite(scores))
    head.save(tmp_path / "full", tokenizer=world.run.tokenizer, kind="entity", task="t", problem=problem)
    loaded = load_head(tmp_path / "full")
    assert isinstance(loaded, EntityFullHead) and loaded.problem == problem
    np.testing.assert_allclose(loaded.predict_windows(inputs.take(test)), scores, rtol=1e-5, atol=1e-6)
    # predict_proba reads embeddings computed with the head's own encoder
    encoder = PointInTimeEncoder(loaded.encoder, world.run.tokenizer.field_specs(), 4096, "cpu")
    X = entity_embeddings(world.store, encoder, "customer", ids.take(pa.array(test)), as_of[test])
    np.testing.assert_allclose(loaded.predict_proba(X), scores, rtol=1e-4, atol=1e-5)


def test_binary_full_head_needs_both_classes(world):
    ids, as_of, _ = _queries(world, 20)
    inputs = entity_windows(world.store, world.run.model.config.max_position, "customer", ids, as_of)
    with pytest.raises(ValueError, match="single class"):
        _head(world, "binary", steps=2).fit(inputs, np.zeros(20), inputs, np.zeros(20))
