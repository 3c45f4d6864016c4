"""Hugging Face ``transformers`` KV caches to and from .tzip files.

``transformers`` (and torch) are optional: this module imports them only when a
cache is rebuilt. Reading works on anything indexable by layer that yields
``(keys, values)`` pairs of [batch, heads, tokens, head_dim] tensors — a
``DynamicCache`` or the legacy tuple of tuples.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import TensorzipError
from ..inputs.frameworks import to_numpy, to_torch


def cache_layers(cache: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-layer keys and values of a cache, as numpy arrays."""
    try:
        if hasattr(cache, "layers") and all(hasattr(layer, "keys") for layer in cache.layers):
            pairs = [(layer.keys, layer.values) for layer in cache.layers]  # transformers >= 4.56
        else:
            pairs = [cache[i] for i in range(len(cache))]
    except (TypeError, KeyError, IndexError) as error:
        raise TensorzipError(f"not a KV cache indexable by layer ({type(cache).__name__}: {error})") from None
    if not pairs:
        raise TensorzipError("the cache holds no layers")
    return [to_numpy(k) for k, _ in pairs], [to_numpy(v) for _, v in pairs]


def save_cache(cache: Any, path: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Compress a cache into ``path`` (atomically), so a long context need not be
    recomputed; ``options`` as for ``tensorzip.kv.compress`` (and ``overwrite``).
    Returns ``tensorzip.kv.describe`` of what was written."""
    from . import save_file

    keys, values = cache_layers(cache)
    return save_file(keys, values, path, **options)


def load_cache(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """A ``transformers.DynamicCache`` holding the decoded keys and values, ready to pass
    to a model as ``past_key_values``."""
    from . import load_file

    try:
        from transformers import DynamicCache
    except ImportError:
        raise TensorzipError("rebuilding a Hugging Face cache needs transformers (pip install transformers)") from None
    keys, values = load_file(path, threads)
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
        cache.update(to_torch(np.ascontiguousarray(k)), to_torch(np.ascontiguousarray(v)), layer)
    return cache
