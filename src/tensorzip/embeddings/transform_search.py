"""Scores of queries against a quantized collection without decoding its vectors.

A decoded vector is ``x = mean + B @ (offset + step * z)`` (``z`` the stored integers),
divided by its norm for a unit-norm collection. So for a query ``q``

    q . x = (q . mean + (B^T q) . offset + sum_j (B^T q)_j step_j z_j) / |x|

The query is projected once (``B^T q``, d' numbers), and each vector costs d' products
with its stored integers, read straight from the symbols (native ``symbol_scores``);
nothing of the collection is decoded per query. Why: decoding 30K x 384 vectors to score
one query took 110-160 ms; this takes a few. The norms ``|x|`` (and ``|x|^2`` for L2)
are computed once, when the scorer is made, from one pass of decoding in blocks.

The scores equal those of the decoded vectors up to float32 rounding (the sums run in
another order), so a tie at the k-th place may resolve the other way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import _native
from ..codecs import checked_threads
from ..errors import TensorzipError
from ..quantization import unzigzag_float32
from .code import DECODE_BLOCK_ROWS, EmbeddingCode
from .packed_symbols import PackedSymbols
from .search import METRICS

# Up to this many queries, scores come from the native kernel over the stored symbols;
# above, a block of vectors is widened to float32 once and multiplied by all queries (BLAS).
NATIVE_QUERIES = 16
# Vectors scored per block on the native path: bounds the (queries x vectors) score block.
NATIVE_BLOCK_ROWS = 65536


class CodeScorer:
    """Scores (higher is better) of queries against every vector of ``code``."""

    def __init__(self, code: EmbeddingCode, threads: int | None = None, exact_norms: bool = True):
        """``exact_norms=False`` (the solver's screen of a candidate, never a recorded figure):
        each decoded vector's norm from its coordinates, ``|y|^2 + 2 y.(D^T m) + |m|^2``, which
        holds for orthonormal directions D up to float rounding, instead of decoding it."""
        self.code = code
        self.threads = checked_threads(threads)
        # The packed rows of an opened collection, or a candidate's plain symbols in the solver.
        self._symbols = code.symbols if isinstance(code.symbols, PackedSymbols) else np.ascontiguousarray(code.symbols)
        self._directions = None if code.directions is None else code.directions.astype(np.float32)
        unscaled = self._exact_norms() if exact_norms else self._norms_from_coordinates()
        norms = np.sqrt(unscaled)
        # What the decoded vectors' scores are divided by, and their squared norms as decoded.
        self._divisor = (np.where(norms > 0, norms, 1.0) if code.unit_norm else np.ones_like(norms)).astype(np.float32)
        self._squared = (np.where(norms > 0, 1.0, 0.0) if code.unit_norm else unscaled).astype(np.float32)

    def _norms_from_coordinates(self) -> np.ndarray:
        code = self.code
        mean = np.asarray(code.mean, dtype=np.float64)
        towards_mean = (self._directions.T.astype(np.float64) @ mean if self._directions is not None
                        else mean[code.dims]).astype(np.float32)
        unscaled = np.empty(code.count, dtype=np.float64)
        for start in range(0, code.count, DECODE_BLOCK_ROWS):
            stop = min(code.count, start + DECODE_BLOCK_ROWS)
            y = code.coordinates(start, stop)
            unscaled[start:stop] = np.einsum("ij,ij->i", y, y, dtype=np.float64) + 2.0 * (y @ towards_mean)
        return np.maximum(unscaled + float(mean @ mean), 0.0)

    def _exact_norms(self) -> np.ndarray:
        """Squared norms of the decoded vectors (before unit-norm scaling), as decoded."""
        code = self.code
        unscaled = np.empty(code.count, dtype=np.float64)
        # The decoded vectors (before unit-norm scaling) block by block, as EmbeddingCode.decode
        # computes them, into one reused buffer: fresh memory per block cost the solver a tenth.
        buffer = np.empty((min(code.count, DECODE_BLOCK_ROWS), code.dim), dtype=np.float32)
        for start in range(0, code.count, DECODE_BLOCK_ROWS):
            stop = min(code.count, start + DECODE_BLOCK_ROWS)
            block = buffer[: stop - start]
            y = code.coordinates(start, stop)
            if self._directions is not None:
                np.matmul(y, self._directions.T, out=block)
                block += code.mean
            else:
                block[...] = code.mean
                block[:, code.dims] += y
            unscaled[start:stop] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
        return unscaled

    def _weights(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w, c) with q . x_unscaled = c + w . z for every stored vector."""
        code = self.code
        projected = queries @ self._directions if self._directions is not None else queries[:, code.dims]
        weights = np.ascontiguousarray(projected * code.step, dtype=np.float32)
        constants = (queries @ code.mean + projected @ code.offset).astype(np.float32)
        return weights, constants

    def score_blocks(self, queries: np.ndarray, metric: str) -> Iterator[tuple[int, np.ndarray]]:
        """(first vector, scores (Q, rows)) over the collection, as ``search.scores`` gives
        on decoded blocks: inner product, or minus the squared L2 distance."""
        if metric not in METRICS:
            raise TensorzipError(f"metric must be one of {METRICS}, got {metric!r}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        weights, constants = self._weights(q)
        code = self.code
        native = len(q) <= NATIVE_QUERIES
        rows = NATIVE_BLOCK_ROWS if native else DECODE_BLOCK_ROWS
        if not native:  # the constants ride along as one more coordinate, equal to 1
            weights = np.ascontiguousarray(np.concatenate([weights, constants[:, None]], axis=1))
        for start in range(0, code.count, rows):
            stop = min(code.count, start + rows)
            if native:
                dots = np.empty((len(q), stop - start), dtype=np.float32)
                if isinstance(self._symbols, PackedSymbols):
                    self._symbols.scores(start, stop, weights, dots, self.threads)
                else:
                    _native.symbol_scores(self._symbols, self._symbols.itemsize, self._symbols.shape[0], code.count,
                                          start, stop, weights, len(q), dots, self.threads)
                dots += constants[:, None]
                dots /= self._divisor[None, start:stop]
            else:
                # Many queries: each vector's integers (and its 1) divided by its norm once, then
                # one matrix product gives the scores, with no pass over the (Q, rows) result.
                integers = np.empty((weights.shape[1], stop - start), dtype=np.float32)
                integers[:-1] = unzigzag_float32(self._symbols[:, start:stop])
                integers[-1] = 1.0
                integers /= self._divisor[None, start:stop]
                dots = weights @ integers
            if metric == "ip":
                yield start, dots
            else:
                yield start, 2.0 * dots - self._squared[None, start:stop] - np.einsum("ij,ij->i", q, q)[:, None]
