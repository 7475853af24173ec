"""The minGRU encoder: the parallel scan equals its step-by-step recurrence, it is causal, padding-proof, and
trains inside FoundationForPretraining."""

import doctest

import pytest
import torch

from foundation.model import FoundationForPretraining, FoundationModel, scan
from foundation.model import encoder as encoder_module
from foundation.model.encoder import MinGRUEncoder, build_encoder
from foundation.model.scan import MinGRU, log_linear_scan
from tests.model.batches import make_batch, tiny_config


def _encoder(dtype: torch.dtype = torch.float64, **overrides) -> MinGRUEncoder:
    torch.manual_seed(0)
    encoder = build_encoder(tiny_config(encoder_type="mingru", **overrides)).to(dtype)
    assert isinstance(encoder, MinGRUEncoder)
    return encoder.eval()


def _stepwise(encoder: MinGRUEncoder, x: torch.Tensor) -> torch.Tensor:
    """(B,T,H) outputs of the recurrence advanced one event at a time from the initial state."""
    state = encoder.initial_state(x.shape[0], dtype=x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        state, h_t = encoder.step(state, x[:, t])
        outputs.append(h_t)
    return torch.stack(outputs, dim=1)


def test_log_linear_scan_equals_the_recurrence_across_chunks():
    torch.manual_seed(1)
    a = torch.rand(3, 23, 5, dtype=torch.float64) * 0.98 + 0.01
    b = torch.rand(3, 23, 5, dtype=torch.float64) + 0.1
    expected, h = [], torch.zeros(3, 5, dtype=torch.float64)
    for t in range(23):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    expected = torch.stack(expected, dim=1)
    for chunk_size in (1, 4, 7, 64):  # several chunks (with a ragged last one) and a single chunk
        torch.testing.assert_close(log_linear_scan(a.log(), b.log(), chunk_size).exp(), expected)
    with pytest.raises(ValueError, match="chunk_size"):
        log_linear_scan(a.log(), b.log(), chunk_size=0)


def test_scan_stays_finite_when_the_gates_saturate_in_float32():
    # Decays of e^-30 per event: prod a_r underflows float32 within 3 events; the chunked log-space scan
    # keeps every state finite and positive, and the state still tracks the latest input.
    log_a = torch.full((1, 300, 2), -30.0)
    log_b = torch.zeros(1, 300, 2)
    h = log_linear_scan(log_a, log_b).exp()
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h, torch.ones_like(h))


@pytest.mark.parametrize("seq_len", [17, 150])  # one chunk, and several chunks (SCAN_CHUNK = 64)
def test_parallel_forward_equals_step_by_step_values_and_gradients(seq_len):
    encoder = _encoder(max_position=256)
    torch.manual_seed(2)
    x = torch.randn(3, seq_len, 32, dtype=torch.float64)
    x_parallel = x.clone().requires_grad_(True)
    x_steps = x.clone().requires_grad_(True)
    mask = torch.ones(3, seq_len, dtype=torch.bool)
    parallel = encoder(x_parallel, mask, torch.zeros(3, seq_len, dtype=torch.long))
    steps = _stepwise(encoder, x_steps)
    torch.testing.assert_close(parallel, steps, rtol=1e-6, atol=1e-8)
    weights = torch.randn_like(parallel)  # a loss that weighs every position and channel differently
    params = [p for p in encoder.parameters()]
    grads_parallel = torch.autograd.grad((parallel * weights).sum(), [x_parallel, *params])
    grads_steps = torch.autograd.grad((steps * weights).sum(), [x_steps, *params])
    for grad_parallel, grad_steps in zip(grads_parallel, grads_steps):
        torch.testing.assert_close(grad_parallel, grad_steps, rtol=1e-6, atol=1e-8)


def test_gate_bias_starts_with_a_spread_of_timescales_and_survives_model_init():
    model = FoundationModel(tiny_config(encoder_type="mingru"))
    layer = model.encoder.blocks[0].recurrence
    assert isinstance(layer, MinGRU)
    retention = torch.sigmoid(-layer.gate_bias.detach())
    assert retention.min() < 0.4 and retention.max() > 0.98  # time constants of 1 .. 64 events


def test_outputs_are_causal():
    encoder = _encoder()
    torch.manual_seed(3)
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7:] = torch.randn(2, 5, 32, dtype=torch.float64) * 3.0
    mask = torch.ones(2, 12, dtype=torch.bool)
    times = torch.zeros(2, 12, dtype=torch.long)
    reference, other = encoder(x, mask, times), encoder(changed, mask, times)
    assert torch.equal(reference[:, :7], other[:, :7])
    assert (reference[:, 7:] - other[:, 7:]).abs().max() > 1e-3


def test_padding_does_not_change_real_positions():
    model = FoundationModel(tiny_config(encoder_type="mingru")).eval()
    batch = make_batch(batch_size=3, seq_len=10, lengths=[10, 4, 1], seed=4)
    out = model(batch)
    for row, length in enumerate([10, 4, 1]):
        alone = {key: value[row:row + 1, :length] if value.dim() > 1 else value[row:row + 1]
                 for key, value in batch.items()}
        single = model(alone)
        torch.testing.assert_close(out.last_hidden_state[row, :length], single.last_hidden_state[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.entity_embedding[row], single.entity_embedding[0], atol=1e-6, rtol=1e-5)
    assert (out.last_hidden_state[1, 4:] == 0).all()


def test_pretraining_with_mingru_lowers_the_loss():
    torch.manual_seed(0)
    config = tiny_config(encoder_type="mingru", objectives={"next_event": 1.0, "masked": 0.5})
    model = FoundationForPretraining(config).train()
    batch = make_batch(batch_size=8, seq_len=16, seed=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(0)  # the same masked positions every step: only the weights change the loss
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]


def test_mingru_round_trips_through_save_and_load(tmp_path):
    model = FoundationModel(tiny_config(encoder_type="mingru")).eval()
    model.save_pretrained(tmp_path)
    loaded = FoundationModel.from_pretrained(tmp_path).eval()
    assert loaded.config.encoder_type == "mingru"
    batch = make_batch(batch_size=2, seq_len=8, seed=6)
    torch.testing.assert_close(loaded(batch).last_hidden_state, model(batch).last_hidden_state)


@pytest.mark.parametrize("module", [encoder_module, scan])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module is encoder_module:
        assert result.attempted > 0


def test_bfloat16_layer_scans_in_float32():
    torch.manual_seed(7)
    layer = MinGRU(16, 16)
    x = torch.randn(2, 200, 16)
    reference = layer(x)
    mixed = layer.to(torch.bfloat16)(x.to(torch.bfloat16))  # precision "bf16-true": weights in bf16 too
    assert mixed.dtype == torch.bfloat16
    # bf16 matmuls cost ~0.4% here; a scan in bf16 (8 mantissa bits for a cumulative sum) about ten times that.
    assert ((mixed.float() - reference).abs().mean() / reference.abs().mean()) < 0.01
