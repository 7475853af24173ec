"""What `transformers.AutoTokenizer.from_pretrained(<saved folder>)` meets in a saved tokenizer folder.

The EventTokenizer encodes payment events (tables), not text, so it is not a `PreTrainedTokenizerBase`
and AutoTokenizer cannot return it (pipelines, padding and decoding would fail later and less clearly).
Without help, transformers falls back to its text backend and fails with a misleading sentencepiece
message. `tokenizer_config.json` therefore carries an `auto_map` entry for AutoTokenizer whose target
(a tiny module written next to it) raises one error naming the right loader:
`foundation.tokenization.EventTokenizer.from_pretrained(dir)`. Transformers first asks for
`trust_remote_code=True`, as for `AutoModel` on the same folder.
"""

from __future__ import annotations

from pathlib import Path

REDIRECT_FILE = "tokenization_foundation.py"
AUTO_MAP = {"AutoTokenizer": ["tokenization_foundation.EventTokenizerRedirect", None]}
_REDIRECT_CODE = '''"""AutoTokenizer's target for this folder: the tokenizer here is a payment EventTokenizer, not a text
tokenizer, so this class only says how to load it (pip install the project that wrote this folder)."""


class EventTokenizerRedirect:
    """Raises the error that names foundation.tokenization.EventTokenizer.from_pretrained."""

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoTokenizer"):
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        raise ValueError(
            f"{pretrained_model_name_or_path} holds a payment-event tokenizer, which AutoTokenizer cannot load "
            f"(it encodes event tables, not text): use "
            f"foundation.tokenization.EventTokenizer.from_pretrained({str(pretrained_model_name_or_path)!r})"
        )
'''


def write_redirect(directory: str | Path) -> None:
    """Write the module that `AUTO_MAP` points at into ``directory``."""
    (Path(directory) / REDIRECT_FILE).write_text(_REDIRECT_CODE)
