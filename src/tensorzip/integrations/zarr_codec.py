"""tensorzip as a Zarr v3 codec (zarr-python 3).

Zarr v3 splits a chunk's encoding into array→array filters, one array→bytes
*serializer* and bytes→bytes compressors. tensorzip is an array→bytes codec here:
it needs the chunk's real dtype to split values into byte planes (after the default
``bytes`` serializer a bytes→bytes codec would only see ``uint8``), so it replaces
``bytes`` as the serializer::

    zarr.create_array(store, shape=..., chunks=..., dtype="float32",
                      serializer={"name": "numcodecs.tensorzip"}, compressors=None)

The codec is registered with zarr through the ``zarr.codecs`` entry point under
``numcodecs.tensorzip`` (zarr-python's naming for numcodecs codecs; the metadata's
``configuration`` is the numcodecs codec's config less its ``id``) and under the
alias ``tensorzip``, so reopening an array needs no import. The chunk bytes are the
same one-tensor .tzip images the numcodecs codec writes (dtype, shape, checksums).
For Zarr format 2 arrays use the numcodecs codec as the compressor instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import JSON, parse_named_configuration

from ..arrays import compress, decompress
from ..codecs import checked_threads
from ..codecs.policy import checked_level
from ..errors import CorruptDataError

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

CODEC_NAME = "numcodecs.tensorzip"
_ACCEPTED_NAMES = (CODEC_NAME, "tensorzip")


def _check_targets(max_abs_error: Any, max_rel_error: Any) -> None:
    for name, value in (("max_abs_error", max_abs_error), ("max_rel_error", max_rel_error)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                                      and np.isfinite(value)):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if max_abs_error is not None and max_rel_error is not None:
        raise ValueError("give max_abs_error or max_rel_error, not both")


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def _parse_threads(threads: Any) -> int | None:
    """None (the default: all cores) is kept as given, so the codec's config says it."""
    return None if threads is None else checked_threads(threads)


@dataclass(frozen=True)
class TensorzipCodec(ArrayBytesCodec):
    """Lossless tensorzip coding of each chunk, as a Zarr v3 array→bytes codec."""

    is_fixed_size = False

    threads: int | None = None
    # Error targets (issue 21): each float chunk within max_abs_error of the original on every
    # element, or max_rel_error x the chunk's RMS; None: lossless.
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    # Lossless coding effort (issue 22): "default" or "max"; recorded only when not the default.
    level: str | None = None

    def __init__(self, *, threads: int | None = None, max_abs_error: float | None = None,
                 max_rel_error: float | None = None, level: str | None = None) -> None:
        object.__setattr__(self, "threads", _parse_threads(threads))
        _check_targets(max_abs_error, max_rel_error)
        if level is not None and checked_level(level) == "default":
            level = None
        object.__setattr__(self, "max_abs_error", max_abs_error)
        object.__setattr__(self, "max_rel_error", max_rel_error)
        object.__setattr__(self, "level", level)

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        name, configuration = parse_named_configuration(data, require_configuration=False)
        if name not in _ACCEPTED_NAMES:
            raise ValueError(f"expected a codec named {CODEC_NAME!r}, got {name!r}")
        configuration = dict(configuration or {})
        configuration.pop("id", None)  # tolerate a numcodecs-style config
        unknown = sorted(set(configuration) - {"threads", "max_abs_error", "max_rel_error", "level"})
        if unknown:
            raise ValueError(f"unknown {CODEC_NAME} configuration keys: {', '.join(unknown)}")
        return cls(**configuration)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, JSON]:
        configuration = {key: value for key, value in (("threads", self.threads), ("max_abs_error", self.max_abs_error),
                                                       ("max_rel_error", self.max_rel_error), ("level", self.level))
                         if value is not None}
        if not configuration:
            return {"name": CODEC_NAME}
        return {"name": CODEC_NAME, "configuration": configuration}

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable-size output

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        array = np.asarray(chunk_array.as_numpy_array())
        if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
            array = array.astype(array.dtype.newbyteorder("<"))  # the bytes are tensorzip's, not the array's
        targets = {"max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error}
        if not _is_float(array):
            targets = {}  # integers and bools are stored exactly
        image = compress(array, threads=self.threads, level=self.level or "default", **targets)
        return chunk_spec.prototype.buffer.from_bytes(image)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        array = decompress(chunk_bytes.as_numpy_array().view(np.uint8), threads=self.threads, framework="np")
        expected = chunk_spec.dtype.to_native_dtype()
        if array.dtype.newbyteorder("=") != expected.newbyteorder("=") or array.shape != tuple(chunk_spec.shape):
            raise CorruptDataError(
                f"chunk decodes to {array.dtype}{list(array.shape)}, the array expects "
                f"{expected}{list(chunk_spec.shape)}: the chunk belongs to another array"
            )
        if array.dtype != expected:
            array = array.astype(expected)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(array)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)
