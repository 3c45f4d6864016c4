"""The lossless default: byte planes, each coded by rANS under its own order-0
table per chunk (or stored raw / as a constant where that is smaller).

All the work happens in the native core; this module only describes the layout
and hands whole batches of tensors to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import _native
from ..dtypes import DTypeSpec
from ..errors import TensorzipError
from .base import ChunkDecodeError, Codec, DecodeJob, EncodedTensor, EncodeJob, delta_mode_number

DEFAULT_CHUNK_BYTES = 1 << 19  # bytes of input per chunk
CONTEXT_PLANE_MODE = 3  # a chunk's plane 1 coded given plane 0 (docs/format.md)


def uses_context_plane(chunk: Any) -> bool:
    """Whether a chunk (its bytes) codes plane 1 given plane 0: its plane count is at least 2
    and plane 1's directory entry (byte 6: after the count and plane 0's five bytes) says so."""
    view = memoryview(chunk).cast("B")
    return len(view) > 6 and view[0] >= 2 and view[6] == CONTEXT_PLANE_MODE


class BytePlanesCodec(Codec):
    """Split elements into byte planes (after rotating each element left by
    ``rotate_bits``) and entropy-code every plane of every chunk separately.

    ``chunk_elements`` fixes the random-access granularity: each chunk decodes on
    its own, so a reader can fetch any part of a tensor and threads can share the
    work. ``for_dtype`` picks 512 KiB of input per chunk (measured best on MiniLM:
    per-chunk tables adapt to local statistics; smaller chunks pay more overhead).
    """

    codec_id: ClassVar[str] = "tensorzip.byte_planes"
    restores_while_decoding: ClassVar[bool] = True  # each chunk restored while in cache (csrc/tensor_codec)

    def __init__(self, rotate_bits: int = 0, chunk_elements: int = DEFAULT_CHUNK_BYTES,
                 context_planes: bool = False):
        if rotate_bits not in (0, 1) or isinstance(rotate_bits, bool):
            raise TensorzipError(f"rotate_bits must be 0 or 1, got {rotate_bits!r}")
        if not isinstance(chunk_elements, int) or isinstance(chunk_elements, bool) or chunk_elements < 1:
            raise TensorzipError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
        if not isinstance(context_planes, bool):
            raise TensorzipError(f"context_planes must be true or false, got {context_planes!r}")
        self.rotate_bits = rotate_bits
        self.chunk_elements = chunk_elements
        # Plane 1 may be coded given plane 0 (the `max` level; docs/format.md, mode 3). Recorded
        # only where a chunk uses it, so a reader that predates it refuses exactly those tensors.
        self.context_planes = context_planes

    @classmethod
    def for_dtype(cls, spec: DTypeSpec, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                  context_planes: bool = False) -> BytePlanesCodec:
        """The codec with the measured default layout of a dtype (``context_planes``: the
        ``max`` level's model, for elements of two bytes or more)."""
        return cls(rotate_bits=spec.rotate_bits, chunk_elements=max(1, chunk_bytes // spec.itemsize),
                   context_planes=context_planes and spec.itemsize >= 2)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"id": self.codec_id, "rotate_bits": self.rotate_bits,
                                  "chunk_elements": self.chunk_elements}
        if self.context_planes:
            config["context_planes"] = True
        return config

    def without_context(self) -> BytePlanesCodec:
        """The same layout without the context model: what a tensor none of whose chunks used
        it records."""
        return BytePlanesCodec(self.rotate_bits, self.chunk_elements)

    def chunk_count(self, elements: int) -> int | None:
        return -(-elements // self.chunk_elements)

    def elements_per_chunk(self) -> int | None:
        return self.chunk_elements

    def _native_layout(self, spec: DTypeSpec) -> tuple[int, int, int]:
        if self.chunk_elements * spec.itemsize > _native.MAX_CHUNK_BYTES:
            raise TensorzipError(
                f"chunk_elements={self.chunk_elements} x {spec.itemsize} bytes exceeds the "
                f"{_native.MAX_CHUNK_BYTES}-byte chunk limit"
            )
        return spec.itemsize, self.rotate_bits, self.chunk_elements

    def _native_job_layout(self, spec: DTypeSpec) -> tuple[int, int, int, bool]:
        return (*self._native_layout(spec), self.context_planes)

    @classmethod
    def _native_jobs(cls, jobs: Sequence[EncodeJob]) -> list[tuple[Any, int, int, int, bool]]:
        native_jobs = []
        for job in jobs:
            flat = np.ascontiguousarray(job.array).reshape(-1).view(np.uint8)
            native_jobs.append((flat, *job.codec._native_job_layout(job.spec)))
        return native_jobs

    @staticmethod
    def _results(jobs: Sequence[EncodeJob], encoded: Any) -> list[EncodedTensor]:
        results = []
        for job, (chunks, crcs, hist, bound) in zip(jobs, encoded, strict=True):
            codec = job.codec
            recorded = None
            if codec.context_planes and not any(uses_context_plane(chunk) for chunk in chunks):
                recorded = codec.without_context()
            results.append(EncodedTensor(list(chunks), list(crcs), hist, bound, recorded))
        return results

    @classmethod
    def encode_batch(cls, jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]:
        return cls._results(jobs, _native.encode_tensors(cls._native_jobs(jobs), threads))

    @classmethod
    def batch_encoder(cls, threads: int) -> Callable[[Sequence[EncodeJob]], list[EncodedTensor]]:
        encoder = _native.StreamingEncoder(threads)

        def encode(jobs: Sequence[EncodeJob]) -> list[EncodedTensor]:
            return cls._results(jobs, encoder.encode(cls._native_jobs(jobs)))

        return encode

    @classmethod
    def decode_batch(cls, jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None:
        native_jobs = []
        for job in jobs:
            table = [(c.offset, c.length, c.crc32c) for c in job.chunks]
            flat = job.out.reshape(-1).view(np.uint8)
            layout = job.codec._native_job_layout(job.spec)
            if job.base is None:
                native_jobs.append((job.source, table, flat, *layout))
            else:
                base = np.ascontiguousarray(job.base).reshape(-1).view(np.uint8)
                native_jobs.append((job.source, table, flat, *layout, base, delta_mode_number(job.delta_mode),
                                    job.spec.is_float))
        try:
            _native.decode_tensors(native_jobs, threads, verify_checksums)
        except _native.ChunkError as error:
            reason, job_index, chunk = error.args
            raise ChunkDecodeError(str(reason), int(job_index), int(chunk)) from None
