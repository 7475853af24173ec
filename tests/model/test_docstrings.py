"""The docstring examples of the model package run as written."""

import doctest

import pytest

from foundation.model import configuration, embeddings, modeling


@pytest.mark.parametrize("module", [configuration, embeddings, modeling])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
