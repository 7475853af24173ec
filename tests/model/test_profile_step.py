"""scripts/profile_step.py: the profile tables of a few tiny training steps."""


import torch

from foundation.model import FoundationForPretraining
from tests.model.batches import make_batch, tiny_config
from tests.scripts import load_script


def _script():
    return load_script("profile_step")


def test_op_kinds():
    script = _script()
    assert script.category("aten::addmm") == script.category("aten::mm") == "matmul"
    assert script.category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention kernel"
    assert script.category("aten::gelu") == "other"


def test_profile_of_tiny_steps_has_phases_ops_and_shares_that_add_up():
    script = _script()
    torch.manual_seed(0)
    model = FoundationForPretraining(tiny_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    profiler, wall, events = script.profiled_steps(lambda: make_batch(batch_size=4, seq_len=8), model, optimizer,
                                                   steps=2, warmup=1)
    assert wall > 0 and events > 0
    text = script.markdown(profiler, wall, events, steps=2, top=5, title="tiny")
    lines = text.splitlines()
    assert lines[0] == "### tiny"
    for phase in script.PHASES:
        assert any(line.startswith(f"| {phase} | ") for line in lines)
    assert sum(line.startswith("| `aten::") for line in lines) == 5
    shares = [float(line.split("|")[2].strip().rstrip("%")) for line in lines
              if line.startswith(("| matmul |", "| attention kernel |", "| other |"))]
    assert len(shares) == 3 and abs(sum(shares) - 100) < 0.5
    assert shares[0] > 0  # a transformer step multiplies matrices
