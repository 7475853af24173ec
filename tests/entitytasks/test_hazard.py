"""The survival columns read off the next-event time head: hand-computed curves, the as-of rule, config errors."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from foundation.entitytasks.embedding import DAY_MS, embedding_names, entity_embeddings
from foundation.entitytasks.hazard import GapHazard, hazard_names
from foundation.pointintime import PointInTimeEncoder

EDGES = np.array([10.0, 100.0, 1000.0])  # seconds: bins [0, 10), [10, 100), [100, 1000), [1000, inf)


def _head(logits: list[float]) -> torch.nn.Linear:
    """A time head whose output ignores the state: the given logits (pad, first-event, then the 4 gap bins)."""
    head = torch.nn.Linear(3, len(logits))
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(logits))
    return head


def test_survival_follows_the_bins_in_log_time():
    # pad and first-event logits are huge: they are left out and the gap bins renormalised
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    hazard = GapHazard(_head([9.0, 9.0, *np.log(probs)]), EDGES, [])
    p = hazard.gap_probabilities(np.zeros((1, 3)))
    np.testing.assert_allclose(p[0], probs, rtol=1e-6)  # float32 logits
    s = lambda t: float(hazard.survival(p, np.array([t]))[0])  # noqa: E731
    assert s(0.0) == pytest.approx(1.0)
    assert s(5.0) == pytest.approx(0.9 + 0.1 * 0.5)  # first bin: linear from 0
    assert s(10.0) == pytest.approx(0.9)
    assert s(math.sqrt(10 * 100)) == pytest.approx(0.7 + 0.2 * 0.5)  # log-time midpoint of [10, 100)
    assert s(1000.0) == pytest.approx(0.4)
    assert s(4000.0) == pytest.approx(0.4 * 1000 / 4000)  # the tail falls as 1/t
    grid = np.geomspace(0.1, 1e6, 200)
    assert np.all(np.diff(hazard.survival(np.repeat(p, len(grid), 0), grid)) <= 1e-12)  # never increases


def test_columns_are_the_log_survival_now_and_conditional_on_the_silence():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    hazard = GapHazard(_head([0.0, 0.0, *np.log(probs)]), EDGES, [50_000, 2_000_000])  # 50 s, 2,000 s
    assert hazard.names == ["log_survival_now", "log_survival_next_0.000578704d", "log_survival_next_0.0231481d"]
    out = hazard(np.zeros((3, 3)), np.array([10_000, 100_000, 10_000]), np.array([True, True, False]))
    assert out.dtype == np.float32 and out.shape == (3, 3)
    s = lambda t: float(hazard.survival(probs[None, :], np.array([t]))[0])  # noqa: E731
    # silent 10 s: log S(10); next 50 s quiet given that: log S(60) - log S(10); next 2,000 s: log S(2010) - log S(10)
    np.testing.assert_allclose(out[0], [math.log(s(10)), math.log(s(60) / s(10)), math.log(s(2010) / s(10))],
                               rtol=1e-5)
    np.testing.assert_allclose(out[1], [math.log(s(100)), math.log(s(150) / s(100)), math.log(s(2100) / s(100))],
                               rtol=1e-5)
    assert np.all(out[:2, 1:] <= 0) and out[0, 2] < out[0, 1]  # a longer quiet is less likely
    assert np.all(out[2] == 0.0)  # no history: no prediction


def test_the_columns_depend_on_the_state():
    head = torch.nn.Linear(2, 2 + len(EDGES) + 1)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[2, 0] = 5.0  # state (1, 0): most mass in the shortest gaps; (0, 1): uniform over the bins
    out = GapHazard(head, EDGES, [100_000])(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1_000, 1_000]),
                                            np.array([True, True]))
    assert out[0, 1] < out[1, 1]  # an entity expected back soon is less likely to stay away for 100 s...
    assert out[0, 0] < out[1, 0]  # ...and its silence so far is the less likely one


def test_a_checkpoint_without_a_time_head_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="embedding.hazard needs the pretrained model's next-event time head"):
        GapHazard.from_run(None, None, [DAY_MS])
    assert hazard_names([7 * DAY_MS, 30 * DAY_MS]) == ["log_survival_now", "log_survival_next_7d",
                                                      "log_survival_next_30d"]


def test_entity_embeddings_with_hazard_read_nothing_after_as_of(world):
    """The hazard block is a function of the as-of state and elapsed time: the same whether or not later events
    exist, and it changes with the silence between the last event and as_of."""
    run = world.run
    encoder = PointInTimeEncoder(run.model, run.tokenizer.field_specs(), 4096, "cpu")
    hazard = GapHazard.from_run(run.surprise, run.tokenizer, [DAY_MS, 7 * DAY_MS])
    keys = world.store.keys(world.store.shards("customer")[0])
    entity = keys["entity_id"][0].as_py()
    times = pc.cast(keys["event_time"][0].values, pa.int64()).to_numpy()
    k = next(i for i in range(len(times) // 2, len(times) - 1) if times[i - 1] < times[i] < times[i + 1])
    gap = int(times[k + 1] - times[k])
    as_of = np.array([times[k], times[k] + gap // 3, times[k] + 2 * gap // 3], np.int64)
    got = entity_embeddings(world.store, encoder, "customer", pa.array([entity] * 3), as_of, (), hazard)
    hidden = run.model.config.hidden_size
    plain = entity_embeddings(world.store, encoder, "customer", pa.array([entity] * 3), as_of)
    np.testing.assert_array_equal(got[:, :hidden + 2], plain)  # the embedding columns are unchanged
    block = got[:, hidden + 2:]
    assert block.shape == (3, 3)
    # the same state (event k) at the three dates; only the silence differs, so log S(e) falls with it
    np.testing.assert_allclose(got[:, :hidden], np.repeat(got[:1, :hidden], 3, 0), rtol=1e-6)
    assert block[0, 0] >= block[1, 0] >= block[2, 0]
    expected = hazard(got[:, :hidden], as_of - times[k], np.ones(3, bool))
    np.testing.assert_allclose(block, expected, rtol=1e-5, atol=1e-6)
    names = embedding_names(got.shape[1], (), hazard.names)
    assert names[hidden:] == ["has_history", "log_days_since_last_event", *hazard.names]
