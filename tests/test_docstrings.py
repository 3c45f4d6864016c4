"""The examples in the public modules' docstrings run and show what they claim."""

from __future__ import annotations

import doctest

import pytest

import tensorzip.arrays
import tensorzip.embeddings
import tensorzip.kv
import tensorzip.lossy


@pytest.mark.parametrize("module", [tensorzip.arrays, tensorzip.embeddings, tensorzip.kv, tensorzip.lossy])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
