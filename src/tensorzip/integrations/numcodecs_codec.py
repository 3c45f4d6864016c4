"""tensorzip as a numcodecs codec (and so a Zarr format 2 compressor).

Registered under the id ``"tensorzip"`` through the ``numcodecs.codecs`` entry
point, so ``numcodecs.get_codec({"id": "tensorzip"})`` works without importing
this module first. Each encoded buffer is a one-tensor .tzip image: dtype, shape
and checksums travel with the bytes. Zarr format 3 arrays use the array→bytes
codec in :mod:`tensorzip.integrations.zarr_codec` (``numcodecs.tensorzip``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numcodecs.abc import Codec as NumcodecsCodec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray

from ..arrays import compress, decompress
from ..errors import TensorzipError


class Tensorzip(NumcodecsCodec):
    """Lossless tensorzip coding of each chunk (any dtype tensorzip supports)."""

    codec_id = "tensorzip"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def encode(self, buf: Any) -> bytes:
        array = ensure_ndarray(buf)
        if array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous:
            # numcodecs codes a buffer's bytes in memory order (Zarr v2 ``order="F"`` chunks);
            # the transpose is the C-ordered array with those bytes.
            array = array.T
        return compress(array, threads=self.threads)

    def decode(self, buf: Any, out: Any = None) -> Any:
        array = decompress(ensure_contiguous_ndarray(buf).view(np.uint8), threads=self.threads, framework="np")
        if out is None:
            return array
        target = ensure_contiguous_ndarray(out).view(np.uint8).reshape(-1)
        source = array.reshape(-1).view(np.uint8)
        if target.nbytes != source.nbytes:
            raise TensorzipError(f"output buffer holds {target.nbytes} bytes, the chunk decodes to {source.nbytes}")
        target[...] = source
        return out
