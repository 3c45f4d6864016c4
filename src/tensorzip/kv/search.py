"""Configurations found by measuring, never by formula: the finest grid whose file
fits a bit budget, and the coarsest grid whose attention output stays within a
relative error.

Both search the keys' grid step by bisection in log scale, on the real encoded
file (its size, header included) and on the attention output recomputed from the
decoded cache. When queries are given, the values' step relative to the keys'
(``value_step_ratio``) is searched too: how much an error in a value matters next
to one in a key depends on the model, and the queries say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import TensorzipError
from .attention import output_errors
from .codec import KVConfig, decode, encode, to_bytes

RATIOS_TRIED = (0.2, 0.35, 0.6, 1.0)
_BISECTION_STEPS = 14  # the step to within ~1% over the bracket below


def _bracket(k: np.ndarray, v: np.ndarray, ratio: float) -> tuple[float, float]:
    """Log2 of the finest step whose integers fit 16 bits and of a step that maps
    everything to a handful of integers."""
    largest = max(float(np.abs(k.astype(np.float32)).max(initial=0)),
                  float(np.abs(v.astype(np.float32)).max(initial=0)) / ratio, 1e-30)
    return float(np.log2(2.2 * largest / 32000)), float(np.log2(4 * largest))


def _blob(k: np.ndarray, v: np.ndarray, config: KVConfig, queries: np.ndarray | None, extra: dict[str, Any],
          threads: int | None) -> tuple[bytes, dict[str, Any] | None]:
    """The file for ``config`` with its final record (so its size is the size stored)."""
    tensors, record = encode(k, v, config)
    errors = None
    if queries is not None:
        errors = output_errors(queries, k, v, *decode(tensors, record))
        record["attention"] = errors
    record.update(extra)
    return to_bytes(tensors, record, threads), errors


def _boundary(good: float, bad: float, is_good: Callable[[float], bool]) -> float:
    """The point nearest ``bad`` still known to be good, by bisection between a good and
    a bad log2 step (the property is taken to change once in between)."""
    for _ in range(_BISECTION_STEPS):
        middle = (good + bad) / 2
        good, bad = (middle, bad) if is_good(middle) else (good, middle)
    return good


def within_budget(k: np.ndarray, v: np.ndarray, bits: float, config: KVConfig, queries: np.ndarray | None,
                  threads: int | None) -> bytes:
    """The finest grid whose whole file takes at most ``bits`` per element of K and V;
    with queries, the ratio giving the lowest attention error among those tried."""
    budget = bits * (k.size + v.size) / 8
    extra = {"budget_bits_per_element": bits}
    if k.size + v.size == 0:  # nothing to fit: the smallest file there is
        return _blob(k, v, config, queries, extra, threads)[0]
    best: tuple[float, bytes] | None = None
    smallest = None
    for ratio in RATIOS_TRIED if queries is not None else (config.value_step_ratio,):
        trial = replace(config, value_step_ratio=ratio)

        def fits(log_step: float, trial: KVConfig = trial) -> bool:
            return len(_blob(k, v, replace(trial, step=2.0**log_step), queries, extra, threads)[0]) <= budget

        finest, coarsest = _bracket(k, v, ratio)
        coarse = _blob(k, v, replace(trial, step=2.0**coarsest), None, extra, threads)[0]
        smallest = len(coarse) if smallest is None else min(smallest, len(coarse))
        if not fits(coarsest):
            continue
        chosen = finest if fits(finest) else _boundary(coarsest, finest, fits)
        blob, errors = _blob(k, v, replace(trial, step=2.0**chosen), queries, extra, threads)
        score = errors["relative_error"] if errors is not None else 0.0
        if best is None or score < best[0]:
            best = (score, blob)
    if best is None:
        raise TensorzipError(f"a budget of {bits} bits per element cannot be met: the coarsest grid already takes "
                             f"{8 * (smallest or 0) / max(1, k.size + v.size):.3f} (the header, the exact window, "
                             "outlier channels and low-rank factors count too)")
    return best[1]


def within_attention_error(k: np.ndarray, v: np.ndarray, queries: np.ndarray, target: float, config: KVConfig,
                           threads: int | None) -> bytes:
    """The smallest file, over the ratios tried, whose attention output has a relative
    Frobenius error of at most ``target``: per ratio, the coarsest step meeting it."""
    extra = {"target_relative_error": target}
    best: bytes | None = None
    for ratio in RATIOS_TRIED:
        trial = replace(config, value_step_ratio=ratio)

        def error(log_step: float, trial: KVConfig = trial) -> float:
            tensors, record = encode(k, v, replace(trial, step=2.0**log_step))
            return output_errors(queries, k, v, *decode(tensors, record))["relative_error"]

        finest, coarsest = _bracket(k, v, ratio)
        if error(finest) > target:
            continue
        chosen = coarsest if error(coarsest) <= target else _boundary(finest, coarsest, lambda x: error(x) <= target)
        blob, errors = _blob(k, v, replace(trial, step=2.0**chosen), queries, extra, threads)
        assert errors is not None and errors["relative_error"] <= target
        if best is None or len(blob) < len(best):
            best = blob
    if best is None:
        raise TensorzipError(f"no grid reaches an attention-output relative error of {target} within 16-bit "
                             "integers (try a window of exact tokens, or max_abs_error)")
    return best
