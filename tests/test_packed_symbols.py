"""The bit-packed symbols an open embedding collection keeps (embeddings/packed_symbols.py):
every width 0-16, any block of vectors, the same scores as the unpacked symbols, float for
float; layouts the native code would read out of bounds are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tensorzip.embeddings as tze
from tensorzip import _native
from tensorzip.embeddings.packed_symbols import PADDING, PackedSymbols
from tensorzip.embeddings.transform_search import CodeScorer


def _symbols(rng, dtype, widths, count):
    limits = np.array([(1 << w) - 1 for w in widths])
    symbols = (rng.random((len(widths), count)) * (limits[:, None] + 1)).astype(dtype)
    symbols[:, 0] = limits  # each row reaches its width exactly
    return symbols


@pytest.mark.parametrize("dtype, widths", [(np.uint8, range(0, 9)), (np.uint16, range(0, 17))])
@pytest.mark.parametrize("count", [1, 7, 8, 1_001, 4_096])
def test_every_block_unpacks_to_the_symbols(rng, dtype, widths, count):
    symbols = _symbols(rng, dtype, list(widths), count)
    packed = PackedSymbols(symbols)
    assert list(packed.widths) == list(widths)
    assert packed.data.nbytes == sum((count * w + 7) // 8 for w in widths) + PADDING
    assert np.array_equal(np.asarray(packed), symbols) and np.asarray(packed).dtype == dtype
    for start, stop in ((0, count), (count // 3, count), (1, max(1, count - 1)), (count, count)):
        assert np.array_equal(packed[:, start:stop], symbols[:, start:stop]), (start, stop)


@pytest.mark.parametrize("queries", [1, 3, 16])
def test_scores_equal_those_of_the_unpacked_symbols(rng, queries):
    symbols = _symbols(rng, np.uint16, [3, 0, 11, 16, 5, 8, 9, 1, 13, 4], 5_003)
    weights = rng.standard_normal((queries, 10)).astype(np.float32)
    for start, stop in ((0, 5_003), (512, 4_001), (7, 5_000)):
        got = np.empty((queries, stop - start), np.float32)
        PackedSymbols(symbols).scores(start, stop, weights, got, 2)
        want = np.empty_like(got)
        _native.symbol_scores(symbols, 2, 10, 5_003, start, stop, weights, queries, want, 2)
        assert got.tobytes() == want.tobytes(), (start, stop)


def test_an_opened_collection_searches_as_its_unpacked_symbols(rng):
    """The packed rows change nothing a user sees: the same scores, hits and decoded vectors."""
    base = rng.standard_normal((3_000, 48)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    collection = tze.open(tze.compress(base, recall=0.9, k=10, seed=0))
    code = collection._stored.code
    assert isinstance(code.symbols, PackedSymbols)
    plain = dataclasses.replace(code, symbols=np.asarray(code.symbols))
    queries = rng.standard_normal((40, 48)).astype(np.float32)
    for count in (1, 40):  # the native path and the matrix-product path
        packed_scores = [d for _, d in CodeScorer(code).score_blocks(queries[:count], "ip")]
        plain_scores = [d for _, d in CodeScorer(plain).score_blocks(queries[:count], "ip")]
        assert all(a.tobytes() == b.tobytes() for a, b in zip(packed_scores, plain_scores, strict=True))
    assert code.decode().tobytes() == plain.decode().tobytes()


def test_a_symbol_wider_than_its_row_is_refused(rng):
    symbols = np.array([[1, 2, 3]], dtype=np.uint8)
    out = np.zeros(1 + PADDING, np.uint8)
    with pytest.raises(ValueError, match="does not fit its width of 1 bits"):
        _native.pack_rows(symbols, 1, 1, 3, np.array([1], np.uint8), np.zeros(1, np.uint64), out)


@pytest.mark.parametrize("widths, starts, size, message", [
    ([17], [0], 64, "wider than 16 bits"),
    ([8, 8], [10, 0], 64, "overlap or are out of order"),
    ([8], [0], 10 + PADDING - 1, "run past the buffer"),
    ([8], [1 << 40], 64, "starts past the buffer"),
])
def test_layouts_that_would_read_out_of_bounds_are_refused(widths, starts, size, message):
    packed = np.zeros(size, np.uint8)
    widths, starts = np.array(widths, np.uint8), np.array(starts, np.uint64)
    out = np.empty((len(widths), 10), np.uint16)
    with pytest.raises(ValueError, match=message):
        _native.unpack_rows(packed, widths, starts, len(widths), 10, 0, 10, 2, out, 1)
    with pytest.raises(ValueError, match=message):
        _native.packed_symbol_scores(packed, widths, starts, len(widths), 10, 0, 10,
                                     np.ones((1, len(widths)), np.float32), 1, np.empty((1, 10), np.float32), 1)
