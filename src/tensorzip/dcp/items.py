"""One DCP item as ``stream.tensorzip/2`` stores it, and reading items back from a checkpoint
folder, following its chain of bases.

An item is a marker byte, then:

- ``N``: a .tzip image of the tensor (``tz.compress``'s form);
- ``B``: a tensor coded against the same item of a *base* checkpoint (the one saved before):
  a 4-byte little-endian length, a JSON frame ``{"file", "offset", "length", "mode",
  "digest"}`` naming that item in the base folder, how the residual is undone
  (``codecs.residual``) and the content hash pinning the base item; then a .tzip image of the
  residual;
- ``T``: a .tzip image of the item's torch.save bytes (every item of format 1; pickled values);
- ``R``: the item's bytes, kept as they are.

Every folder ``TensorzipWriter`` writes has ``tensorzip-dcp.json`` (``{"format":
"stream.tensorzip/2"}``, so ``tensorzip info`` knows it); one coded against a base names it
there (``"base": NAME``). The base is looked for beside the folder, or given
(``TensorzipReader(path, base=...)``), and may itself have a base.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes
from ..arrays import decompress
from ..codecs.residual import Delta, digest, restore
from ..container.records import DCP_RECORD, read_dcp_record
from ..errors import BaseMismatchError, BaseRequiredError, CorruptDataError, TensorzipError

CODED = b"T"
KEPT = b"R"
TENSOR = b"N"
AGAINST_BASE = b"B"
BASE_RECORD = DCP_RECORD
FORMAT = "stream.tensorzip/2"
MAX_CHAIN = 256
_LENGTH = struct.Struct("<I")


def frame(base_file: str, offset: int, length: int, mode: str, pin: str) -> bytes:
    """The head of a ``B`` item: marker, length, JSON frame (the residual's image follows)."""
    raw = json.dumps({"file": base_file, "offset": offset, "length": length, "mode": mode, "digest": pin}).encode()
    return AGAINST_BASE + _LENGTH.pack(len(raw)) + raw


def write_record(folder: str | os.PathLike[str], base: str | os.PathLike[str] | None) -> None:
    record = {"format": FORMAT} | ({"base": Path(base).name} if base is not None else {})
    (Path(folder) / BASE_RECORD).write_text(json.dumps(record))


class ItemReader:
    """Reads the items of one DCP checkpoint folder by location (its base opened when needed)."""

    def __init__(self, folder: str | os.PathLike[str], base: str | os.PathLike[str] | None = None,
                 threads: int | None = None, chain: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self._given = base
        self._base: ItemReader | None = None
        self.threads = threads
        self._chain = (*chain, str(self.folder.resolve()))

    def base(self) -> ItemReader:
        if self._base is None:
            name = read_dcp_record(self.folder).get("base")
            if self._given is None and not isinstance(name, str):
                raise BaseRequiredError(f"{self.folder}: an item is coded against a base checkpoint but the folder's "
                                        f"{BASE_RECORD} names none; pass it as TensorzipReader(path, base=...)")
            if isinstance(name, str) and (not name or "/" in name or "\\" in name or name in (".", "..")):
                raise CorruptDataError(f"{self.folder / BASE_RECORD}: base {name!r} is not a folder name")
            path = Path(self._given) if self._given is not None else self.folder.parent / name
            if not (path / ".metadata").is_file():
                raise BaseRequiredError(f"{self.folder}: coded against the DCP checkpoint {name or str(path)!r}, which "
                                        f"is not at {path}; pass its folder as TensorzipReader(path, base=...)")
            if str(path.resolve()) in self._chain or len(self._chain) >= MAX_CHAIN:
                raise BaseMismatchError(f"{self.folder}: its chain of bases comes back to {path} (or is longer than "
                                        f"{MAX_CHAIN}); give the checkpoint it was saved against with base=")
            self._base = ItemReader(path, threads=self.threads, chain=self._chain)
        return self._base

    def read(self, file: str, offset: int, length: int) -> bytes:
        path = self.folder / file
        if "/" in file or "\\" in file or file in ("", ".", ".."):
            raise CorruptDataError(f"{self.folder}: item file {file!r} is not a plain file name")
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
        except OSError as error:
            raise BaseRequiredError(f"{path}: cannot read an item ({error.strerror or error})") from None
        if len(data) != length:
            raise CorruptDataError(f"{path}: the item at offset {offset} is cut short ({len(data)} of {length} bytes)")
        return data

    def array(self, file: str, offset: int, length: int) -> np.ndarray | None:
        """The tensor an item holds, if it is an ``N`` or ``B`` item (else None)."""
        return self.decode(memoryview(self.read(file, offset, length)), f"{self.folder / file}@{offset}")

    def decode(self, data: memoryview, where: str) -> np.ndarray | None:
        marker, body = bytes(data[:1]), data[1:]
        if marker == TENSOR:
            return decompress(body, threads=self.threads, framework="np")
        if marker != AGAINST_BASE:
            return None
        if len(body) < _LENGTH.size:
            raise CorruptDataError(f"{where}: an item coded against a base is cut short")
        (size,) = _LENGTH.unpack_from(body)
        try:
            head = json.loads(bytes(body[_LENGTH.size : _LENGTH.size + size]))
            file, offset, length = head["file"], int(head["offset"]), int(head["length"])
            pin = Delta.from_json({"mode": head["mode"], "base_tensor": "", "base_digest": head["digest"]}, where)
        except (ValueError, KeyError, TypeError, TensorzipError) as error:
            raise CorruptDataError(f"{where}: the frame of an item coded against a base is damaged ({error})") from None
        stored = decompress(body[_LENGTH.size + size :], threads=self.threads, framework="np")
        base = self.base().array(file, offset, length)
        if base is None or base.dtype != stored.dtype or base.size != stored.size:
            raise BaseMismatchError(f"{where}: its base item ({file} at {offset}) is not a tensor of the same dtype "
                                    "and size: the base folder is not the checkpoint it was saved against; give the "
                                    "right base with base=")
        if digest(base) != pin.base_digest:
            raise BaseMismatchError(f"{where}: its base item ({self.base().folder / file} at {offset}) differs from "
                                    "the one it was coded against: the base folder is not the checkpoint it was "
                                    "saved against; give the right base with base=")
        stored = np.ascontiguousarray(stored)
        restore(stored, base, pin.mode, dtypes.by_numpy(stored.dtype), self.threads or 0)
        return stored


def base_location(metadata: Any, index: Any) -> tuple[str, int, int] | None:
    """Where the base checkpoint (its DCP metadata) keeps the item ``index`` (fqn and chunk offsets)."""
    info = metadata.storage_data.get(index)
    if info is None or tuple(info.transform_descriptors or ()) not in (("stream.tensorzip/2",),):
        return None
    return info.relative_path, info.offset, info.length
