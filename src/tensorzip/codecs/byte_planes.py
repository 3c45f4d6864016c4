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
from .base import ChunkDecodeError, Codec, DecodeJob, EncodedTensor, EncodeJob

DEFAULT_CHUNK_BYTES = 1 << 19  # bytes of input per chunk


class BytePlanesCodec(Codec):
    """Split elements into byte planes (after rotating each element left by
    ``rotate_bits``) and entropy-code every plane of every chunk separately.

    ``chunk_elements`` fixes the random-access granularity: each chunk decodes on
    its own, so a reader can fetch any part of a tensor and threads can share the
    work. ``for_dtype`` picks 512 KiB of input per chunk (measured best on MiniLM:
    per-chunk tables adapt to local statistics; smaller chunks pay more overhead).
    """

    codec_id: ClassVar[str] = "tensorzip.byte_planes"

    def __init__(self, rotate_bits: int = 0, chunk_elements: int = DEFAULT_CHUNK_BYTES):
        if rotate_bits not in (0, 1) or isinstance(rotate_bits, bool):
            raise TensorzipError(f"rotate_bits must be 0 or 1, got {rotate_bits!r}")
        if not isinstance(chunk_elements, int) or isinstance(chunk_elements, bool) or chunk_elements < 1:
            raise TensorzipError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
        self.rotate_bits = rotate_bits
        self.chunk_elements = chunk_elements

    @classmethod
    def for_dtype(cls, spec: DTypeSpec, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> BytePlanesCodec:
        """The codec with the measured default layout of a dtype."""
        return cls(rotate_bits=spec.rotate_bits, chunk_elements=max(1, chunk_bytes // spec.itemsize))

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "rotate_bits": self.rotate_bits, "chunk_elements": self.chunk_elements}

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

    @classmethod
    def _native_jobs(cls, jobs: Sequence[EncodeJob]) -> list[tuple[Any, int, int, int]]:
        native_jobs = []
        for job in jobs:
            flat = np.ascontiguousarray(job.array).reshape(-1).view(np.uint8)
            native_jobs.append((flat, *job.codec._native_layout(job.spec)))
        return native_jobs

    @classmethod
    def encode_batch(cls, jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]:
        encoded = _native.encode_tensors(cls._native_jobs(jobs), threads)
        return [EncodedTensor(list(chunks), list(crcs), hist, bound) for chunks, crcs, hist, bound in encoded]

    @classmethod
    def batch_encoder(cls, threads: int) -> Callable[[Sequence[EncodeJob]], list[EncodedTensor]]:
        encoder = _native.StreamingEncoder(threads)

        def encode(jobs: Sequence[EncodeJob]) -> list[EncodedTensor]:
            encoded = encoder.encode(cls._native_jobs(jobs))
            return [EncodedTensor(list(chunks), list(crcs), hist, bound) for chunks, crcs, hist, bound in encoded]

        return encode

    @classmethod
    def decode_batch(cls, jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None:
        native_jobs = []
        for job in jobs:
            table = [(c.offset, c.length, c.crc32c) for c in job.chunks]
            flat = job.out.reshape(-1).view(np.uint8)
            native_jobs.append((job.source, table, flat, *job.codec._native_layout(job.spec)))
        try:
            _native.decode_tensors(native_jobs, threads, verify_checksums)
        except _native.ChunkError as error:
            reason, job_index, chunk = error.args
            raise ChunkDecodeError(str(reason), int(job_index), int(chunk)) from None
