"""Masked-event objective: which events are masked, what is scored, and that it learns."""

import pytest
import torch

from foundation.model.modeling import FoundationModelOutput
from foundation.objectives import MaskedEventObjective, choose_mask_positions
from tests.model.batches import make_batch, tiny_fields
from tests.objectives.overfit import overfit


def test_mask_choice_is_about_15_percent_of_real_events_never_all_at_least_one():
    lengths = torch.tensor([200, 40, 7, 2, 1, 0])
    attention_mask = torch.arange(200).unsqueeze(0) < lengths.unsqueeze(1)
    generator = torch.Generator().manual_seed(0)
    chosen = choose_mask_positions(attention_mask, 0.15, generator)
    assert not (chosen & ~attention_mask).any()  # never padding
    assert chosen.sum(1).tolist() == [30, 6, 1, 1, 1, 0]
    # Different draws pick different events.
    again = choose_mask_positions(attention_mask, 0.15, torch.Generator().manual_seed(1))
    assert not torch.equal(again, chosen)


def test_only_masked_events_are_scored():
    batch = make_batch(batch_size=2, seq_len=8, lengths=[8, 5])
    torch.manual_seed(0)
    outputs = FoundationModelOutput(last_hidden_state=torch.randn(2, 8, 32))
    objective = MaskedEventObjective(32, tiny_fields(), mask_probability=0.25)
    mask = objective.choose_positions(batch, torch.Generator().manual_seed(0))
    result = objective(outputs, batch, mask)
    # Changing the fields of unmasked events leaves the loss unchanged; changing a masked event's does not.
    unmasked = {key: value.clone() for key, value in batch.items()}
    unmasked["mcc"][~mask & batch["attention_mask"]] = 1
    torch.testing.assert_close(objective(outputs, unmasked, mask)["loss"], result["loss"])
    masked = {key: value.clone() for key, value in batch.items()}
    masked["mcc"][mask] = 1
    assert not torch.allclose(objective(outputs, masked, mask)["mcc_loss"], result["mcc_loss"])
    assert "time_loss" not in result  # the time of a masked event is an input, not a target
    assert result["mask_rate"].item() == pytest.approx(mask.sum().item() / 13)


@pytest.mark.parametrize(
    "encoder_type", ["transformer", pytest.param("gru", marks=pytest.mark.slow)]  # the GRU repeats the check
)
def test_masked_loss_overfits_a_fixed_batch(encoder_type):
    # The masks are drawn afresh at every step, as in training.
    first, last = overfit("masked", make_batch(batch_size=4, seq_len=16), encoder_type, steps=80)
    assert last < 0.5 * first, (first, last)
