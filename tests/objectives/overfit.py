"""Shared overfitting loop: a real objective on one small fixed batch must drive its loss down."""

import torch

from foundation.model import FoundationForPretraining
from tests.model.batches import tiny_config


def overfit(objective: str, batch: dict, encoder_type: str = "transformer", steps: int = 60) -> tuple[float, float]:
    """Train a tiny FoundationForPretraining with only `objective` on `batch`.

    Returns:
        (first loss, mean of the last 5 losses): the mean smooths the masked objective, whose masks are
        drawn afresh at every step.
    """
    torch.manual_seed(0)
    model = FoundationForPretraining(tiny_config(objectives={objective: 1.0}, encoder_type=encoder_type))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], sum(losses[-5:]) / 5


def head_loss_falls(objective: torch.nn.Module, hidden: torch.Tensor, batch: dict, first: float,
                    steps: int = 50) -> float:
    """Train only an objective's own head on fixed hidden states; returns its last loss (to compare with `first`)."""
    from foundation.batch import FoundationModelOutput

    optimizer = torch.optim.Adam(objective.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = objective(FoundationModelOutput(last_hidden_state=hidden.detach()), batch)["loss"]
        loss.backward()
        optimizer.step()
    return float(loss.detach())
