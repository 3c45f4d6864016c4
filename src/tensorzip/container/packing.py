"""How the small tensors of one dtype are split into groups (docs/format.md, "Small tensors
coded together").

Why groups and not one: a group's chunk is coded with one order-0 model per byte plane, and
small tensors differ in what they hold. LayerNorm weights sit near 1, biases near 0.01-0.1,
some tensors are all zero: on MiniLM's 63 biases and norms in BF16 the exponent plane costs
13.5 KB under one model, 11.4 KB split into norm weights and the rest, 8.9 KB with a model per
tensor (before each model's tables). Tensors of a similar magnitude share a group here; every
group costs its own chunk directory, rANS states and tables, so the split is kept only where
the coded bytes, measured, are fewer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# Candidate bandings: tensors whose median magnitudes fall in one band of width 2^WIDTH (bands
# starting at the powers of 2^WIDTH, or centred on them) share a group. Which split pays
# depends on the model; each is measured.
BANDINGS: tuple[tuple[int, float], ...] = ((1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5))


def log_magnitude(data: np.ndarray) -> float | None:
    """log2 of a tensor's median magnitude (None: all zero, or no finite value)."""
    with np.errstate(invalid="ignore"):  # signalling NaNs: dropped below
        values = np.abs(data.astype(np.float64, copy=False))
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    return math.log2(float(np.median(values)))


def by_magnitude(logs: Sequence[float | None], width: int = 2, shift: float = 0.5) -> list[list[int]]:
    """Indices grouped by band of ``log_magnitude`` (bands ``width`` wide, offset by ``shift``
    of a band; None in a group of its own), groups in order of first member."""
    groups: dict[int | None, list[int]] = {}
    for index, value in enumerate(logs):
        groups.setdefault(None if value is None else math.floor(value / width + shift), []).append(index)
    return list(groups.values())


def choose_partition(arrays: Sequence[np.ndarray], stored_bytes: Callable[[list[int]], int]) -> list[list[int]]:
    """The split of ``arrays`` (one dtype) into groups that codes to the fewest bytes: all in
    one group, or one group per magnitude band of each of ``BANDINGS``. ``stored_bytes(indices)``:
    the coded size of those arrays as one group (every group's own costs included)."""
    best = [list(range(len(arrays)))]
    best_size = stored_bytes(best[0])
    logs = [log_magnitude(data) for data in arrays]
    for width, shift in BANDINGS:
        split = by_magnitude(logs, width, shift)
        if len(split) <= 1:
            continue
        size = sum(stored_bytes(group) for group in split)
        if size < best_size:
            best, best_size = split, size
    return best
