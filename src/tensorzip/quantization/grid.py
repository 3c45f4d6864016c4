"""Values on a uniform grid, as the lossy layers store them: integers relative to an
optional per-slice median, zigzag-coded (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) so that
small integers of either sign are small symbols, in the narrowest unsigned type that
holds them; and back.

The arithmetic is each layer's own, unchanged (its files stay byte for byte what they
were): the division runs in the ``precision`` the caller names (float32 for KV caches
and embeddings, float64 for weight matrices), rounding is to nearest even (``np.rint``),
a median between two integers is floored, and decoding is ``(integer + offset) * step``
in float32, plus a float ``shift`` where a layer stores one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _native

# |value / step| must stay below this before rounding: the integers then fit 31 bits with
# their sign, and no float beyond int64's range is ever cast.
MAX_SCALED = 2.0**30
_WIDTHS = (np.uint8, np.uint16, np.uint32)


class SymbolRangeError(ValueError):
    """The integers do not fit the symbols the caller allows: the step is too fine for the
    values' range. Layers catch it and say which tensor and what to do."""


@dataclass(frozen=True)
class GridCode:
    """What ``quantize`` returns: the symbols, and the integer offset per slice they are
    relative to (``None`` when the caller asked for none)."""

    symbols: np.ndarray  # zigzag of (integer - offset), uint8/uint16/uint32
    offset: np.ndarray | None  # int32, the input's shape with the offset axis of length 1


