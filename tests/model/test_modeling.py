"""FoundationModel: shapes, causality, time handling, masking, missing fields, save/load."""

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining

from foundation.model import FoundationForPretraining, FoundationModel
from foundation.model.encoder import alibi_slopes, time_alibi_bias
from tests.model.batches import MS_PER_DAY, make_batch, tiny_config, tiny_fields

ENCODERS = [("transformer", "time_alibi"), ("transformer", "learned"), ("transformer", "none"), ("gru", "none"),
            ("mingru", "none")]


def _model(**overrides) -> FoundationModel:
    torch.manual_seed(0)
    return FoundationModel(tiny_config(**overrides)).eval()


@pytest.mark.parametrize(("encoder_type", "time_encoding"), ENCODERS)
def test_forward_shapes_padding_and_entity_embedding(encoder_type, time_encoding):
    model = _model(encoder_type=encoder_type, time_encoding=time_encoding)
    batch = make_batch(batch_size=3, seq_len=10, lengths=[10, 4, 1])
    out = model(batch)
    assert out.last_hidden_state.shape == (3, 10, 32)
    assert out.entity_embedding.shape == (3, 32)
    assert torch.isfinite(out.last_hidden_state).all()
    assert (out.last_hidden_state[1, 4:] == 0).all() and (out.last_hidden_state[2, 1:] == 0).all()
    assert out.last_hidden_state[1, :4].abs().sum(-1).gt(0).all()
    for row, length in enumerate([10, 4, 1]):
        torch.testing.assert_close(out.entity_embedding[row], out.last_hidden_state[row, length - 1])


def test_empty_row_gives_zero_embedding_not_nan():
    model = _model()
    out = model(make_batch(batch_size=2, seq_len=6, lengths=[6, 0]))
    assert torch.isfinite(out.last_hidden_state).all()
    assert (out.entity_embedding[1] == 0).all()


@pytest.mark.parametrize(("encoder_type", "time_encoding"), ENCODERS)
def test_output_at_i_depends_only_on_events_up_to_i(encoder_type, time_encoding):
    model = _model(encoder_type=encoder_type, time_encoding=time_encoding)
    batch = make_batch(batch_size=3, seq_len=12, lengths=[12, 12, 12], seed=1)
    # Change everything about events 6.. (content and time) ...
    changed = {key: value.clone() for key, value in batch.items()}
    changed["mcc"][:, 6:] = torch.randint(2, 14, (3, 6))
    changed["amount_value"][:, 6:] += 3.0
    changed["descriptor_tokens"][:, 6:] = torch.randint(2, 30, (3, 6, 4))
    changed["event_time"][:, 6:] += 5 * MS_PER_DAY
    changed["time_gap_bin"][:, 6:] = 3
    # ... and, separately, cut the sequences after event 5 (appending = the reverse).
    cut = {key: value.clone() for key, value in batch.items()}
    cut["lengths"][:] = 6
    cut["attention_mask"][:, 6:] = False
    reference = model(batch).last_hidden_state
    for other in (changed, cut):
        hidden = model(other).last_hidden_state
        assert (hidden[:, :6] - reference[:, :6]).abs().max() < 1e-6
    assert (model(changed).last_hidden_state[:, 6:] - reference[:, 6:]).abs().max() > 1e-3


def test_time_alibi_bias_is_causal_relative_and_log_scaled():
    event_time = torch.tensor([[0, 60_000, 3_660_000, 0]])  # 0, 1 min, 61 min, padding
    mask = torch.tensor([[True, True, True, False]])
    bias = time_alibi_bias(event_time, mask, num_heads=2)  # (1, 2, 4, 4)
    slopes = alibi_slopes(2)
    assert torch.isinf(bias[0, :, 0, 1:]).all() and torch.isinf(bias[0, :, 1, 2:]).all()  # causal
    assert torch.isinf(bias[0, :, 3, 3]).logical_not().all()  # padded query keeps its diagonal: no NaN row
    torch.testing.assert_close(bias[0, :, 2, 1], -slopes * torch.log1p(torch.tensor(60.0)))
    torch.testing.assert_close(bias[0, :, 1, 0], -slopes * torch.log1p(torch.tensor(1.0)))
    assert (bias[0, :, 2, 2] == 0).all()
    shifted = time_alibi_bias(event_time + 1_700_000_000_000, mask, num_heads=2)
    assert torch.equal(shifted[..., :3, :3], bias[..., :3, :3])


