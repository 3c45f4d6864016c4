"""A lossy layer's file: an ordinary .tzip whose tensors are the parts of the layer's
code and whose metadata holds the layer's JSON record under its reserved key
(``container/records.py``), with the record's format number; read back, the key and
the format are checked by the container (``TzipReader.layer_record``) before anything
else is trusted.

A tensor named in ``table_per_row`` (integer symbols) is stored one chunk per slice of
its first axis, so each slice (a KV layer, an embedding dimension) gets its own entropy
table: the context measured to pay for these layers. Every other tensor gets the
container's default codec.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import _native
from ..codecs import BytePlanesCodec
from ..container import TzipReader, TzipWriter
from ..container.kinds import PathKind, kind_of_metadata
from ..errors import FormatError

# Elements per chunk at most for a table per row (2^21: what the layers have always used,
# fixed here so a file's chunking never follows a native constant).
_ROW_CHUNK_LIMIT = 1 << 21

Source = str | os.PathLike[str] | bytes | bytearray | memoryview
Target = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True)
class LayerFormat:
    """Which layer a file holds and in which record formats."""

    key: str  # the metadata key of the record (container.records.*_KEY)
    what: str  # the kind of file, for errors: "a KV cache"
    version: int  # the record format this code writes
    readable: tuple[int, ...]  # the record formats this code reads
    # Fields every readable record has, with their JSON types: checked when the file is
    # opened, so no reader or summary meets a crafted record's missing key as a KeyError.
    fields: tuple[tuple[str, type | tuple[type, ...]], ...] = ()

    def check(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        for name, kind in self.fields:
            value = record.get(name)
            if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
                raise FormatError(f"{where}: {self.what}'s record has no valid {name!r} (a damaged or crafted file)")
            if name.endswith("shape") and not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in value):
                raise FormatError(f"{where}: {self.what}'s record has a {name!r} that is not a list of sizes")
        return record


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def per_row_codec(array: np.ndarray) -> BytePlanesCodec:
    """Byte planes of integer symbols (no rotation), one chunk per slice of the first axis."""
    row = max(1, array.size // max(1, array.shape[0])) if array.ndim else 1
    limit = min(_ROW_CHUNK_LIMIT, _native.MAX_CHUNK_BYTES // max(1, array.dtype.itemsize))
    return BytePlanesCodec(rotate_bits=0, chunk_elements=min(row, limit))


def write_layer(target: Target, layer: LayerFormat, record: Mapping[str, Any],
                tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], *,
                table_per_row: Collection[str] = (), threads: int | None = None, overwrite: bool = True) -> int:
    """Write ``tensors`` (in order) and ``record`` (given ``"format": layer.version`` unless
    it names its own) to ``target``, a path (atomically) or a binary stream; returns the
    file's size in bytes."""
    document = {"format": layer.version, **record}
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    metadata = {layer.key: json.dumps(document, sort_keys=True)}
    with TzipWriter(target, metadata=metadata, threads=threads, overwrite=overwrite) as writer:
        for name, array in items:
            array = np.ascontiguousarray(array)
            writer.add(name, array, per_row_codec(array) if name in table_per_row else None)
    return writer.close()


def layer_bytes(layer: LayerFormat, record: Mapping[str, Any],
                tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], *,
                table_per_row: Collection[str] = (), threads: int | None = None) -> bytes:
    """``write_layer`` into memory: the file's bytes."""
    buffer = io.BytesIO()
    write_layer(buffer, layer, record, tensors, table_per_row=table_per_row, threads=threads)
    return buffer.getvalue()


@contextmanager
def open_layer(source: Source, layer: LayerFormat, threads: int | None = None) -> Iterator[tuple[TzipReader,
                                                                                                  dict[str, Any]]]:
    """The open reader and the layer's record, checked to be of ``layer`` in a readable
    format (FormatError naming the file otherwise), for a layer that checks its tensor
    names before decoding them."""
    with TzipReader(source, threads=threads) as reader:
        if layer.key not in (reader.metadata() or {}):  # another kind: say which, and what reads it
            kind = kind_of_metadata(reader.header.metadata, reader.header.source)
            raise PathKind(reader.where, kind).refuse(f"a reader of {layer.what}", expected=layer.what)
        yield reader, layer.check(reader.layer_record(layer.key, layer.what, layer.readable), reader.where)


def read_layer(source: Source, layer: LayerFormat, threads: int | None = None) -> tuple[dict[str, Any],
                                                                                      dict[str, np.ndarray]]:
    """The layer's record and every tensor of the file, decoded."""
    with open_layer(source, layer, threads) as (reader, record):
        return record, dict(reader.iter_tensors())
