"""Reading and writing the safetensors format without the safetensors package.

Input files are memory-mapped and validated (bounded header, offsets inside the
file, no holes or overlaps) before any tensor is touched, so a compressor can
stream tensors from a checkpoint larger than RAM. The writer reproduces a file
byte for byte from its original header text.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import dtypes
from ..container.records import SAFETENSORS_SOURCE, load_json
from ..dtypes import DTypeSpec
from ..errors import InputFileError, LimitExceededError, TensorzipError, UnsupportedDtypeError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit safetensors itself enforces


MAX_DIMENSIONS = 64  # numpy's limit (and the .tzip header's)

@dataclass(frozen=True)
class SafetensorsEntry:
    name: str
    spec: DTypeSpec
    shape: tuple[int, ...]
    begin: int  # offsets relative to the start of the data area
    end: int


def parse_header(raw: bytes, where: str, data_length: int) -> tuple[list[SafetensorsEntry], dict[str, str] | None]:
    """Entries in data-offset order and the ``__metadata__``; validated against the data length."""
    doc = load_json(raw, where, "safetensors header", InputFileError)
    if not isinstance(doc, dict):
        raise InputFileError(f"{where}: safetensors header must be a JSON object")
    metadata = doc.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InputFileError(f"{where}: __metadata__ must map strings to strings")
    entries = []
    for name, info in doc.items():
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info)):
            raise InputFileError(f"{where}: tensor {name!r} lacks dtype, shape or data_offsets")
        try:
            spec = dtypes.by_safetensors_name(info["dtype"])
        except UnsupportedDtypeError as error:
            raise UnsupportedDtypeError(f"{where}: tensor {name!r}: {error}") from None
        shape, offsets = info["shape"], info["data_offsets"]
        valid_shape = isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        )
        valid_offsets = (
            isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        )
        if not (valid_shape and valid_offsets):
            raise InputFileError(f"{where}: tensor {name!r} has a malformed shape or data_offsets")
        if len(shape) > MAX_DIMENSIONS or math.prod(d for d in shape if d) * spec.itemsize >= 1 << 62:
            raise InputFileError(f"{where}: tensor {name!r} has shape {shape}: more than {MAX_DIMENSIONS} "
                                 "dimensions, or more elements than any array can hold")
        begin, end = offsets
        if end - begin != math.prod(shape) * spec.itemsize or begin < 0:
            raise InputFileError(
                f"{where}: tensor {name!r} spans bytes [{begin}, {end}) but its dtype and shape need "
                f"{math.prod(shape) * spec.itemsize}"
            )
        entries.append(SafetensorsEntry(name, spec, tuple(shape), begin, end))
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for entry in entries:
        if entry.begin != position:
            raise InputFileError(
                f"{where}: tensor {entry.name!r} starts at data offset {entry.begin}, expected {position} "
                "(overlapping tensors or a hole)"
            )
        position = entry.end
    if position != data_length:
        raise InputFileError(
            f"{where}: tensors cover {position} bytes of data but the file holds {data_length} (truncated?)"
        )
    return entries, metadata


class SafetensorsFile:
    """A memory-mapped, validated safetensors file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.where = str(path)
        try:
            with open(path, "rb") as handle:  # one open: the header read and the bytes mapped are one file
                status = os.fstat(handle.fileno())
                size = status.st_size
                prefix = handle.read(8)
                if len(prefix) < 8:
                    raise InputFileError(f"{self.where}: not a safetensors file (only {size} bytes)")
                (header_length,) = struct.unpack("<Q", prefix)
                if header_length > MAX_HEADER_BYTES:
                    raise LimitExceededError(
                        f"{self.where}: safetensors header declares {header_length} bytes "
                        f"(limit {MAX_HEADER_BYTES}); not a safetensors file?"
                    )
                if 8 + header_length > size:
                    raise InputFileError(
                        f"{self.where}: safetensors header runs past the end of the file (truncated?)"
                    )
                raw = handle.read(header_length)
                self._map = np.memmap(handle, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        except FileNotFoundError:
            raise InputFileError(f"{self.where}: no such file") from None
        except IsADirectoryError:
            raise InputFileError(f"{self.where}: is a directory, not a safetensors file") from None
        except PermissionError as error:
            raise InputFileError(f"{self.where}: cannot read ({error.strerror})") from None
        self.size = size
        self.data_start = 8 + header_length
        self.header_text = raw.decode("utf-8", errors="replace")
        self.entries, self.metadata = parse_header(raw, self.where, size - self.data_start)
        self._by_name = {e.name: e for e in self.entries}
        # The file as mapped (not as its path says now): what remembered pins are keyed on.
        self.mapped_status = status

    @property
    def tensor_bytes(self) -> int:
        return sum(e.end - e.begin for e in self.entries)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        return ((e.name, self.array(e)) for e in self.entries)

    def source_record(self) -> dict[str, Any]:
        return {"format": SAFETENSORS_SOURCE, "header": self.header_text}

    def locations(self) -> Iterator[tuple[str, np.ndarray, str, int]]:
        return ((e.name, self.array(e), self.where, self.data_start + e.begin) for e in self.entries)

    def release_tensor(self, name: str) -> None:
        entry = self._by_name.get(name)
        if entry is not None:
            self.release(entry)

    def other_files(self) -> None:
        return None

    def array(self, entry: SafetensorsEntry) -> np.ndarray:
        """A read-only view of one tensor straight from the mapped file."""
        # A plain ndarray view of the map (it keeps the map alive): every slice of an np.memmap
        # is another memmap, made through Python (__array_finalize__), and the write plan slices
        # each tensor dozens of times (9 ms of a 130 ms MiniLM FP32 compress).
        raw = np.asarray(self._map)[self.data_start + entry.begin : self.data_start + entry.end]
        return raw.view(entry.spec.numpy_dtype).reshape(entry.shape)

    def release(self, entry: SafetensorsEntry) -> None:
        """Drop the mapped pages of a tensor that has been read from this process's
        resident memory. The mapping is read-only and file-backed, so nothing is lost:
        a later read faults the pages in again from the page cache. Without this, a
        checkpoint read once from start to end stays resident in full (its RSS grows
        to the file size), which is what bounds memory when compressing files
        larger than RAM."""
        handle = getattr(self._map, "_mmap", None)
        if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = (self.data_start + entry.begin) // page * page
        end = min(self.size, -(-(self.data_start + entry.end) // page) * page)
        if end > start:
            handle.madvise(mmap.MADV_DONTNEED, start, end - start)


def build_header(
    tensors: Iterable[tuple[str, DTypeSpec, tuple[int, ...]]], metadata: Mapping[str, str] | None
) -> bytes:
    """A safetensors header for tensors laid out in the given order, padded to 8 bytes."""
    doc: dict[str, object] = {}
    if metadata:
        doc["__metadata__"] = dict(metadata)
    offset = 0
    for name, spec, shape in tensors:
        nbytes = math.prod(shape) * spec.itemsize
        doc[name] = {"dtype": spec.safetensors_name, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_prefix(handle: BinaryIO, header: bytes) -> None:
    handle.write(struct.pack("<Q", len(header)))
    handle.write(header)


def check_layout_matches(
    entries: list[SafetensorsEntry], names_in_order: list[str], where: str
) -> None:
    """The stored tensors must be exactly those of the original header, in data order."""
    expected = [e.name for e in entries]
    if expected != names_in_order:
        raise TensorzipError(
            f"{where}: the stored safetensors header does not match the stored tensors "
            f"({len(expected)} named there, {len(names_in_order)} stored)"
        )
