"""KV caches and activations: quantized in groups, entropy-coded, with the bytes and
the error measured, never assumed.

    >>> import numpy as np, tensorzip as tz
    >>> rng = np.random.default_rng(0)
    >>> keys = rng.standard_normal((2, 1, 4, 64, 32)).astype(np.float32)   # [layers, batch, heads, tokens, dim]
    >>> values = rng.standard_normal((2, 1, 4, 64, 32)).astype(np.float32)
    >>> blob = tz.kv.compress(keys, values, bits=4)
    >>> k, v = tz.kv.decompress(blob)
    >>> k.shape == keys.shape, len(blob) < (keys.nbytes + values.nbytes) / 6
    (True, True)
    >>> blob = tz.kv.compress(keys, values, max_abs_error=0.01)        # a bound on every element
    >>> float(np.abs(tz.kv.decompress(blob)[0] - keys).max()) <= 0.01
    True

A Hugging Face ``transformers`` cache goes to a file and back with ``save_cache`` /
``load_cache`` (transformers is optional). Ask with a bit budget (``bits=`` or any ``levels=`` per group), a per-element
bound (``max_abs_error=``), or a bound on the attention output
(``max_rel_error=`` with the ``queries``): the smallest configuration meeting it is
found by measuring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..errors import TensorzipError
from .attention import output_errors
from .codec import KVConfig, decode, encode, from_bytes, to_bytes
from .hf_cache import load_cache, save_cache

__all__ = ["KVConfig", "compress", "decompress", "describe", "load_cache", "save_cache"]

# Tried, cheapest first, when a bound on the attention output is asked for.
_LEVELS_TRIED = (3, 4, 5, 6, 8, 11, 16, 23, 32, 64, 128, 256)
_GROUPS_TRIED = (32, 64, 128)


def _stacked(layers: Any, what: str) -> np.ndarray:
    """[layers, batch, heads, tokens, dim] from one array or a sequence of per-layer arrays."""
    array = np.stack([np.asarray(a) for a in layers]) if isinstance(layers, Sequence) else np.asarray(layers)
    if array.ndim != 5:
        raise TensorzipError(f"{what} must be [layers, batch, heads, tokens, head_dim] (or a list of "
                             f"[batch, heads, tokens, head_dim]), got shape {array.shape}")
    spec = dtypes.by_numpy(array.dtype)
    if not spec.is_float or spec.itemsize == 1:
        raise TensorzipError(f"{what} must be float16, bfloat16, float32 or float64, got {array.dtype}")
    if not np.isfinite(array.astype(np.float32)).all():
        raise TensorzipError(f"{what} contain NaN or infinity")
    return array


def compress(keys: Any, values: Any, *, bits: int | None = None, levels: int | None = None, group_size: int = 32,
             window: int = 0, rank: int = 0, outliers: int = 0, max_abs_error: float | None = None,
             max_rel_error: float | None = None, queries: Any = None, threads: int | None = None) -> bytes:
    """Compress a KV cache; see the module docstring. ``bits`` means ``levels = 2**bits``."""
    k, v = _stacked(keys, "keys"), _stacked(values, "values")
    if k.shape[:4] != v.shape[:4] or k.dtype != v.dtype:
        raise TensorzipError(f"keys {k.shape} {k.dtype} and values {v.shape} {v.dtype} must agree "
                             "in layers, batch, heads, tokens and dtype")
    if bits is not None:
        if levels is not None:
            raise TensorzipError("give bits or levels, not both")
        levels = 1 << bits
    if max_rel_error is not None:
        if queries is None:
            raise TensorzipError("max_rel_error bounds the attention output: pass the queries too")
        return _smallest_meeting(k, v, _stacked(queries, "queries"), max_rel_error, window, outliers, threads)
    if levels is None and max_abs_error is None:
        raise TensorzipError("say how: bits=, levels=, max_abs_error= or max_rel_error= (with queries=)")
    config = KVConfig(levels=levels, group=group_size, window=window, rank=rank, outliers=outliers,
                      max_abs_error=max_abs_error)
    tensors, record = encode(k, v, config)
    if queries is not None:
        k_hat, v_hat = decode(tensors, record)
        record["attention"] = output_errors(_stacked(queries, "queries"), k, v, k_hat, v_hat)
    return to_bytes(tensors, record, threads)


def decompress(blob: bytes | bytearray | memoryview, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values), each [layers, batch, heads, tokens, head_dim] in the input's dtype."""
    tensors, record = from_bytes(blob, threads)
    return decode(tensors, record)


def describe(blob: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The stored record (configuration, and the attention error measured when queries were given),
    plus the measured bytes per element."""
    _, record = from_bytes(blob)
    elements = 2 * int(np.prod(record["shape"]))
    return {**record, "stored_bytes": len(blob), "bytes_per_element": len(blob) / max(1, elements)}


def _smallest_meeting(k: np.ndarray, v: np.ndarray, q: np.ndarray, target: float, window: int, outliers: int,
                      threads: int | None) -> bytes:
    best: bytes | None = None
    for group in _GROUPS_TRIED:
        for levels in _LEVELS_TRIED:
            tensors, record = encode(k, v, KVConfig(levels=levels, group=group, window=window, outliers=outliers))
            k_hat, v_hat = decode(tensors, record)
            errors = output_errors(q, k, v, k_hat, v_hat)
            if errors["relative_error"] <= target:
                record["attention"] = errors
                record["target_relative_error"] = target
                blob = to_bytes(tensors, record, threads)
                if best is None or len(blob) < len(best):
                    best = blob
                break  # more levels only cost more at this group size
    if best is None:
        raise TensorzipError(f"no configuration reaches an attention-output relative error of {target} "
                             "(try a window of exact tokens, or max_abs_error)")
    return best
