"""Analytic training FLOPs per event (the MFU numerator of scripts/gpu_throughput.py)."""

import pytest
from torch import nn

from foundation.model import FoundationForPretraining
from foundation.model.flops import attention_flops_per_event, matmul_parameters, training_flops_per_event
from tests.model.batches import tiny_config


def test_matmul_parameters_count_matrices_not_lookups_or_vectors():
    module = nn.Sequential(nn.Embedding(100, 4), nn.Linear(4, 3), nn.LayerNorm(3), nn.GRU(3, 5))
    # Linear 4x3; GRU weight_ih 15x3 and weight_hh 15x5; no embedding table, bias or norm.
    assert matmul_parameters(module) == 12 + 45 + 75


@pytest.mark.parametrize("encoder_type", ["transformer", "gru", "mingru"])
def test_flops_per_event_follow_six_n_plus_attention(encoder_type):
    model = FoundationForPretraining(tiny_config(encoder_type=encoder_type, objectives={"next_event": 1.0}))
    flops = training_flops_per_event(model, window=64)
    assert flops.backbone_passes == 1
    assert flops.backbone_parameters == matmul_parameters(model.foundation) > 0
    expected_attention = 12 * 2 * 32 * 64 if encoder_type == "transformer" else 0
    assert flops.attention == attention_flops_per_event(model.config, 64) == expected_attention
    assert flops.total == 6 * (flops.backbone_parameters + flops.head_parameters) + expected_attention


def test_masked_objective_runs_the_backbone_twice():
    single = FoundationForPretraining(tiny_config(objectives={"next_event": 1.0}))
    double = FoundationForPretraining(tiny_config(objectives={"next_event": 1.0, "masked": 0.0}))
    one, two = training_flops_per_event(single, 64), training_flops_per_event(double, 64)
    assert (one.backbone_passes, two.backbone_passes) == (1, 2)
    assert two.total - 6 * two.head_parameters == pytest.approx(2 * (one.total - 6 * one.head_parameters))
