"""The fused content embedding equals its per-field definition, values and gradients, in both combine modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from foundation.model.embeddings import FoundationEventEmbedding
from tests.model.batches import make_batch, tiny_config


def per_field_content(module: FoundationEventEmbedding, batch: dict) -> torch.Tensor:
    """The definition: each present field embedded on its own, through its block of the concat projection."""
    hidden = module.mask_embedding.shape[0]
    total = torch.zeros((*batch["attention_mask"].shape, hidden))
    for index, spec in enumerate(module.content_specs):
        if not spec.present_in(batch):
            continue
        part = module.fields[spec.name](batch)
        if module.projection is not None:
            part = F.linear(part, module.projection.weight[:, index * hidden:(index + 1) * hidden])
        total = total + part
    return total + (module.projection.bias if module.projection is not None else 0.0)


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_fused_content_equals_the_per_field_sum(combine):
    torch.manual_seed(0)
    module = FoundationEventEmbedding(tiny_config(event_combine=combine))
    for p in module.parameters():  # non-trivial weights everywhere (padding rows stay zero, as trained)
        torch.nn.init.normal_(p)
    for sub in module.modules():
        if isinstance(sub, torch.nn.Embedding) and sub.padding_idx is not None:
            sub.weight.data[sub.padding_idx] = 0
    batch = make_batch(batch_size=3, seq_len=7, lengths=[7, 4, 1])
    batch["amount_value"][0, 2] = float("nan")  # a null value contributes no value term
    fused, reference = module.content(batch), per_field_content(module, batch)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-4)
    weights = torch.randn_like(fused)
    grads = torch.autograd.grad((fused * weights).sum(), list(module.parameters()), allow_unused=True)
    expected = torch.autograd.grad((reference * weights).sum(), list(module.parameters()), allow_unused=True)
    for (name, _), got, want in zip(module.named_parameters(), grads, expected):
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0, name
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3, msg=name)
    mcc = module.fields["mcc"].embedding
    assert torch.count_nonzero(grads[[n for n, _ in module.named_parameters()].index("fields.mcc.embedding.weight")]
                               [mcc.padding_idx]) == 0  # padding ids get no gradient


def test_absent_fields_cost_nothing_and_change_nothing():
    torch.manual_seed(1)
    module = FoundationEventEmbedding(tiny_config())
    batch = make_batch(batch_size=2, seq_len=5, lengths=[5, 3])
    assert "agg_amount_sum_bin" not in batch  # customer batches lack the aggregate field
    torch.testing.assert_close(module.content(batch), per_field_content(module, batch), rtol=1e-5, atol=1e-5)


def test_no_grad_tables_are_cached_and_follow_weight_changes():
    """Inference reuses the projected lookup tables (same output as with gradients) until a weight changes."""
    torch.manual_seed(0)
    module = FoundationEventEmbedding(tiny_config()).eval()
    batch = make_batch(batch_size=2, seq_len=5, lengths=[5, 2])
    with torch.inference_mode():
        first = module.content(batch)
        cached = module._tables_cache[1][0]
        again = module.content(batch)
    assert module._tables_cache[1][0] is cached  # reused, not recomputed
    assert not cached.is_inference()  # a plain tensor: usable outside inference mode, deep-copyable
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    torch.testing.assert_close(first, module.content(batch).detach(), rtol=0, atol=0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    (module.content(batch) ** 2).sum().backward()
    optimizer.step()  # in-place update: the parameters' versions move on
    with torch.no_grad():
        after = module.content(batch)
    assert module._tables_cache[1][0] is not cached
    torch.testing.assert_close(after, module.content(batch).detach(), rtol=0, atol=0)
    assert not torch.equal(after, first)
    state = {k: v + 1.0 for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    with torch.no_grad():
        loaded = module.content(batch)
    torch.testing.assert_close(loaded, module.content(batch).detach(), rtol=0, atol=0)
