"""Sparse tensors (pruned weights, masks, activations after ReLU): a zero mask plus
the nonzero values.

Byte planes pay for a zero once per plane (four times for FP32), because each
plane codes it separately; here the mask codes it once and the values carry no
zeros. "Zero" means the all-zero bit pattern, so -0.0 and NaNs are values.

A chunk of ``chunk_elements`` elements is stored as
``u32 mask_length | mask | values``: the mask is a byte-plane chunk of one byte
per element (0 or 1), the values a byte-plane chunk of the chunk's nonzero
elements in order (absent when there are none). Both use the native coder.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .. import _native
from ..errors import TensorzipError
from .base import ChunkDecodeError, Codec, DecodeJob, EncodedTensor, EncodeJob, order0_bound_bytes
from .byte_planes import DEFAULT_CHUNK_BYTES, BytePlanesCodec

_MASK_LENGTH = struct.Struct("<I")


def _carrier(itemsize: int) -> str:
    return f"u{itemsize}"


class SparseCodec(Codec):
    """Zero mask + nonzero values, each coded with byte planes."""

    codec_id: ClassVar[str] = "tensorzip.sparse"

    def __init__(self, rotate_bits: int = 0, chunk_elements: int = DEFAULT_CHUNK_BYTES // 4):
        self.values = BytePlanesCodec(rotate_bits=rotate_bits, chunk_elements=chunk_elements)
        if chunk_elements > _native.MAX_CHUNK_BYTES:  # the mask has one byte per element
            raise TensorzipError(f"chunk_elements={chunk_elements} exceeds the {_native.MAX_CHUNK_BYTES}-element "
                                 "mask limit")

    @property
    def chunk_elements(self) -> int:
        return self.values.chunk_elements

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "rotate_bits": self.values.rotate_bits, "chunk_elements": self.chunk_elements}

    def chunk_count(self, elements: int) -> int | None:
        return self.values.chunk_count(elements)

    def elements_per_chunk(self) -> int | None:
        return self.values.chunk_elements

    @classmethod
    def encode_batch(cls, jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]:
        native_jobs = []
        chunk_counts = []
        for job in jobs:
            codec = job.codec
            width, rotate, _ = codec.values._native_layout(job.spec)
            flat = np.ascontiguousarray(job.array).reshape(-1).view(_carrier(width))
            nonzero = flat != 0
            starts = range(0, flat.size, codec.chunk_elements)
            for start in starts:
                part = slice(start, start + codec.chunk_elements)
                mask = nonzero[part].view(np.uint8)
                values = flat[part][nonzero[part]].view(np.uint8)
                native_jobs.append((mask, 1, 0, max(1, mask.size)))
                native_jobs.append((values, width, rotate, max(1, values.size // width)))
            chunk_counts.append(len(starts))
        encoded = iter(_native.encode_tensors(native_jobs, threads))
        results = []
        for job, chunks in zip(jobs, chunk_counts, strict=True):
            stored, crcs = [], []
            mask_histogram = np.zeros((1, 256), np.uint64)
            value_histograms = np.zeros((job.spec.itemsize, 256), np.uint64)
            for _ in range(chunks):
                mask_chunks, _, mask_counts, _ = next(encoded)
                value_chunks, _, value_counts, _ = next(encoded)
                mask_bytes = b"".join(bytes(c) for c in mask_chunks)
                chunk = _MASK_LENGTH.pack(len(mask_bytes)) + mask_bytes + b"".join(bytes(c) for c in value_chunks)
                stored.append(np.frombuffer(chunk, np.uint8))
                crcs.append(_native.crc32c(chunk))
                mask_histogram += mask_counts
                value_histograms += value_counts
            # The order-0 bound of this layout: the mask plane plus the value planes, per tensor.
            bound = order0_bound_bytes(mask_histogram) + order0_bound_bytes(value_histograms)
            results.append(EncodedTensor(stored, crcs, value_histograms, bound))
        return results

    @classmethod
    def decode_batch(cls, jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None:
        # Pass 1: every chunk's checksum and mask (one native call); pass 2: the values.
        masks, mask_jobs, pieces = [], [], []
        for index, job in enumerate(jobs):
            codec = job.codec
            total = job.out.size
            source = memoryview(job.source).cast("B")
            for number, ref in enumerate(job.chunks):
                chunk = source[ref.offset : ref.offset + ref.length]
                if verify_checksums and _native.crc32c(chunk) != ref.crc32c:
                    raise ChunkDecodeError("checksum mismatch (CRC-32C)", index, number)
                if len(chunk) < _MASK_LENGTH.size:
                    raise ChunkDecodeError("sparse chunk is shorter than its mask length", index, number)
                (mask_length,) = _MASK_LENGTH.unpack_from(chunk)
                if mask_length > len(chunk) - _MASK_LENGTH.size:
                    raise ChunkDecodeError("sparse chunk's mask runs past its end", index, number)
                count = min(codec.chunk_elements, total - number * codec.chunk_elements)
                if count <= 0:
                    raise ChunkDecodeError("more chunks than the tensor's shape needs", index, number)
                mask = np.empty(count, np.uint8)
                body = chunk[_MASK_LENGTH.size : _MASK_LENGTH.size + mask_length]
                mask_jobs.append((body, [(0, mask_length, 0)], mask, 1, 0, count))
                masks.append(mask)
                pieces.append((index, number, chunk[_MASK_LENGTH.size + mask_length :], count))
            expected = -(-total // codec.chunk_elements) if total else 0
            if len(job.chunks) != expected:
                raise ChunkDecodeError(f"tensor has {len(job.chunks)} chunks, its shape needs {expected}", index, 0)
        cls._native_decode(mask_jobs, threads, pieces)
        value_jobs, values_out = [], []
        for (index, number, body, _count), mask in zip(pieces, masks, strict=True):
            if mask.size and mask.max() > 1:
                raise ChunkDecodeError("sparse mask holds values other than 0 and 1", index, number)
            job = jobs[index]
            width, rotate, _ = job.codec.values._native_layout(job.spec)
            nonzero = int(mask.sum())
            values = np.empty(nonzero, _carrier(width))
            if nonzero:
                value_jobs.append((body, [(0, len(body), 0)], values.view(np.uint8), width, rotate, nonzero))
            elif len(body):
                raise ChunkDecodeError("sparse chunk has values but an all-zero mask", index, number)
            values_out.append(values)
        cls._native_decode(value_jobs, threads, [p for p, m in zip(pieces, masks, strict=True) if m.any()])
        for (index, number, _body, count), mask, values in zip(pieces, masks, values_out, strict=True):
            job = jobs[index]
            start = number * job.codec.chunk_elements
            target = job.out.reshape(-1).view(_carrier(job.spec.itemsize))[start : start + count]
            target[...] = 0
            target[mask.view(bool)] = values

    @staticmethod
    def _native_decode(native_jobs: list, threads: int, pieces: list) -> None:
        try:
            _native.decode_tensors(native_jobs, threads, False)  # checksums were checked per chunk above
        except _native.ChunkError as error:
            reason, job_index, _ = error.args
            index, number = pieces[int(job_index)][:2]
            raise ChunkDecodeError(str(reason), index, number) from None
