"""Order-0 entropy of symbol arrays: what the integers a layer stores cost under the
model the entropy stage codes them with, without encoding them."""

from __future__ import annotations

import numpy as np

_BINCOUNT_LIMIT = 1 << 20  # larger alphabets are counted with np.unique (no huge histogram)


def bits_of_counts(counts: np.ndarray) -> float:
    """Order-0 entropy in bits of the symbols a histogram counts (sum of -log2 p per symbol)."""
    c = counts[counts > 0].astype(np.float64)
    return float((c * np.log2(c.sum() / c)).sum()) if c.size else 0.0


def order0_bits(symbols: np.ndarray, *, per_row: bool = False) -> float:
    """Bits of ``symbols`` (non-negative integers) under their own order-0 model: one
    table for the whole array, or with ``per_row`` one per slice of the first axis (the
    layout ``write_layer`` gives a tensor in ``table_per_row``). Tables not counted."""
    a = np.asarray(symbols)
    if not a.size:
        return 0.0
    rows = a.reshape(a.shape[0] if per_row and a.ndim else 1, -1)
    if int(rows.max()) >= _BINCOUNT_LIMIT:
        return sum(bits_of_counts(np.unique(row, return_counts=True)[1]) for row in rows)
    return sum(bits_of_counts(np.bincount(row)) for row in rows)
