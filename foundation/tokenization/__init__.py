"""EventTokenizer: fitted field encoders that turn sequence tables into model-ready integer/float lists.

Input: per-entity sequence tables (foundation.data.sequences); output: encoded sequences, one list column per batch key.
"""

from foundation.tokenization.encoders import CategoricalEncoder, NumericEncoder, TimeEncoder
from foundation.tokenization.text import TextEncoder
from foundation.tokenization.tokenizer import ENTITY_TYPES, FORMAT_VERSION, EventTokenizer

__all__ = [
    "ENTITY_TYPES",
    "FORMAT_VERSION",
    "CategoricalEncoder",
    "EventTokenizer",
    "NumericEncoder",
    "TextEncoder",
    "TimeEncoder",
]
