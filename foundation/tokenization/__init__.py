"""EventTokenizer: fitted field encoders that turn sequence tables into model-ready integer/float lists.

See docs/architecture.md sections 3-4 for the input and output tables.
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
