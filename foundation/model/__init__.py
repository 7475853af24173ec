"""The payment-entity foundation model: config, event embedding, causal encoder, pretraining wrapper.

Importing this package registers the model with the transformers Auto classes, so
`AutoConfig`, `AutoModel` and `AutoModelForPreTraining` `.from_pretrained(dir)` work on a saved checkpoint.
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from foundation.batch import FIELD_KINDS, FieldSpec, parse_field_specs
from foundation.model.configuration import FoundationConfig
from foundation.model.modeling import (
    FoundationForPretraining,
    FoundationModel,
    FoundationModelOutput,
    FoundationPreTrainedModel,
    FoundationPretrainingOutput,
)
from foundation.model.presets import PRESETS, base, build_config, large, small, tiny

# exist_ok: re-importing (e.g. importlib.reload in a notebook) must not fail.
AutoConfig.register(FoundationConfig.model_type, FoundationConfig, exist_ok=True)
AutoModel.register(FoundationConfig, FoundationModel, exist_ok=True)
AutoModelForPreTraining.register(FoundationConfig, FoundationForPretraining, exist_ok=True)

__all__ = [
    "FIELD_KINDS",
    "PRESETS",
    "FieldSpec",
    "FoundationConfig",
    "FoundationForPretraining",
    "FoundationModel",
    "FoundationModelOutput",
    "FoundationPreTrainedModel",
    "FoundationPretrainingOutput",
    "base",
    "build_config",
    "large",
    "parse_field_specs",
    "small",
    "tiny",
]
