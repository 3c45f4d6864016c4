"""Group-wise affine quantization of KV-cache tensors, the KIVI way.

Keys have a few channels of large magnitude that persist across tokens, so they
are grouped *per channel* (each group: one channel over ``group`` consecutive
tokens); values are grouped *per token* (one token over ``group`` consecutive
channels). Each group stores its minimum and step; elements become integers in
[0, levels). Any number of levels works (not only powers of two): the integers
are entropy-coded afterwards, so 5 or 6 levels cost what they carry.

Arrays here are [layers, batch, heads, tokens, head_dim].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKENS_AXIS = 3
CHANNELS_AXIS = 4


@dataclass(frozen=True)
class Quantized:
    """Integers and the per-group affine parameters that map them back."""

    symbols: np.ndarray  # same shape as the input, uint8 or uint16
    minimum: np.ndarray  # per group; the group axis has ceil(n / group) entries
    step: np.ndarray  # per group
    axis: int  # the axis the groups run along
    group: int

    def decode(self) -> np.ndarray:
        """The groups' levels, float32: ``minimum + symbol * step``."""
        n = self.symbols.shape[self.axis]
        minimum = _expand(self.minimum, self.axis, self.group, n)
        return minimum + self.symbols.astype(np.float32) * _expand(self.step, self.axis, self.group, n)


def _group_reduce(x: np.ndarray, axis: int, group: int, reduce) -> np.ndarray:
    starts = np.arange(0, x.shape[axis], group)
    return reduce.reduceat(x, starts, axis=axis)


def quantize_levels(x: np.ndarray, axis: int, group: int, levels: int, parameter_dtype=np.float16) -> Quantized:
    """``levels`` evenly spaced values per group between its minimum and maximum."""
    low = _group_reduce(x, axis, group, np.minimum).astype(parameter_dtype)
    high = _group_reduce(x, axis, group, np.maximum).astype(np.float32)
    step = ((high - low.astype(np.float32)) / max(1, levels - 1)).astype(parameter_dtype)
    step = np.where(step.astype(np.float32) > 0, step, np.asarray(1, parameter_dtype)).astype(parameter_dtype)
    full_low = _expand(low, axis, group, x.shape[axis])
    full_step = _expand(step, axis, group, x.shape[axis])
    q = np.clip(np.rint((x - full_low) / full_step), 0, levels - 1)
    return Quantized(q.astype(np.uint8 if levels <= 256 else np.uint16), low, step, axis, group)


def _expand(per_group: np.ndarray, axis: int, group: int, n: int) -> np.ndarray:
    # Indexed, not np.repeat'ed: a group size far beyond the axis (a crafted record) must
    # not allocate group copies of every entry.
    return np.take(per_group.astype(np.float32), np.arange(n) // group, axis=axis)
