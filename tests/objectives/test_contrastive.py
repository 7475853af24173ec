"""Contrastive objective: the InfoNCE value, edge cases, and that it learns."""

import pytest
import torch
import torch.nn.functional as F

from foundation.model.modeling import FoundationModelOutput
from foundation.objectives import ContrastiveObjective
from tests.model.batches import make_batch
from tests.objectives.overfit import overfit


def _batch(entity_index: list[int], lengths: list[int] | None = None) -> dict:
    lengths = lengths or [3] * len(entity_index)
    return {"entity_index": torch.tensor(entity_index), "lengths": torch.tensor(lengths)}


def test_loss_is_multi_positive_info_nce():
    torch.manual_seed(0)
    objective = ContrastiveObjective(8, projection_dim=4, temperature=0.5)
    outputs = FoundationModelOutput(entity_embedding=torch.randn(4, 8))
    result = objective(outputs, _batch([7, 7, 3, 3]))
    z = F.normalize(objective.projection(outputs.entity_embedding), dim=-1)
    sim = z @ z.T / 0.5
    expected = []
    for i, positive in enumerate([1, 0, 3, 2]):
        others = [j for j in range(4) if j != i]
        expected.append(-(sim[i, positive] - torch.logsumexp(sim[i, others], 0)))
    torch.testing.assert_close(result["loss"], torch.stack(expected).mean())
    assert result["anchors"].item() == 4


def test_rows_without_positive_or_events_take_no_part():
    torch.manual_seed(0)
    objective = ContrastiveObjective(8, projection_dim=4)
    embedding = torch.randn(5, 8, requires_grad=True)
    # Row 4 is an empty view of entity 1: neither anchor nor candidate, so entity 1 has one usable row.
    result = objective(FoundationModelOutput(entity_embedding=embedding), _batch([0, 0, 1, 2, 1], [3, 3, 3, 3, 0]))
    assert result["anchors"].item() == 2
    lonely = objective(FoundationModelOutput(entity_embedding=embedding), _batch([0, 1, 2, 3, 4]))
    assert lonely["loss"].item() == 0.0 and lonely["anchors"].item() == 0
    lonely["loss"].backward()
    assert torch.isfinite(embedding.grad).all()


def test_missing_entity_index_is_a_clear_error():
    objective = ContrastiveObjective(8)
    with pytest.raises(KeyError, match="needs batch\\['entity_index'\\]"):
        objective(FoundationModelOutput(entity_embedding=torch.randn(2, 8)), {"lengths": torch.tensor([1, 1])})


@pytest.mark.parametrize(
    "encoder_type", ["transformer", pytest.param("gru", marks=pytest.mark.slow)]  # the GRU repeats the check
)
def test_contrastive_loss_overfits_a_fixed_batch(encoder_type):
    # Views share no entity-level preference (signal 0): only overlapping events tie them together.
    batch = make_batch(batch_size=16, seq_len=12, views_per_entity=2, signal=0.0, seed=1)
    first, last = overfit("contrastive", batch, encoder_type, steps=30)
    assert first > 1.0 and last < 0.5 * first, (first, last)
