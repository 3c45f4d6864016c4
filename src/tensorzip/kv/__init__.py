"""KV caches and activations: quantized on a grid (or in KIVI's min-max groups),
entropy-coded, with the bytes and the error measured, never assumed.

    >>> import numpy as np, tensorzip as tz
    >>> rng = np.random.default_rng(0)
    >>> keys = rng.standard_normal((2, 1, 4, 64, 32)).astype(np.float32)   # [layers, batch, heads, tokens, dim]
    >>> values = rng.standard_normal((2, 1, 4, 64, 32)).astype(np.float32)
    >>> blob = tz.kv.compress(keys, values, bits=4)                  # 4 bits per element, all included
    >>> k, v = tz.kv.decompress(blob)
    >>> k.shape == keys.shape, len(blob) <= 4 * (keys.size + values.size) / 8
    (True, True)
    >>> blob = tz.kv.compress(keys, values, max_abs_error=0.01)        # a bound on every element
    >>> float(np.abs(tz.kv.decompress(blob)[0] - keys).max()) <= 0.01
    True

The verbs are the package's: ``compress`` / ``decompress`` for bytes, ``save_file`` /
``load_file`` for a path (written atomically); a Hugging Face ``transformers`` cache
goes to a file and back with ``save_cache`` / ``load_cache`` (transformers is
optional). Ask with a bit budget (``bits=``), a per-element bound
(``max_abs_error=``), or a bound on the attention output (``max_rel_error=`` with
the ``queries``): the configuration is found by encoding and measuring, and a target
that cannot be met raises ``TargetUnreachableError``. ``step=`` and ``levels=`` fix
the quantizer instead.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "cache.tzip")
    >>> tz.kv.save_file(keys, values, path, bits=4)["bytes_per_element"] <= 0.5
    True
    >>> k, v = tz.kv.load_file(path)
    >>> k.shape == keys.shape and v.dtype == values.dtype
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import dtypes
from ..errors import TargetUnreachableError, TensorzipError
from ..outputs.atomic import atomic_output
from .attention import output_errors
from .codec import DEFAULT_VALUE_STEP_RATIO, KVConfig, decode, encode, from_bytes, read_record, to_bytes
from .hf_cache import load_cache, save_cache
from .search import within_attention_error, within_budget

__all__ = ["KVConfig", "TargetUnreachableError", "compress", "decompress", "describe", "load_cache", "load_file",
           "save_cache", "save_file"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str]


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


def compress(keys: Any, values: Any, *, bits: float | None = None, step: float | None = None,
             max_abs_error: float | None = None, max_rel_error: float | None = None, levels: int | None = None,
             group_size: int = 32, window: int = 0, rank: int = 0, outliers: int = 0,
             value_step_ratio: float = DEFAULT_VALUE_STEP_RATIO, queries: Any = None,
             threads: int | None = None) -> bytes:
    """Compress a KV cache; say how with exactly one of:

    - ``bits``: a budget, in bits per element of K and V, for the whole file (every
      byte counted); the finest grid that fits is found by encoding;
    - ``max_abs_error``: a bound on every element, checked in the output dtype;
    - ``max_rel_error`` (with ``queries``): a bound on the relative error of the
      attention output, measured; the smallest file found that meets it;
    - ``step``: the keys' grid step (values: ``step * value_step_ratio``);
    - ``levels``: min-max groups of ``group_size`` with that many levels (KIVI's
      quantizer, entropy-coded).

    With ``queries``, the attention error achieved is measured and stored, and the
    searches (``bits``, ``max_rel_error``) also choose ``value_step_ratio``. A budget or
    a bound that no configuration meets raises ``TargetUnreachableError`` (nothing is
    returned that misses what was asked). ``threads``: for the entropy coder (default:
    every core).
    """
    k, v = _stacked(keys, "keys"), _stacked(values, "values")
    if k.shape[:4] != v.shape[:4] or k.dtype != v.dtype:
        raise TensorzipError(f"keys {k.shape} {k.dtype} and values {v.shape} {v.dtype} must agree "
                             "in layers, batch, heads, tokens and dtype")
    asked = {"bits": bits, "step": step, "max_abs_error": max_abs_error, "max_rel_error": max_rel_error,
             "levels": levels}
    given = [name for name, value in asked.items() if value is not None]
    if len(given) != 1:
        raise TensorzipError("say how, with exactly one of bits=, max_abs_error=, max_rel_error= (with queries=), "
                             f"step= and levels=; got {given or 'none'}")
    q = None if queries is None else _stacked(queries, "queries")
    config = KVConfig(levels=levels, group=group_size, window=window, rank=rank, outliers=outliers,
                      max_abs_error=max_abs_error, step=step, value_step_ratio=value_step_ratio)
    if bits is not None:
        if not (bits > 0 and math.isfinite(bits)):
            raise TargetUnreachableError(f"bits must be a positive finite number, got {bits}")
        config = replace(config, step=1.0)
        config.check()
        return within_budget(k, v, bits, config, q, threads)
    if max_rel_error is not None:
        if q is None:
            raise TensorzipError("max_rel_error bounds the attention output: pass the queries too")
        config = replace(config, step=1.0)
        config.check()
        return within_attention_error(k, v, q, max_rel_error, config, threads)
    tensors, record = encode(k, v, config)
    if q is not None:
        record["attention"] = output_errors(q, k, v, *decode(tensors, record))
    return to_bytes(tensors, record, threads)


def decompress(blob: bytes | bytearray | memoryview, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of a compressed cache, each [layers, batch, heads, tokens, head_dim]
    in the input's dtype: what attention reads back, within the target the file records."""
    tensors, record = from_bytes(blob, threads)
    return decode(tensors, record)


def save_file(keys: Any, values: Any, path: str | os.PathLike[str], *, overwrite: bool = True,
              **options: Any) -> dict[str, Any]:
    """``compress`` into ``path``, atomically (a failure leaves no file, and an existing
    one stays as it was); ``options`` as for ``compress``. Returns ``describe`` of what
    was written, so the bytes per element and the measured error need no second read."""
    blob = compress(keys, values, **options)
    with atomic_output(path, overwrite=overwrite) as handle:
        handle.write(blob)
    return describe(blob)


def load_file(path: str | os.PathLike[str], threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of a cache file written by ``save_file`` or ``save_cache``, as
    ``decompress`` gives them, read without holding the file's bytes twice."""
    tensors, record = from_bytes(path, threads)
    return decode(tensors, record)


def describe(source: Source) -> dict[str, Any]:
    """The stored record of a cache (its bytes or its path): the configuration, the target
    it was made for, the attention error measured when queries were given, plus the
    measured bytes per element, so a caller can check a file without decoding it."""
    record = read_record(source)
    size = os.path.getsize(source) if isinstance(source, (str, os.PathLike)) else len(memoryview(source))
    elements = 2 * int(np.prod(record["shape"]))
    return {**record, "stored_bytes": size, "bytes_per_element": size / max(1, elements)}
