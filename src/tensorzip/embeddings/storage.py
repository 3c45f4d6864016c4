"""An embedding collection as a .tzip file: the tensors of its code plus a metadata
record saying how it was made and what recall it measured (docs/format.md,
"Embedding collections").
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import _native
from ..codecs import BytePlanesCodec
from ..container import TzipReader, TzipWriter
from ..errors import FormatError
from .code import EmbeddingCode

METADATA_KEY = "tensorzip.embeddings"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredCollection:
    """What a file holds: the code (lossy) or the vectors (lossless), and its record."""

    record: dict[str, Any]
    code: EmbeddingCode | None
    vectors: np.ndarray | None


def write(target: str | os.PathLike[str] | BinaryIO, record: dict[str, Any], *, code: EmbeddingCode | None = None,
          vectors: np.ndarray | None = None, threads: int | None = None) -> int:
    """Write a collection; returns the bytes written."""
    record = {"format": FORMAT_VERSION, **record}
    with TzipWriter(target, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)}, threads=threads) as writer:
        if vectors is not None:
            writer.add("vectors", np.ascontiguousarray(vectors))
        else:
            assert code is not None
            writer.add("mean", code.mean)
            if code.directions is not None:
                writer.add("directions", np.ascontiguousarray(code.directions))
            else:
                writer.add("dims", code.dims)
            writer.add("offset", code.offset)
            writer.add("step", code.step)
            # One chunk per kept dimension, so each gets its own entropy table.
            per_dimension = BytePlanesCodec(rotate_bits=0, chunk_elements=max(1, min(code.count,
                                                                                     _native.MAX_CHUNK_BYTES // 2)))
            writer.add("symbols", np.ascontiguousarray(code.symbols), per_dimension)
    return writer.close()


def to_bytes(record: dict[str, Any], *, code: EmbeddingCode | None = None, vectors: np.ndarray | None = None,
             threads: int | None = None) -> bytes:
    buffer = io.BytesIO()
    write(buffer, record, code=code, vectors=vectors, threads=threads)
    return buffer.getvalue()


def read(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
         threads: int | None = None) -> StoredCollection:
    with TzipReader(source, threads=threads) as reader:
        record = reader.layer_record(METADATA_KEY, "an embedding collection", (FORMAT_VERSION,))
        names = set(reader.keys())
        if names == {"vectors"}:
            vectors = reader.get_tensor("vectors")
            if vectors.ndim != 2:
                raise FormatError(f"{reader.where}: embedding vectors of shape {vectors.shape}, not a matrix")
            _check_sizes(record, vectors.shape, reader.where)
            return StoredCollection(record, None, vectors)
        needed = {"mean", "offset", "step", "symbols"}
        if not needed <= names or not ({"directions", "dims"} & names):
            raise FormatError(f"{reader.where}: embedding collection lacks tensors ({sorted(names)})")
        tensors = dict(reader.iter_tensors())
    code = EmbeddingCode(tensors["mean"], tensors.get("directions"), tensors.get("dims", np.zeros(0, np.int32)),
                         tensors["offset"], tensors["step"], tensors["symbols"], bool(record.get("unit_norm")))
    _check(code, reader.where)
    _check_sizes(record, (code.count, code.dim), reader.where)
    return StoredCollection(record, code, None)


def _check_sizes(record: dict[str, Any], shape: tuple[int, int], where: str) -> None:
    """The record's count and dim (what search and bytes_per_vector use) are the tensors'."""
    for key, size in zip(("count", "dim"), shape, strict=True):
        if record.get(key) != size:
            raise FormatError(f"{where}: embedding record says {key} {record.get(key)!r}, the tensors hold {size}")


def _check(code: EmbeddingCode, where: str) -> None:
    """Shapes that agree, so decoding cannot index out of bounds."""
    kept = code.symbols.shape[0] if code.symbols.ndim == 2 else -1
    ok = (code.mean.ndim == 1 and code.offset.shape == (kept,) and code.step.shape == (kept,)
          and code.symbols.dtype in (np.uint8, np.uint16))
    if code.directions is not None:
        ok = ok and code.directions.shape == (code.dim, kept)
    else:
        ok = ok and code.dims.shape == (kept,) and bool(np.all((code.dims >= 0) & (code.dims < code.dim)))
    if not ok:
        raise FormatError(f"{where}: embedding collection tensors have inconsistent shapes")
