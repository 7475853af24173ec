"""FoundationConfig validation, serialisation and the size presets."""

import re

import pytest
from huggingface_hub.errors import StrictDataclassError
from omegaconf import OmegaConf
from transformers import AutoConfig

from foundation.model import FoundationConfig, build_config, parse_field_specs, small
from tests.model.batches import ENTITY_TYPES, tiny_config, tiny_fields


def test_config_round_trip_keeps_fields_and_architecture(tmp_path):
    config = tiny_config(encoder_type="gru", objectives={"next_event": 1.0, "masked": 0.5})
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, FoundationConfig)
    assert loaded.fields == tiny_fields()
    assert loaded.entity_types == ENTITY_TYPES
    assert (loaded.hidden_size, loaded.num_layers, loaded.encoder_type) == (32, 2, "gru")
    assert loaded.objectives == {"next_event": 1.0, "masked": 0.5}
    # HF-wide attribute names alias ours.
    assert loaded.num_hidden_layers == 2 and loaded.num_attention_heads == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "mcc", "kind": "category", "vocab_size": 5}, "field 'mcc': kind 'category'"),
        ({"name": "mcc", "kind": "categorical"}, "field 'mcc' (categorical): 'vocab_size'"),
        ({"name": "amount", "kind": "numeric", "num_bins": 1}, "field 'amount' (numeric): 'num_bins'"),
        ({"name": "descriptor", "kind": "text", "vocab_size": 9}, "'max_tokens'"),
        ({"kind": "numeric", "num_bins": 4}, "has no 'name'"),
    ],
)
def test_bad_field_spec_names_the_field_and_problem(spec, message):
    with pytest.raises(StrictDataclassError, match=re.escape(message)):
        tiny_config(fields=[spec, {"name": "time", "kind": "time", "num_bins": 5}])


def test_duplicate_and_double_time_specs_are_rejected():
    with pytest.raises(ValueError, match="repeated: \\['mcc'\\]"):
        parse_field_specs([{"name": "mcc", "kind": "categorical", "vocab_size": 5}] * 2)
    with pytest.raises(ValueError, match="at most one field spec of kind 'time'"):
        parse_field_specs([{"name": "time", "kind": "time", "num_bins": 5},
                           {"name": "t2", "kind": "time", "num_bins": 5}])


def test_hidden_size_must_divide_into_heads():
    with pytest.raises(StrictDataclassError, match="multiple of num_heads"):
        tiny_config(hidden_size=30, num_heads=4)


def test_small_preset_sizes_and_overrides():
    config = small(tiny_fields(), ENTITY_TYPES, encoder_type="gru", dropout=0.0)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.max_position) == (128, 4, 4, 256)
    assert config.encoder_type == "gru" and config.dropout == 0.0


def test_build_config_presets_sizes():
    large = build_config("large", tiny_fields(), ENTITY_TYPES)
    assert (large.hidden_size, large.num_layers, large.num_heads, large.max_position) == (768, 12, 12, 512)
    base = build_config("base", tiny_fields(), ENTITY_TYPES)
    assert (base.hidden_size, base.num_layers, base.num_heads) == (256, 6, 8)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*'small', 'base', 'large'"):
        build_config("huge", tiny_fields(), ENTITY_TYPES)


def test_unknown_override_is_an_error_not_a_silent_attribute():
    with pytest.raises(ValueError, match="unknown FoundationConfig field\\(s\\) \\['hiden_size'\\]"):
        small(tiny_fields(), ENTITY_TYPES, hiden_size=64)


def test_preset_accepts_hydra_containers():
    # Hydra passes DictConfig/ListConfig; config.json must still get plain dicts and lists.
    node = OmegaConf.create({"fields": tiny_fields(), "objectives": {"next_event": 1.0, "contrastive": 0.2}})
    config = small(node.fields, OmegaConf.create(ENTITY_TYPES), objectives=node.objectives)
    assert type(config.fields) is list and type(config.fields[0]) is dict
    assert config.objectives == {"next_event": 1.0, "contrastive": 0.2}
    assert type(config.objectives) is dict
