"""`transformers.AutoTokenizer` on a saved EventTokenizer folder fails with an error naming the right loader."""

from __future__ import annotations

import json

import pytest
import transformers

from foundation.tokenization import EventTokenizer
from tests.tokenization.fixtures import customer_table, make_schema


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    EventTokenizer.fit([customer_table()], make_schema(), progress=False, text_vocab_size=60).save_pretrained(directory)
    return directory


def test_autotokenizer_names_the_event_tokenizer_loader(saved):
    with pytest.raises(ValueError, match=r"EventTokenizer\.from_pretrained\(") as error:
        transformers.AutoTokenizer.from_pretrained(str(saved), trust_remote_code=True)
    assert "sentencepiece" not in str(error.value)
    assert str(saved) in str(error.value)


def test_autotokenizer_without_trust_remote_code_asks_for_it(saved):
    with pytest.raises(ValueError, match="trust_remote_code=True") as error:
        transformers.AutoTokenizer.from_pretrained(str(saved))
    assert "sentencepiece" not in str(error.value)


def test_auto_map_entry_leaves_the_own_loader_untouched(saved):
    assert json.loads((saved / "tokenizer_config.json").read_text())["auto_map"]["AutoTokenizer"][0] \
        == "tokenization_foundation.EventTokenizerRedirect"
    assert EventTokenizer.from_pretrained(saved).to_dict()["tokenizer_class"] == "EventTokenizer"
