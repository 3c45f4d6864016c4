"""An embedding collection as a .tzip file: the tensors of its code plus a metadata
record saying how it was made and what recall it measured (docs/format.md,
"Embedding collections").
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..container.records import EMBEDDINGS_KEY
from ..errors import FormatError
from ..quantization import LayerFormat, layer_bytes, open_layer, write_layer
from .code import EmbeddingCode
from .packed_symbols import PackedSymbols

FORMAT_VERSION = 1
LAYER = LayerFormat(EMBEDDINGS_KEY, "an embedding collection", FORMAT_VERSION, (FORMAT_VERSION,),
                    (("count", int), ("dim", int), ("dtype", str), ("mode", str)))


@dataclass(frozen=True)
class StoredCollection:
    """What a file holds: the code (lossy) or the vectors (lossless), and its record."""

    record: dict[str, Any]
    code: EmbeddingCode | None
    vectors: np.ndarray | None


def _tensors(code: EmbeddingCode | None, vectors: np.ndarray | None) -> dict[str, np.ndarray]:
    """What a collection stores: the vectors (lossless), or the parts of its code."""
    if vectors is not None:
        return {"vectors": vectors}
    assert code is not None
    tensors = {"mean": code.mean}
    if code.directions is not None:
        tensors["directions"] = code.directions
    else:
        tensors["dims"] = code.dims
    return {**tensors, "offset": code.offset, "step": code.step, "symbols": code.symbols}


def write(target: str | os.PathLike[str] | BinaryIO, record: dict[str, Any], *, code: EmbeddingCode | None = None,
          vectors: np.ndarray | None = None, threads: int | None = None, overwrite: bool = True) -> int:
    """Write a collection (a path atomically, or a binary stream); returns the bytes
    written. One chunk per kept dimension, so each gets its own entropy table."""
    return write_layer(target, LAYER, record, _tensors(code, vectors), table_per_row=("symbols",), threads=threads,
                       overwrite=overwrite)


def to_bytes(record: dict[str, Any], *, code: EmbeddingCode | None = None, vectors: np.ndarray | None = None,
             threads: int | None = None) -> bytes:
    """``write`` into memory (the solver measures sizes this way)."""
    return layer_bytes(LAYER, record, _tensors(code, vectors), table_per_row=("symbols",), threads=threads)


def read(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
         threads: int | None = None) -> StoredCollection:
    """A stored collection, its record and tensors checked to fit together."""
    with open_layer(source, LAYER, threads) as (reader, record):
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
    # Kept open for search: each dimension's row at the bits its symbols need (packed_symbols.py).
    code = dataclasses.replace(code, symbols=PackedSymbols(tensors.pop("symbols")))
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
