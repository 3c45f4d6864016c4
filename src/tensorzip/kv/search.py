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

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import TargetUnreachableError
from ..quantization import TargetNotMet, bisect
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


def within_budget(k: np.ndarray, v: np.ndarray, bits: float, config: KVConfig, queries: np.ndarray | None,
                  threads: int | None) -> bytes:
    """The finest grid whose whole file takes at most ``bits`` per element of K and V;
    with queries, the ratio giving the lowest attention error among those tried."""
    budget = bits * (k.size + v.size) / 8
    extra = {"budget_bits_per_element": bits}
    if k.size + v.size == 0:  # nothing to fit: the smallest file there is
        return _blob(k, v, config, queries, extra, threads)[0]
    best: tuple[float, bytes] | None = None
    smallest = np.inf
    for ratio in RATIOS_TRIED if queries is not None else (config.value_step_ratio,):
        trial = replace(config, value_step_ratio=ratio)

        def size(step: float, trial: KVConfig = trial) -> tuple[float, tuple[bytes, dict[str, Any] | None]]:
            blob, errors = _blob(k, v, replace(trial, step=step), queries, extra, threads)
            return len(blob), (blob, errors)

        finest, coarsest = _bracket(k, v, ratio)
        try:
            found = bisect(size, at_most=budget, feasible_end=coarsest, best_end=finest,
                           max_iterations=_BISECTION_STEPS, log_scale="log2")
        except TargetNotMet as missed:
            smallest = min(smallest, missed.figure)
            continue
        blob, errors = found.result
        score = errors["relative_error"] if errors is not None else 0.0
        if best is None or score < best[0]:
            best = (score, blob)
    if best is None:
        raise TargetUnreachableError(
            f"a budget of {bits} bits per element cannot be met: the coarsest grid already takes "
            f"{8 * smallest / max(1, k.size + v.size):.3f} (the header, the exact window, outlier channels and "
            "low-rank factors count too)")
    return best[1]


def within_attention_error(k: np.ndarray, v: np.ndarray, queries: np.ndarray, target: float, config: KVConfig,
                           threads: int | None) -> bytes:
    """The smallest file, over the ratios tried, whose attention output has a relative
    Frobenius error of at most ``target``: per ratio, the coarsest step meeting it."""
    extra = {"target_relative_error": target}
    best: bytes | None = None
    for ratio in RATIOS_TRIED:
        trial = replace(config, value_step_ratio=ratio)

        def error(step: float, trial: KVConfig = trial) -> tuple[float, tuple[Any, ...]]:
            tensors, record = encode(k, v, replace(trial, step=step))
            errors = output_errors(queries, k, v, *decode(tensors, record))
            return errors["relative_error"], (tensors, record, errors)

        finest, coarsest = _bracket(k, v, ratio)
        try:
            found = bisect(error, at_most=target, feasible_end=finest, best_end=coarsest,
                           max_iterations=_BISECTION_STEPS, log_scale="log2")
        except TargetNotMet:
            continue
        tensors, record, errors = found.result  # the file of the step found, as _blob would make it
        blob = to_bytes(tensors, {**record, "attention": errors, **extra}, threads)
        if best is None or len(blob) < len(best):
            best = blob
    if best is None:
        raise TargetUnreachableError(f"no grid reaches an attention-output relative error of {target} within 16-bit "
                                     "integers (try a window of exact tokens, or max_abs_error)")
    return best