def zigzag(integers: Any) -> np.ndarray:
    """Signed integers as unsigned codes (int64): 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    i = np.asarray(integers).astype(np.int64, copy=False)
    return (i << 1) ^ (i >> 63)


def unzigzag(symbols: Any) -> np.ndarray:
    """The inverse of ``zigzag``: int64 integers from symbols of any unsigned width."""
    s = np.asarray(symbols).astype(np.int64)
    return (s >> 1) ^ -(s & 1)


def narrowest(codes: np.ndarray, max_bits: int) -> np.ndarray:
    """Zigzag codes in the narrowest of uint8/uint16/uint32 that holds them all; a code of
    ``max_bits`` bits or more raises SymbolRangeError."""
    largest = int(codes.max(initial=0))
    if largest >= 1 << max_bits:
        raise SymbolRangeError(f"the step is too fine for these values: integers up to {largest >> 1} need more "
                               f"than {max_bits} bits as symbols")
    width = next(w for w in _WIDTHS if largest < 1 << (8 * np.dtype(w).itemsize))
    return codes.astype(width)


def to_symbols(integers: Any, max_bits: int = 16) -> np.ndarray:
    """Signed integers (any integer or integral float array) as the narrowest zigzag symbols."""
    return narrowest(zigzag(integers), max_bits)


def quantize(x: Any, step: Any, *, precision: type[np.floating] = np.float32, offset_axis: int | None = None,
             max_bits: int = 16) -> GridCode:
    """Round ``x / step`` (``step`` broadcast against ``x``, both cast to ``precision``
    first) to the nearest integer; with ``offset_axis``, store each integer relative to
    the floored median of its slice along that axis (channels or rows differ in offset,
    not in the step they need, so the offsets keep one entropy table narrow).

    Raises SymbolRangeError when a scaled value reaches 2^30 or a symbol would need more
    than ``max_bits`` bits: the step is too fine for the values' range. The integers are
    int32 throughout (what the range allows): the solvers quantize in loops, and int64
    temporaries doubled the time.
    """
    scaled = np.asarray(x, dtype=precision) / np.asarray(step, dtype=precision)
    if scaled.size and not (scaled.max() < MAX_SCALED and scaled.min() > -MAX_SCALED):  # NaN fails too
        raise SymbolRangeError("the step is too fine for these values (integers beyond 30 bits)")
    n = np.rint(scaled).astype(np.int32)
    if offset_axis is None:
        return GridCode(narrowest(_zigzag32(n), max_bits), None)
    if not n.size:
        shape = list(n.shape)
        shape[offset_axis] = 1
        return GridCode(narrowest(_zigzag32(n), max_bits), np.zeros(shape, np.int32))
    offset = np.floor(np.median(n, axis=offset_axis, keepdims=True)).astype(np.int32)
    if int(n.max()) - int(offset.min()) >= 1 << 31:  # n - offset may leave int32 (at the range's very ends)
        return GridCode(narrowest(zigzag(n.astype(np.int64) - offset), max_bits), offset)
    return GridCode(narrowest(_zigzag32(n - offset), max_bits), offset)


def quantize_columns(x: np.ndarray, step: np.ndarray, max_bits: int = 16, threads: int = 0) -> np.ndarray:
    """``quantize(x[:, :len(step)], step, precision=np.float32, max_bits=...).symbols``: the
    first columns of a [rows, d] matrix, one step per column, transposed ([columns, rows]:
    each column's symbols contiguous, as the embedding codes store them), in one native pass:
    the same float32 division and rounding, the same SymbolRangeError. Why: the embedding
    solver quantizes a prefix of the collection's coordinates for every candidate; the NumPy
    passes were a third of its time, and copying the prefix out first another tenth."""
    values = np.ascontiguousarray(x, dtype=np.float32)
    steps = np.ascontiguousarray(step, dtype=np.float32).reshape(-1)
    rows, width = values.shape
    columns = steps.size
    if columns > width:
        raise ValueError(f"quantize_columns: {columns} steps for {width} columns")
    codes = np.empty((columns, rows), dtype=np.uint32)
    _, in_range = _native.grid_columns(values, rows, columns, width, steps, codes, threads)
    if not in_range:
        raise SymbolRangeError("the step is too fine for these values (integers beyond 30 bits)")
    return narrowest(codes, max_bits)


def _zigzag32(r: np.ndarray) -> np.ndarray:
    """``zigzag`` of int32 integers as uint32 codes (exact for every int32)."""
    return (r.view(np.uint32) << np.uint32(1)) ^ (r >> 31).view(np.uint32)


DEQUANTIZE_BLOCK = 1 << 22  # elements widened to int64 at once: memory stays ~32 MB over the output


def dequantize(symbols: np.ndarray, step: Any, offset: Any = None, shift: Any = None) -> np.ndarray:
    """``(unzigzag(symbols) + offset) * step`` in float32 (the integers summed in int64 and
    converted once), plus ``shift`` (a float per slice) where the layer stores one. Done in
    blocks of rows, so the int64 widening never holds more than ``DEQUANTIZE_BLOCK``
    elements beside the float32 result, whatever size a file declares."""
    symbols = np.asarray(symbols)
    if symbols.size <= DEQUANTIZE_BLOCK or symbols.ndim == 0:
        return _dequantize(symbols, step, offset, shift)
    shape = np.broadcast_shapes(symbols.shape, *(np.shape(p) for p in (step, offset, shift) if p is not None))
    rows = max(1, DEQUANTIZE_BLOCK // max(1, symbols[0].size))
    # Arrays are sliced by rows; scalars (None, a Python float) pass as they are, so the
    # arithmetic keeps the result dtype it has unblocked (NumPy's scalar promotion rules).
    parts = [p if p is None or np.ndim(p) == 0 else np.broadcast_to(p, shape) for p in (symbols, step, offset, shift)]
    out: np.ndarray | None = None
    for first in range(0, shape[0], rows):
        piece = _dequantize(*[p if p is None or np.ndim(p) == 0 else p[first : first + rows]  # type: ignore[arg-type]
                              for p in parts])
        if out is None:  # the dtype the arithmetic gives (float32, or wider with a float64 step)
            out = np.empty(shape, piece.dtype)
        out[first : first + rows] = piece
    assert out is not None
    return out


def unzigzag_float32(symbols: np.ndarray) -> np.ndarray:
    """``unzigzag(symbols)`` as float32 (exact: every 8- and 16-bit code's integer is), in one
    native pass. Why: the int64 route (widen, shift, xor, convert) cost the embedding solver
    a quarter of its time, and a table lookup in NumPy half of that."""
    symbols = np.asarray(symbols)
    if symbols.dtype not in (np.uint8, np.uint16):
        return unzigzag(symbols).astype(np.float32)
    contiguous = np.ascontiguousarray(symbols)
    out = np.empty(symbols.shape, dtype=np.float32)
    _native.unzigzag_to_float(contiguous, contiguous.itemsize, out)
    return out


def _dequantize(symbols: np.ndarray, step: Any, offset: Any, shift: Any) -> np.ndarray:
    if offset is None and symbols.dtype in (np.uint8, np.uint16) and symbols.size >= 1 << 16:
        values = unzigzag_float32(symbols) * step  # the same float32 products as below
        return values if shift is None else values + shift
    integers = unzigzag(symbols)
    if offset is not None:
        integers = integers + np.asarray(offset).astype(np.int64, copy=False)
    values = integers.astype(np.float32) * step
    return values if shift is None else values + shift
