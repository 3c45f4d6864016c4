"""Weight matrices on a uniform grid, the quantizer entropy coding pays for.

Each weight gets the step ``delta / sqrt(r_i c_j)``, where ``r_i c_j`` is how
much a squared error in it costs at the model's output (1 without calibration:
plain weight MSE). A column factor fits a layer's inputs: the output error of
``W x`` is ``sum_ij dW_ij^2 E[x_j^2]``; a row factor fits an embedding table,
whose rows matter as often as their tokens occur. Every weight then costs the
same output error per bit, which at high rate is the optimal allocation within
the matrix, and across matrices too when they share ``delta`` (equal slope: the
Lagrangian solution; ``codec.py`` finds ``delta`` for the budget).

The integers are stored relative to each row's median (output channels differ in
offset, not in the step they need), zigzag-coded, and entropy-coded; nothing is
packed to a fixed width. Rounding is to nearest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quantization import dequantize, quantize
from ..quantization.grid import narrowest

SYMBOL_BITS = 32  # zigzag integers up to 31 bits and a sign (uint32 symbols at most)
# Weights quantized (and decoded to measure their error) at once: a block of whole rows, so the
# float64 temporaries of a 30,000-row embedding stay ~50 MB instead of ~400.
BLOCK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class GridMatrix:
    """A quantized matrix as stored: symbols relative to each row's median, and the steps."""

    symbols: np.ndarray  # uint8/uint16/uint32 [rows, cols]: zigzag of (integer - row offset)
    row_offset: np.ndarray  # int32 [rows]
    column_step: np.ndarray  # float32 [cols]
    row_step: np.ndarray  # float32 [rows]: the step of weight (i, j) is row_step[i] * column_step[j]

    def steps(self) -> np.ndarray:
        """The step of every weight, float32 [rows, cols]."""
        return self.row_step[:, None] * self.column_step[None, :]

    def decode(self) -> np.ndarray:
        """The grid points, float32 [rows, cols]."""
        return dequantize(self.symbols, self.steps(), self.row_offset[:, None])


MAX_FACTOR_RANGE = float(1 << 24)  # largest / smallest step of one matrix (sensitivity range 2^48)


def _factor(weights: np.ndarray | None, n: int, what: str) -> np.ndarray:
    """``1 / sqrt(w)`` per row or column (1 without weights); entries no input ever
    reached (w = 0) get the largest factor of the others."""
    if weights is None:
        return np.ones(n, np.float32)
    w = np.asarray(weights, np.float64).reshape(-1)
    if w.shape[0] != n or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{what} sensitivity must be {n} finite values >= 0, got {w.shape[0]}")
    positive = w[w > 0]
    smallest = positive.min() if positive.size else 1.0
    with np.errstate(over="ignore", divide="ignore"):
        factor = (1 / np.sqrt(np.maximum(w, smallest))).astype(np.float32)
    # A step of 0 or inf (sensitivities of 1e300 or 1e-300) would divide by zero or decode to
    # NaN; a range of steps beyond 2^24 puts some weights below float32's resolution of others.
    if not (np.all(np.isfinite(factor)) and np.all(factor > 0)):
        raise ValueError(f"{what} sensitivities from {smallest:.3g} to {w.max():.3g} make grid steps of 0 or "
                         "infinity in float32: scale them toward 1")
    if factor.max() > MAX_FACTOR_RANGE * factor.min():
        raise ValueError(f"{what} sensitivities span {smallest:.3g} to {w.max():.3g}, over the "
                         f"{MAX_FACTOR_RANGE ** 2:.3g}x range one grid takes: clip the smallest")
    return factor


def grid_steps(delta: float, shape: tuple[int, int], rows: np.ndarray | None = None,
               columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row_step, column_step): ``delta / sqrt(r_i)`` and ``1 / sqrt(c_j)`` in float32."""
    return (np.float32(delta) * _factor(rows, shape[0], "row")).astype(np.float32), _factor(columns, shape[1],
                                                                                              "column")


def quantize_matrix(w: np.ndarray, row_step: np.ndarray, column_step: np.ndarray) -> GridMatrix:
    """Round a [rows, cols] matrix to its grid; ValueError when an integer would not
    fit 31 bits (the step is too fine for the weights' range). Symbols are as narrow
    as the largest allows: uint8, uint16 or uint32. The division runs in float64, on
    the weights rounded to float32 (the arithmetic format 1 was written with), a block of
    rows at a time (each row's median is its own, so blocks change no integer)."""
    rows, columns = w.shape
    codes = np.empty((rows, columns), np.uint32)
    offsets = np.empty(rows, np.int32)
    block = max(1, BLOCK_ELEMENTS // max(1, columns))
    for first in range(0, rows, block):
        part = slice(first, first + block)
        steps = row_step[part, None].astype(np.float64) * column_step[None, :]
        code = quantize(np.asarray(w[part], np.float32), steps, precision=np.float64, offset_axis=1,
                        max_bits=SYMBOL_BITS)
        assert code.offset is not None
        codes[part] = code.symbols
        offsets[part] = code.offset.reshape(-1)
    return GridMatrix(narrowest(codes, SYMBOL_BITS), offsets, column_step.astype(np.float32),
                      row_step.astype(np.float32))


def matrix_errors(original: np.ndarray, q: GridMatrix) -> tuple[float, float, bool]:
    """(relative RMS error, max abs error, whether every decoded value is finite where the
    original is) of ``q`` decoded to ``original``'s dtype, a block of rows at a time."""
    rows, columns = original.shape
    block = max(1, BLOCK_ELEMENTS // max(1, columns))
    squared = norm = largest = 0.0
    finite = True
    for first in range(0, rows, block):
        part = slice(first, first + block)
        steps = q.row_step[part, None] * q.column_step[None, :]
        decoded = dequantize(q.symbols[part], steps, q.row_offset[part, None]).astype(original.dtype)
        a, b = original[part].astype(np.float64), decoded.astype(np.float64)
        finite = finite and bool(np.array_equal(np.isfinite(a), np.isfinite(b)))
        diff = a - b
        squared += float(np.dot(diff.reshape(-1), diff.reshape(-1)))
        norm += float(np.dot(a.reshape(-1), a.reshape(-1)))
        largest = max(largest, float(np.abs(diff).max(initial=0.0)))
    return (float(np.sqrt(squared / norm)) if norm else 0.0), largest, finite