def test_time_alibi_model_is_relative_in_time_and_uses_real_gaps():
    # A larger init so that attention weights visibly move the outputs of an untrained model.
    model = _model(time_encoding="time_alibi", initializer_range=0.3)
    batch = make_batch(batch_size=2, seq_len=8, seed=2)
    reference = model(batch).last_hidden_state
    # A whole-week shift keeps hour and day-of-week, so only absolute time changes.
    shifted = {**batch, "event_time": batch["event_time"] + 7 * MS_PER_DAY}
    assert (model(shifted).last_hidden_state - reference).abs().max() < 1e-6
    # Moving one event in time (features untouched) changes the attention bias, hence later outputs.
    moved = {**batch, "event_time": batch["event_time"].clone()}
    moved["event_time"][:, 3] -= 2 * 3_600_000
    assert (model(moved).last_hidden_state[:, 4:] - reference[:, 4:]).abs().max() > 1e-4
    # Without the time bias, event_time itself is not an input.
    plain = _model(time_encoding="learned", initializer_range=0.3)
    assert (plain(moved).last_hidden_state - plain(batch).last_hidden_state).abs().max() == 0


def test_learned_positions_refuse_windows_longer_than_max_position():
    model = _model(time_encoding="learned", max_position=8)
    with pytest.raises(ValueError, match="exceeds max_position=8"):
        model(make_batch(batch_size=1, seq_len=9))


@pytest.mark.parametrize("event_combine", ["sum", "concat"])
def test_fields_absent_from_the_batch_contribute_nothing(event_combine):
    model = _model(event_combine=event_combine)
    batch = make_batch(batch_size=2, seq_len=6)  # has no agg_amount_sum
    out = model(batch)
    assert torch.isfinite(out.last_hidden_state).all()
    # A batch carrying the field differs from one without it.
    with_agg = make_batch(fields=tiny_fields(), batch_size=2, seq_len=6)
    without_agg = {k: v for k, v in with_agg.items() if not k.startswith("agg_amount_sum")}
    assert (model(with_agg).last_hidden_state - model(without_agg).last_hidden_state).abs().max() > 1e-4


def test_concat_combine_equals_concatenating_fields_then_projecting():
    embeddings = _model(event_combine="concat").embeddings
    batch = make_batch(batch_size=2, seq_len=5)  # agg_amount_sum absent: a zero block in the concatenation
    parts = [
        module(batch) if name != "agg_amount_sum" else torch.zeros(2, 5, 32)
        for name, module in embeddings.fields.items()
    ]
    expected = embeddings.projection(torch.cat(parts, dim=-1))
    torch.testing.assert_close(embeddings.content(batch), expected)


def test_batch_without_any_model_field_or_with_half_a_field_is_a_clear_error():
    model = _model()
    batch = make_batch(batch_size=2, seq_len=6)
    no_fields = {k: v for k, v in batch.items() if k.split("_")[0] not in ("event", "mcc", "amount", "descriptor")
                 or k == "event_time"}
    with pytest.raises(KeyError, match="none of the model's fields"):
        model(no_fields)
    half = {k: v for k, v in batch.items() if k != "amount_value"}
    with pytest.raises(KeyError, match="field 'amount' \\(numeric\\) is partly in the batch: missing \\['amount_value'\\]"):
        model(half)
    with pytest.raises(KeyError, match="batch is missing \\['hour'\\]"):
        model({k: v for k, v in batch.items() if k != "hour"})


@pytest.mark.parametrize("encoder_type", ["transformer", "gru", "mingru"])
def test_masked_positions_hide_content_but_keep_time(encoder_type):
    model = _model(encoder_type=encoder_type)
    batch = make_batch(batch_size=2, seq_len=8, lengths=[8, 8], seed=3)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 4] = True
    reference = model(batch, mask_positions=mask).last_hidden_state
    assert (reference - model(batch).last_hidden_state)[:, 4:].abs().max() > 1e-4  # masking does something
    # The masked event's content is invisible ...
    content = {key: value.clone() for key, value in batch.items()}
    content["mcc"][:, 4] = 1
    content["amount_bin"][:, 4] = 2
    content["descriptor_tokens"][:, 4] = 7
    assert (model(content, mask_positions=mask).last_hidden_state - reference).abs().max() < 1e-6
    # ... its time features are not.
    timing = {key: value.clone() for key, value in batch.items()}
    timing["hour"][:, 4] = timing["hour"][:, 4] % 24 + 1
    timing["time_gap_bin"][:, 4] = timing["time_gap_bin"][:, 4] % 10 + 2
    assert (model(timing, mask_positions=mask).last_hidden_state[:, 4] - reference[:, 4]).abs().max() > 1e-4


