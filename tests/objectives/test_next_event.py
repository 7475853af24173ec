"""Next-event objective: target alignment, edge cases, and that it learns."""

import pytest
import torch
import torch.nn.functional as F

from foundation.model.modeling import FoundationModelOutput
from foundation.objectives import NextEventObjective
from tests.model.batches import make_batch, tiny_fields
from tests.objectives.overfit import overfit


def _outputs(batch: dict, hidden_size: int = 32) -> FoundationModelOutput:
    torch.manual_seed(1)
    batch_size, seq_len = batch["attention_mask"].shape
    return FoundationModelOutput(last_hidden_state=torch.randn(batch_size, seq_len, hidden_size))


def test_each_state_is_scored_against_the_next_real_event():
    batch = make_batch(batch_size=3, seq_len=6, lengths=[6, 3, 1])
    outputs = _outputs(batch)
    objective = NextEventObjective(32, tiny_fields())
    result = objective(outputs, batch)
    # By hand: pairs (i -> i+1) of real events only; row 2 (one event) has none.
    pairs = [(0, i) for i in range(5)] + [(1, 0), (1, 1)]
    hidden = torch.stack([outputs.last_hidden_state[b, i] for b, i in pairs])
    head = objective.heads.fields
    mcc = torch.stack([batch["mcc"][b, i + 1] for b, i in pairs])
    torch.testing.assert_close(result["mcc_loss"], F.cross_entropy(head["mcc"](hidden), mcc))
    gap = torch.stack([batch["time_gap_bin"][b, i + 1] for b, i in pairs])
    torch.testing.assert_close(result["time_loss"], F.cross_entropy(head["time"](hidden), gap))
    tokens = torch.stack([batch["descriptor_tokens"][b, i + 1] for b, i in pairs])  # (N, K)
    log_probs = F.log_softmax(head["descriptor"](hidden), -1)
    expected = torch.stack([-log_probs[n, row[row != 0]].mean() for n, row in enumerate(tokens)]).mean()
    torch.testing.assert_close(result["descriptor_loss"], expected)
    field_losses = [result[f"{name}_loss"] for name in ("event_type", "mcc", "amount", "descriptor", "time")]
    torch.testing.assert_close(result["loss"], torch.stack(field_losses).mean())
    assert "agg_amount_sum_loss" not in result  # absent from the batch: not scored, not averaged in


def test_no_pairs_gives_a_finite_zero_loss():
    batch = make_batch(batch_size=2, seq_len=4, lengths=[1, 0])
    outputs = _outputs(batch)
    outputs.last_hidden_state.requires_grad_(True)
    result = NextEventObjective(32, tiny_fields())(outputs, batch)
    assert result["loss"].item() == 0.0
    result["loss"].backward()
    assert torch.isfinite(outputs.last_hidden_state.grad).all()


@pytest.mark.parametrize(
    "encoder_type", ["transformer", pytest.param("gru", marks=pytest.mark.slow)]  # the GRU repeats the check
)
def test_next_event_loss_overfits_a_fixed_batch(encoder_type):
    first, last = overfit("next_event", make_batch(batch_size=8, seq_len=16), encoder_type, steps=50)
    assert last < 0.5 * first, (first, last)
