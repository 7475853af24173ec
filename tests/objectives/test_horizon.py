"""Outcome-horizon objective: targets on a hand-built window, window censoring, config wiring, learning."""

from __future__ import annotations

import pytest
import torch

from foundation.batch import FoundationModelOutput
from foundation.model import FoundationForPretraining
from foundation.objectives import OutcomeHorizonObjective
from tests.model.batches import make_batch, tiny_config
from tests.objectives.overfit import head_loss_falls

HOUR = 3_600_000
FIELDS = [{"name": "event_type", "kind": "categorical", "vocab_size": 5, "outcome": True},  # ids 2, 3, 4
          {"name": "mcc", "kind": "categorical", "vocab_size": 9},
          {"name": "time", "kind": "time", "num_bins": 8}]


def _batch() -> dict[str, torch.Tensor]:
    # one entity: events at 0h, 1h, 30h, 200h; the 30h event is value id 4 (e.g. a dispute); last row padding
    times = torch.tensor([[0, 1, 30, 200, 0]]) * HOUR
    return {"attention_mask": torch.tensor([[True, True, True, True, False]]), "event_time": times,
            "event_type": torch.tensor([[2, 2, 4, 3, 0]]), "mcc": torch.tensor([[3, 3, 3, 3, 0]])}


def test_targets_mark_values_arriving_within_each_horizon():
    objective = OutcomeHorizonObjective(8, FIELDS, horizons_hours=[24, 168])
    targets, valid = objective.targets(_batch())
    assert targets.shape == (1, 5, 3, 2)  # values 2, 3, 4 of event_type; horizons 24h, 168h
    # from event 0 (t=0): within 24h only the 1h event (value 2); within 168h also the 30h event (value 4)
    assert targets[0, 0, :, 0].tolist() == [1.0, 0.0, 0.0]
    assert targets[0, 0, :, 1].tolist() == [1.0, 0.0, 1.0]
    # from event 2 (t=30h): its own value never counts; the 200h event is 170h later, beyond both horizons
    assert targets[0, 2].sum() == 0
    # validity: the window's last event (200h) must lie at least h after the position: the last event (and
    # padding) has no complete horizon; 30h -> 200h covers 168h
    assert valid[0, :, 0].tolist() == [True, True, True, False, False]
    assert valid[0, :, 1].tolist() == [True, True, True, False, False]
    late = _batch()
    late["event_time"][0, 3] = 170 * HOUR  # now the window ends 140h after event 2: its 168h horizon is cut
    assert objective.targets(late)[1][0, :, 1].tolist() == [True, True, False, False, False]


def test_loss_reads_only_valid_pairs_and_learns():
    torch.manual_seed(0)
    objective = OutcomeHorizonObjective(8, FIELDS, horizons_hours=[24, 168])
    hidden = torch.randn(1, 5, 8, requires_grad=True)
    result = objective(FoundationModelOutput(last_hidden_state=hidden), _batch())
    result["loss"].backward()
    assert torch.isfinite(result["loss"]) and 0 < float(result["positive_rate"]) < 1
    assert hidden.grad[0, 3:].abs().sum() == 0  # positions without a valid horizon get no gradient
    first = float(result["loss"].detach())
    assert head_loss_falls(objective, hidden, _batch(), first) < first / 2


def test_a_schema_without_outcome_fields_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="outcome: true"):
        OutcomeHorizonObjective(8, [f for f in FIELDS if f["name"] != "event_type"], [24])


def test_pretraining_model_trains_with_the_horizon_objective():
    fields = [dict(f, outcome=True) if f["name"] == "event_type" else f for f in tiny_config().fields]
    config = tiny_config(fields=fields, objectives={"next_event": 1.0, "horizon": 0.5}, horizon_hours=[1, 24])
    model = FoundationForPretraining(config)
    out = model(make_batch(fields, batch_size=4, seq_len=24, seed=0))
    assert set(out.losses) == {"next_event", "horizon"} and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.objectives["horizon"].head.weight.grad.abs().sum() > 0
