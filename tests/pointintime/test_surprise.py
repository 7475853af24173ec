"""Event surprise: the next-event loss of each event, per field, outcome fields left out; saved and reloaded."""

from __future__ import annotations

import torch

from foundation.model.modeling import FoundationModelOutput
from foundation.objectives import NextEventObjective
from foundation.pointintime import EventSurprise, save_next_event_heads
from tests.model.batches import make_batch, tiny_config, tiny_fields

OUTCOME_SPECS = [dict(spec, outcome=spec["name"] == "event_type") for spec in tiny_fields()]


def _single_event(batch: dict, row: int, position: int) -> dict:
    """The event at (row, position) alone, as a (1, 1) batch (how attempts are embedded)."""
    return {key: value[row:row + 1, position:position + 1] if value.dim() >= 2 else value[row:row + 1]
            for key, value in batch.items()}


def test_surprise_is_the_next_event_loss_of_each_field():
    torch.manual_seed(0)
    batch = make_batch(batch_size=1, seq_len=5, lengths=[5])
    hidden = torch.randn(1, 5, 32)
    objective = NextEventObjective(32, tiny_fields()).eval()
    surprise = EventSurprise(objective, OUTCOME_SPECS)
    assert surprise.names == ["surprise_mcc", "surprise_amount", "surprise_descriptor", "surprise_agg_amount_sum",
                              "surprise_time", "surprise_total"]  # event_type is an outcome: left out
    for i in range(4):  # event i+1 under the state after event i equals the objective's loss on that one pair
        pair = {k: v[:, i:i + 2] if v.dim() >= 2 else v for k, v in batch.items()}
        losses = objective(FoundationModelOutput(last_hidden_state=hidden[:, i:i + 2]), pair)
        got = surprise(hidden[:, i], _single_event(batch, 0, i + 1), torch.tensor([True]))[0]
        for name in ("mcc", "amount", "descriptor", "time"):
            torch.testing.assert_close(got[surprise.names.index(f"surprise_{name}")], losses[f"{name}_loss"])
        assert got[surprise.names.index("surprise_agg_amount_sum")] == 0  # absent from customer batches
        torch.testing.assert_close(got[-1], got[:-1].sum())


def test_an_event_without_history_has_no_surprise():
    batch = make_batch(batch_size=1, seq_len=2, lengths=[2])
    surprise = EventSurprise(NextEventObjective(32, tiny_fields()).eval(), OUTCOME_SPECS)
    got = surprise(torch.randn(1, 32), _single_event(batch, 0, 0), torch.tensor([False]))
    assert torch.count_nonzero(got) == 0


def test_saved_heads_reload_to_the_same_surprise(tmp_path):
    config = tiny_config()
    objective = NextEventObjective(config.hidden_size, config.fields).eval()
    save_next_event_heads(objective, tmp_path)
    loaded = EventSurprise.load(tmp_path, config, OUTCOME_SPECS)
    batch = make_batch(batch_size=2, seq_len=3, lengths=[3, 2])
    hidden = torch.randn(2, 32)
    events = {k: v[:, 1:2] if v.dim() >= 2 else v for k, v in batch.items()}
    flags = torch.tensor([True, True])
    torch.testing.assert_close(loaded(hidden, events, flags), EventSurprise(objective, OUTCOME_SPECS)(hidden, events, flags))
    assert EventSurprise.load(tmp_path / "elsewhere", config, OUTCOME_SPECS) is None  # no heads saved: no surprise


def test_surprise_from_log_probs_of_each_state_equals_the_batched_call():
    """The state's log-probabilities (what a service keeps per state) give the surprise of any event after it."""
    torch.manual_seed(1)
    surprise = EventSurprise(NextEventObjective(32, tiny_fields()).eval(), OUTCOME_SPECS)
    batch = make_batch(batch_size=3, seq_len=2, lengths=[2, 2, 1])
    events = {k: v[:, 1:2] if v.dim() >= 2 else v for k, v in batch.items()}
    hidden, flags = torch.randn(3, 32), torch.tensor([True, True, False])
    rows = torch.cat([surprise.log_probs(hidden[b:b + 1]) for b in range(3)])  # one state at a time
    assert rows.shape == (3, sum(spec.num_classes for spec in surprise.specs))
    torch.testing.assert_close(surprise.from_log_probs(rows, events, flags), surprise(hidden, events, flags))
    logits = surprise.heads.fields["mcc"](hidden)  # the definition: cross-entropy of the field's logits
    expected = torch.nn.functional.cross_entropy(logits, events["mcc"][:, 0], ignore_index=0, reduction="none")
    torch.testing.assert_close(surprise(hidden, events, flags)[:2, 0], expected[:2])