def test_mask_positions_shape_is_checked():
    with pytest.raises(ValueError, match="mask_positions has shape"):
        _model()(make_batch(batch_size=2, seq_len=6), mask_positions=torch.zeros(2, 5, dtype=torch.bool))


@pytest.mark.parametrize(("encoder_type", "time_encoding"), [("transformer", "time_alibi"), ("gru", "none"), ("mingru", "none")])
def test_save_and_load_give_identical_outputs(tmp_path, encoder_type, time_encoding):
    model = _model(encoder_type=encoder_type, time_encoding=time_encoding, index_position=True)
    batch = make_batch(batch_size=3, seq_len=8)
    model.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".ckpt")) for name in files)
    expected = model(batch).last_hidden_state
    for loaded in (FoundationModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is FoundationModel
        loaded.eval()
        torch.testing.assert_close(loaded(batch).last_hidden_state, expected, rtol=0, atol=0)


def test_pretraining_checkpoint_loads_as_base_model_and_back(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(objectives={"next_event": 1.0, "masked": 0.5, "contrastive": 0.2})
    pretraining = FoundationForPretraining(config).eval()
    batch = make_batch(batch_size=4, seq_len=8, views_per_entity=2)
    pretraining.save_pretrained(tmp_path / "pretrain")
    base = FoundationModel.from_pretrained(tmp_path / "pretrain").eval()
    expected = pretraining.foundation(batch).last_hidden_state
    torch.testing.assert_close(base(batch).last_hidden_state, expected, rtol=0, atol=0)
    # And back: a base checkpoint starts a pretraining model with the same backbone (fresh heads).
    base.save_pretrained(tmp_path / "base")
    again = AutoModelForPreTraining.from_pretrained(tmp_path / "base").eval()
    assert type(again) is FoundationForPretraining
    torch.testing.assert_close(again.foundation(batch).last_hidden_state, expected, rtol=0, atol=0)
    reloaded = FoundationForPretraining.from_pretrained(tmp_path / "pretrain").eval()
    torch.testing.assert_close(reloaded(batch).losses["next_event"], pretraining(batch).losses["next_event"])


def test_pretraining_loss_is_the_weighted_sum_and_every_parameter_learns():
    torch.manual_seed(0)
    weights = {"next_event": 1.0, "masked": 0.5, "contrastive": 0.2}
    model = FoundationForPretraining(tiny_config(objectives=weights))
    batch = make_batch(fields=tiny_fields(), batch_size=4, seq_len=8, views_per_entity=2)
    out = model(batch)
    assert set(out.losses) == set(weights)
    torch.testing.assert_close(out.loss, sum(weights[name] * loss for name, loss in out.losses.items()))
    assert "next_event/mcc_acc" in out.metrics and "masked/mask_rate" in out.metrics
    out.loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []


def test_every_parameter_gets_a_gradient_even_when_unused_so_ddp_needs_no_unused_search():
    torch.manual_seed(0)
    model = FoundationForPretraining(tiny_config(objectives={"next_event": 1.0}))
    out = model(make_batch(batch_size=2, seq_len=6))  # no agg_amount_sum, no masked pass
    out.loss.backward()
    assert model.foundation.embeddings.mask_embedding.grad is not None
    assert (model.foundation.embeddings.mask_embedding.grad == 0).all()
    assert all(p.grad is not None for p in model.parameters())
    torch.testing.assert_close(out.loss, out.losses["next_event"])


def test_unknown_or_missing_objectives_are_clear_errors():
    with pytest.raises(ValueError, match="unknown objective 'mlm'; valid objectives: \\['next_event', 'masked', 'contrastive', 'horizon', 'recent'\\]"):
        FoundationForPretraining(tiny_config(objectives={"mlm": 1.0}))
    with pytest.raises(ValueError, match="objectives is empty"):
        FoundationForPretraining(tiny_config(objectives={}))
