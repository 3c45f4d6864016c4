"""Entropy bounds of a tensor under the byte-plane layout and under simple context
models, to show how much room a context-model coder would have.

The order-0 bound is what the byte-plane codec is measured against: each plane
coded with its own static model. The context bound replaces two plane models
with conditional ones: the second plane given the first (for floats: the top
mantissa bits given the exponent) and, for 2-D tensors, the first plane given
its row's median (output channels have different scales). Model tables are not
counted, so the context bound is a floor, not an achievable size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..quantization.entropy import bits_of_counts


@dataclass(frozen=True)
class TensorBounds:
    order0_bytes: float
    context_bytes: float


def _conditional_bits(context: np.ndarray, symbols: np.ndarray) -> float:
    joint = np.bincount(context.astype(np.int64).ravel() * 256 + symbols.ravel(), minlength=256 * 256)
    return bits_of_counts(joint) - bits_of_counts(np.bincount(context.astype(np.int64).ravel(), minlength=256))


def _planes(array: np.ndarray, rotate: int) -> np.ndarray:
    """(width, n) byte planes, most significant first, after rotating each element."""
    width = array.dtype.itemsize
    words = np.ascontiguousarray(array).reshape(-1).view(f"<u{width}")
    if rotate and width > 1:
        bits = 8 * width
        words = (words << np.array(rotate, words.dtype)) | (words >> np.array(bits - rotate, words.dtype))
    return words.view(np.uint8).reshape(-1, width)[:, ::-1].T


def plane_bits(array: np.ndarray) -> list[float]:
    """Order-0 entropy, in bits, of each byte plane in the dtype's layout, most
    significant first: where a tensor's information sits."""
    if array.size == 0:
        return [0.0] * array.dtype.itemsize
    planes = _planes(array, dtypes.by_numpy(array.dtype).rotate_bits)
    return [bits_of_counts(np.bincount(p, minlength=256)) for p in planes]


def tensor_bounds(array: np.ndarray) -> TensorBounds:
    """The order-0 and context-model bounds, in bytes, of one tensor in its dtype's layout."""
    spec = dtypes.by_numpy(array.dtype)
    if array.size == 0:
        return TensorBounds(0.0, 0.0)
    planes = _planes(array, spec.rotate_bits)
    plane_bits = [bits_of_counts(np.bincount(p, minlength=256)) for p in planes]
    order0 = sum(plane_bits)
    context = list(plane_bits)
    if len(planes) >= 2:
        context[1] = min(context[1], _conditional_bits(planes[0], planes[1]))
    if array.ndim == 2 and array.shape[1] >= 16:
        first = planes[0].reshape(array.shape).astype(np.int64)
        median = np.median(first, axis=1, keepdims=True).astype(np.int64)
        context[0] = min(context[0], _conditional_bits(np.broadcast_to(median, first.shape), first))
    return TensorBounds(order0 / 8.0, sum(context) / 8.0)
