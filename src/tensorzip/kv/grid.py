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

Tokens whose vector is small next to the step (a head attending to a near-zero
value vector, as BERT's heads do with [SEP]) would decode to zero and their
attention output to noise: with ``refine_tokens``, the step of a token smaller
than half the layer's median token shrinks in half-octaves with its size. Measured
on MiniLM values (``benchmarks/run_kv.py``): the worst output cosine goes from
below zero to above 0.9 at the same bytes (most tokens keep the layer's step, so
the refinement exponents cost almost nothing). The exponents are chosen as a fixed point (the exponent the decoded
cache would get is the one used), so re-encoding a decoded cache reproduces it.

Arrays are [layers, batch, heads, tokens, head_dim].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quantization import dequantize, order0_bits, quantize, unzigzag

TOKENS_AXIS = 3
SYMBOL_BITS = 16  # zigzag symbols of at most 16 bits (uint8 or uint16)
REFINE_BELOW = 2.0
MAX_REFINE = 24  # half-octaves: a step 4096x finer at most
_SQRT_HALF = np.float32(np.sqrt(0.5))


@dataclass(frozen=True)
class GridQuantized:
    symbols: np.ndarray  # zigzag integers, uint8 or uint16, the input's shape
    offset: np.ndarray  # int32 [layers, batch, heads, 1, head_dim]: each channel's median integer
    step: np.ndarray  # float32 [layers]
    refine: np.ndarray | None = None  # uint8 [layers, batch, heads, tokens, 1]: half-octaves finer per token

    def integers(self) -> np.ndarray:
        """The integers relative to each channel's offset (int64)."""
        return unzigzag(self.symbols)

    def decode(self) -> np.ndarray:
        """The grid points, float32: ``(offset + integer) * step``."""
        return dequantize(self.symbols, element_steps(self.step, self.refine, self.symbols.ndim), self.offset)


def element_steps(step: np.ndarray, refine: np.ndarray | None, ndim: int) -> np.ndarray:
    """The step of every element (broadcastable): the layer's, halved ``refine`` times in
    half-octaves. Exact powers of two times one float32 constant, so every machine
    decodes the same bits."""
    layer = np.asarray(step, np.float32).reshape((-1,) + (1,) * (ndim - 1))
    if refine is None:
        return layer
    r = refine.astype(np.int32)
    factor = np.ldexp(np.where(r % 2 == 1, _SQRT_HALF, np.float32(1)), -(r // 2)).astype(np.float32)
    return layer * factor


def _refinement(x: np.ndarray) -> np.ndarray:
    """Per token, the half-octaves by which the step shrinks: enough that a token
    smaller than 1/``REFINE_BELOW`` of the layer's median token is quantized as finely,
    relative to its size, as a token of that size."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True))
    median = np.median(rms.reshape(rms.shape[0], -1), axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        halves = np.floor(2 * np.log2(median / (REFINE_BELOW * rms)))
    halves = np.where(rms > 0, np.nan_to_num(halves, nan=0, posinf=0), 0)  # an all-zero token needs no step
    return np.clip(halves, 0, MAX_REFINE).astype(np.uint8)


def quantize_grid(x: np.ndarray, step: np.ndarray, refine_tokens: bool = False) -> GridQuantized:
    """Round ``x`` to multiples of ``step`` (one per layer; finer for small tokens with
    ``refine_tokens``); raises ValueError when an integer would not fit 16 bits after
    zigzag coding (the step is too fine for the values' range)."""
    step = np.asarray(step, dtype=np.float32).reshape(-1)
    if step.shape[0] != x.shape[0] or not np.all(step > 0):
        raise ValueError(f"need one positive step per layer, got {step}")
    if x.size == 0:
        offset = np.zeros(x.shape[:TOKENS_AXIS] + (1,) + x.shape[TOKENS_AXIS + 1:], np.int32)
        refine = np.zeros(x.shape[:-1] + (1,), np.uint8) if refine_tokens else None
        return GridQuantized(np.zeros(x.shape, np.uint8), offset, step, refine)
    if not refine_tokens:
        return _on_grid(x, step, None)
    refine = _refinement(x)
    for _ in range(4):  # a fixed point: the refinement the decoded cache would get
        q = _on_grid(x, step, refine)
        again = _refinement(q.decode())
        if np.array_equal(again, refine):
            break
        refine = again
    return q


def _on_grid(x: np.ndarray, step: np.ndarray, refine: np.ndarray | None) -> GridQuantized:
    code = quantize(x, element_steps(step, refine, x.ndim), precision=np.float32, offset_axis=TOKENS_AXIS,
                    max_bits=SYMBOL_BITS)
    assert code.offset is not None
    return GridQuantized(code.symbols, code.offset.astype(np.int32), step, refine)


def estimated_bits(symbols: np.ndarray) -> float:
    """Order-0 entropy of the integers with one table per layer, the model the
    codec stores them with: what the symbols will cost, without encoding them."""
    return order0_bits(symbols, per_row=True)
