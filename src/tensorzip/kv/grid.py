"""One uniform grid per layer: the quantizer that entropy coding pays for.

Min-max groups (``groups.py``) spread a fixed number of levels between each
group's extremes, so every level is used about equally often and entropy coding
has little left to remove (5-12% at 8 to 256 levels on MiniLM caches). Here every
element of a layer's keys (or values) is rounded to multiples of one step: the
integers are dense near each channel's centre and rare in the tails, which an
entropy coder turns into bytes saved, and no per-group scale or zero point is
stored at all. Measured on MiniLM caches (``benchmarks/run_kv.py``), this gives a
lower attention error than min-max groups at the same stored bytes.

Each channel's integers are stored relative to their median (an integer per
channel, so keys' per-channel offsets cost no entropy), zigzag-coded. Decoding is
``(median + symbol) * step``: a decoded cache lies on the grid, so quantizing it
again with the same step gives the same integers and the same file.

Arrays are [layers, batch, heads, tokens, head_dim].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKENS_AXIS = 3
_MAX_SYMBOL = (1 << 16) - 1


@dataclass(frozen=True)
class GridQuantized:
    symbols: np.ndarray  # zigzag integers, uint8 or uint16, the input's shape
    offset: np.ndarray  # int32 [layers, batch, heads, 1, head_dim]: each channel's median integer
    step: np.ndarray  # float32 [layers]

    def integers(self) -> np.ndarray:
        s = self.symbols.astype(np.int64)
        return (s >> 1) ^ -(s & 1)

    def decode(self) -> np.ndarray:
        grid = (self.integers() + self.offset).astype(np.float32)
        return grid * self.step.astype(np.float32).reshape((-1,) + (1,) * (self.symbols.ndim - 1))


def quantize_grid(x: np.ndarray, step: np.ndarray) -> GridQuantized:
    """Round ``x`` to multiples of ``step`` (one per layer); raises ValueError when an
    integer would not fit 16 bits after zigzag coding (the step is too fine for the
    values' range)."""
    step = np.asarray(step, dtype=np.float32).reshape(-1)
    if step.shape[0] != x.shape[0] or not np.all(step > 0):
        raise ValueError(f"need one positive step per layer, got {step}")
    if x.size == 0:
        offset = np.zeros(x.shape[:TOKENS_AXIS] + (1,) + x.shape[TOKENS_AXIS + 1:], np.int32)
        return GridQuantized(np.zeros(x.shape, np.uint8), offset, step)
    scaled = np.asarray(x, dtype=np.float32) / step.reshape((-1,) + (1,) * (x.ndim - 1))
    if not np.all(np.abs(scaled) < 2.0**30):
        raise ValueError("the step is too fine for these values (integers beyond 30 bits)")
    n = np.rint(scaled).astype(np.int64)
    offset = np.median(n, axis=TOKENS_AXIS, keepdims=True)
    offset = np.floor(offset).astype(np.int64)  # medians of an even count may fall between integers
    relative = n - offset
    zigzag = (relative << 1) ^ (relative >> 63)
    largest = int(zigzag.max(initial=0))
    if largest > _MAX_SYMBOL:
        raise ValueError(f"the step is too fine for these values: integers up to {largest >> 1} need more "
                         "than 16 bits")
    symbols = zigzag.astype(np.uint8 if largest < 256 else np.uint16)
    return GridQuantized(symbols, offset.astype(np.int32), step)


def estimated_bits(symbols: np.ndarray) -> float:
    """Order-0 entropy of the integers with one table per layer, the model the
    codec stores them with: what the symbols will cost, without encoding them."""
    total = 0.0
    for layer in symbols.reshape(symbols.shape[0], -1):
        counts = np.bincount(layer)
        counts = counts[counts > 0].astype(np.float64)
        total += float((counts * np.log2(counts.sum() / counts)).sum())
    return total
