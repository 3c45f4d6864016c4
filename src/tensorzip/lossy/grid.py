"""Weight matrices on a uniform grid, the quantizer entropy coding pays for.

A weight's error reaches a layer's output through its input column: the output
error of ``W x`` is ``sum_ij dW_ij^2 E[x_j^2]`` (inputs taken as uncorrelated), so
with a per-column sensitivity ``h_j = E[x_j^2]`` (from calibration inputs, or 1
for plain weight MSE) column j gets the step ``delta / sqrt(h_j)``. Every weight
then costs the same output error per bit, which at high rate is the optimal
allocation within the matrix, and across matrices too when they share ``delta``
(equal slope: the Lagrangian solution, see ``budget.py``).

The integers are stored relative to each row's median (output channels differ in
offset, not in the step they need), zigzag-coded, and entropy-coded; nothing is
packed to a fixed width. Rounding is to nearest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_SYMBOL = (1 << 16) - 1


@dataclass(frozen=True)
class GridMatrix:
    symbols: np.ndarray  # uint8/uint16 [rows, cols]: zigzag of (integer - row offset)
    row_offset: np.ndarray  # int32 [rows]
    column_step: np.ndarray  # float32 [cols]

    def decode(self) -> np.ndarray:
        s = self.symbols.astype(np.int64)
        integers = ((s >> 1) ^ -(s & 1)) + self.row_offset.astype(np.int64)[:, None]
        return integers.astype(np.float32) * self.column_step[None, :]


def column_steps(delta: float, sensitivity: np.ndarray | None, cols: int) -> np.ndarray:
    """``delta / sqrt(h_j)`` in float32 (h = 1 without a sensitivity); columns no input
    ever reached (h = 0) get the largest step of the others."""
    if sensitivity is None:
        return np.full(cols, delta, np.float32)
    h = np.asarray(sensitivity, np.float64).reshape(-1)
    if h.shape[0] != cols:
        raise ValueError(f"sensitivity has {h.shape[0]} entries for {cols} columns")
    positive = h[h > 0]
    floor = positive.min() if positive.size else 1.0
    return (delta / np.sqrt(np.maximum(h, floor))).astype(np.float32)


def quantize_matrix(w: np.ndarray, steps: np.ndarray) -> GridMatrix:
    """Round a [rows, cols] matrix to its columns' grids; ValueError when an integer
    would not fit 16 bits (the step is too fine for the weights' range)."""
    w32 = np.asarray(w, np.float32)
    n = np.rint(w32 / steps[None, :]).astype(np.int64)
    offset = np.floor(np.median(n, axis=1)).astype(np.int64) if n.size else np.zeros(n.shape[0], np.int64)
    relative = n - offset[:, None]
    zigzag = (relative << 1) ^ (relative >> 63)
    largest = int(zigzag.max(initial=0))
    if largest > _MAX_SYMBOL:
        raise ValueError(f"step too fine: integers up to {largest >> 1} need more than 16 bits")
    return GridMatrix(zigzag.astype(np.uint8 if largest < 256 else np.uint16), offset.astype(np.int32),
                      steps.astype(np.float32))
