"""Recent-activity objective: targets on a hand-built window, window-start censoring, point in time, wiring."""

from __future__ import annotations

import pytest
import torch

from foundation.batch import FoundationModelOutput
from foundation.model import FoundationForPretraining
from foundation.objectives import RecentActivityObjective, build_objective
from tests.model.batches import make_batch, tiny_config
from tests.objectives.overfit import head_loss_falls

HOUR = 3_600_000
FIELDS = [{"name": "amount", "kind": "numeric", "num_bins": 8},
          {"name": "mcc", "kind": "categorical", "vocab_size": 9},
          {"name": "time", "kind": "time", "num_bins": 8}]


def _batch() -> dict[str, torch.Tensor]:
    # one entity: events at 0h, 0.5h, 2h, 2h + 1s, 26h; the 2h + 1s amount is null (bin 1); last row padding
    times = torch.tensor([[0, HOUR // 2, 2 * HOUR, 2 * HOUR + 1000, 26 * HOUR, 0]])
    return {"attention_mask": torch.tensor([[True, True, True, True, True, False]]), "event_time": times,
            "amount_value": torch.tensor([[1.0, 2.0, 3.0, float("nan"), 5.0, 0.0]]),
            "amount_bin": torch.tensor([[3, 3, 3, 1, 3, 0]]), "mcc": torch.tensor([[2, 2, 2, 2, 2, 0]])}


def test_targets_recount_the_past_windows_ending_at_each_event():
    objective = RecentActivityObjective(8, FIELDS, windows_hours=[1, 24])
    targets, valid = objective.targets(_batch())
    assert targets.shape == valid.shape == (1, 6, 2, 2)  # (log count, mean amount) x (1h, 24h)
    counts = torch.expm1(targets[0, :, 0]).round()
    # (t - 1h, t]: the event itself, plus the 2h event for the one a second later; (t - 24h, t]: 24h back
    assert counts[:5, 0].tolist() == [1, 2, 1, 2, 1]
    assert counts[:5, 1].tolist() == [1, 2, 3, 4, 2]  # at 26h the 2h event is exactly 24h back: left out
    # the mean amount skips the null: at 2h + 1s the last hour holds 3.0 and a null
    assert targets[0, 3, 1, 0] == pytest.approx(3.0) and targets[0, 4, 1, 1] == pytest.approx(5.0)
    # exact only when the batch window starts at least w before the event (earlier events may be cut off)
    assert valid[0, :, 0, 0].tolist() == [False, False, True, True, True, False]
    assert valid[0, :, 0, 1].tolist() == [False, False, False, False, True, False]


def test_targets_never_read_an_event_after_the_position():
    objective = RecentActivityObjective(8, FIELDS, windows_hours=[1, 24])
    before = objective.targets(_batch())[0]
    later = _batch()
    later["event_time"][0, 4] = 2 * HOUR + 2000  # move the last event right after the others
    later["amount_value"][0, 4] = 100.0
    after = objective.targets(later)[0]
    assert torch.equal(before[0, :4], after[0, :4])  # positions before it are unchanged
    assert after[0, 4, 1, 0] == pytest.approx(51.5)  # (3.0 + 100.0) / 2 valid amounts in its last hour


def test_loss_reads_only_valid_targets_and_learns():
    torch.manual_seed(0)
    objective = RecentActivityObjective(8, FIELDS, windows_hours=[1, 24])
    hidden = torch.randn(1, 6, 8, requires_grad=True)
    result = objective(FoundationModelOutput(last_hidden_state=hidden), _batch())
    result["loss"].backward()
    assert torch.isfinite(result["loss"]) and 0 < float(result["valid_share"]) < 1
    assert hidden.grad[0, :2].abs().sum() == 0 and hidden.grad[0, 5].abs().sum() == 0  # no exact target there
    first = float(result["loss"].detach())
    assert head_loss_falls(objective, hidden, _batch(), first, steps=100) < first / 2


def test_bad_windows_are_refused_and_the_config_builds_it():
    with pytest.raises(ValueError, match="windows_hours must be positive"):
        RecentActivityObjective(8, FIELDS, [0])
    config = tiny_config(objectives={"next_event": 1.0, "recent": 0.5}, recent_hours=[1, 24])
    assert isinstance(build_objective("recent", config), RecentActivityObjective)
    assert tiny_config().recent_hours == [1.0, 24.0, 168.0]


def test_pretraining_model_trains_with_the_recent_objective():
    config = tiny_config(objectives={"next_event": 1.0, "recent": 0.5}, recent_hours=[1, 24])
    model = FoundationForPretraining(config)
    out = model(make_batch(config.fields, batch_size=4, seq_len=24, seed=0))
    assert set(out.losses) == {"next_event", "recent"} and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.objectives["recent"].head.weight.grad.abs().sum() > 0


def test_outcome_shares_recount_the_values_of_the_outcome_fields():
    fields = [*FIELDS, {"name": "event_type", "kind": "categorical", "vocab_size": 5, "outcome": True}]
    batch = _batch()
    # event types (ids 2.. are values): charge, charge, decline, dispute, charge; padding last
    batch["event_type"] = torch.tensor([[2, 2, 3, 4, 2, 0]])
    objective = RecentActivityObjective(8, fields, windows_hours=[1, 24], outcome_shares=True)
    targets, valid = objective.targets(batch)
    assert targets.shape == (1, 6, 2 + 3, 2)  # log count, mean amount, then the shares of values 2, 3, 4
    shares = targets[0, :, 2:]  # (T, 3 values, 2 windows)
    # the last hour of the 2h + 1s event holds the decline and the dispute
    assert shares[3, :, 0].tolist() == pytest.approx([0.0, 0.5, 0.5])
    # its last day: charge, charge, decline, dispute
    assert shares[3, :, 1].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert torch.allclose(shares[:5].sum(dim=1), torch.ones(5, 2))  # the shares of a window sum to one
    assert torch.equal(valid[0, :, 2], valid[0, :, 0])  # exact exactly where the count is
    # the event type of a later event never enters an earlier position's shares
    later = {k: v.clone() for k, v in batch.items()}
    later["event_type"][0, 4] = 4
    assert torch.equal(objective.targets(later)[0][0, :4], targets[0, :4])
    # the objective's own default is off; the model config's is on, and switches it off
    assert RecentActivityObjective(8, fields, [1]).n_targets == 2
    config = tiny_config(objectives={"next_event": 1.0, "recent": 0.5})
    config.fields = fields
    assert config.recent_outcome_shares is True and build_objective("recent", config).outcomes == [("event_type", 5)]
    config.recent_outcome_shares = False
    assert build_objective("recent", config).outcomes == []


def test_an_outcome_field_with_too_many_values_gets_no_shares_and_says_so(caplog):
    fields = [*FIELDS, {"name": "event_type", "kind": "categorical", "vocab_size": 5, "outcome": True},
              {"name": "reason", "kind": "categorical", "vocab_size": 500, "outcome": True}]
    with caplog.at_level("WARNING"):
        objective = RecentActivityObjective(8, fields, [1], outcome_shares=True)
    assert objective.outcomes == [("event_type", 5)] and "no outcome shares for ['reason']" in caplog.text
    assert objective.n_targets == 2 + 3
