"""Subword encoder for free-text fields (merchant descriptors and the like), on HF ``tokenizers``.

A small lowercase BPE model is trained on the distinct text values of the pretraining period; each event's
text becomes exactly ``max_tokens`` ids (truncated, 0-padded). Descriptors repeat a lot, so encoding
deduplicates the flat values, runs the Rust batch encoder once per distinct value and gathers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from foundation.tokenization.encoders import ValueCounter, as_string

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"


def train_subword_tokenizer(texts: list[str], vocab_size: int = 2000) -> Tokenizer:
    """Train a lowercase BPE tokenizer with [PAD] = 0 and [UNK] = 1.

    Digits are split one by one so store numbers ("SHELL OIL 5744") do not each claim a vocabulary slot.

    Args:
        texts: training strings (each distinct value once).
        vocab_size: target vocabulary size including the special tokens (smaller corpora give fewer).
    Returns:
        The trained ``tokenizers.Tokenizer`` (no padding/truncation configured).
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD_TOKEN, UNK_TOKEN], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tokenizer.token_to_id(PAD_TOKEN) != 0 or tokenizer.token_to_id(UNK_TOKEN) != 1:
        raise RuntimeError("subword tokenizer must map [PAD] to 0 and [UNK] to 1")
    return tokenizer


@dataclass
class TextEncoder:
    """``<name>_tokens``: ``max_tokens`` subword ids per event (0 = padding; a null text is all padding)."""

    name: str
    tokenizer: Tokenizer
    max_tokens: int = 8
    outcome: bool = False
    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"field {self.name!r}: max_tokens must be >= 1, got {self.max_tokens}")
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def output_columns(self) -> list[str]:
        return [f"{self.name}_tokens"]

    @property
    def file_name(self) -> str:
        return f"text_{self.name}.tokenizer.json"

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "vocab_size": self.vocab_size,
                "max_tokens": self.max_tokens, "outcome": self.outcome}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Args: texts, U strings. Returns (U, max_tokens) int32 ids, truncated on the right, 0-padded."""
        out = np.zeros((len(texts), self.max_tokens), dtype=np.int32)
        if not texts:
            return out
        for row, encoding in enumerate(self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)):
            ids = encoding.ids[: self.max_tokens]
            out[row, : len(ids)] = ids
        return out

    def encode(self, values: pa.Array, event_time_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Args: values (N,) flat strings. Returns {<name>_tokens: (N, max_tokens) int32}."""
        encoded = pc.dictionary_encode(as_string(values, self.name))
        distinct = encoded.dictionary.to_pylist()
        table = np.concatenate([self.encode_texts(distinct),
                                np.zeros((1, self.max_tokens), dtype=np.int32)])  # last row: null text
        index = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
        return {f"{self.name}_tokens": table[index]}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source_type": "text", "outcome": self.outcome,
                "max_tokens": self.max_tokens, "tokenizer_file": self.file_name}

    def save(self, directory: Path) -> None:
        self.tokenizer.save(str(Path(directory) / self.file_name))

    @classmethod
    def from_dict(cls, state: dict[str, Any], directory: Path) -> TextEncoder:
        path = Path(directory) / state["tokenizer_file"]
        if not path.is_file():
            raise FileNotFoundError(f"field {state['name']!r}: text tokenizer file {path} is missing")
        return cls(state["name"], Tokenizer.from_file(str(path)), int(state["max_tokens"]), bool(state["outcome"]))


class TextFitter:
    """Collects distinct text values; ``finish`` trains the subword model on the most frequent ones.

    Each distinct value counts once in training, so a handful of very frequent descriptors does not take
    the whole vocabulary; ``max_train_values`` bounds training time on huge corpora.
    """

    def __init__(self, name: str, vocab_size: int = 2000, max_tokens: int = 8, outcome: bool = False,
                 max_train_values: int = 1_000_000) -> None:
        self.name, self.vocab_size, self.max_tokens, self.outcome = name, vocab_size, max_tokens, outcome
        self.max_train_values = max_train_values
        self.counter = ValueCounter(name)

    def update(self, values: pa.Array, event_time_ms: np.ndarray) -> None:
        self.counter.update(values)

    def finish(self) -> TextEncoder:
        texts, _ = self.counter.most_common(1, self.max_train_values)
        return TextEncoder(self.name, train_subword_tokenizer(texts, self.vocab_size), self.max_tokens, self.outcome)
