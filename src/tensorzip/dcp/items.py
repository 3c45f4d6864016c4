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
from ..codecs.residual import Delta, digest_like, restore
from ..container.records import DCP_RECORD, read_dcp_record
from ..errors import BaseMismatchError, BaseRequiredError, CorruptDataError, InputFileError, TensorzipError

CODED = b"T"
KEPT = b"R"
TENSOR = b"N"
AGAINST_BASE = b"B"
BASE_RECORD = DCP_RECORD
FORMAT = "stream.tensorzip/2"
MAX_CHAIN = 256  # links a reader follows before it takes the chain for a loop
MAX_DEPTH = 16  # links a writer builds: the next save is a keyframe (every item coded plainly)
_LENGTH = struct.Struct("<I")


def frame(base_file: str, offset: int, length: int, mode: str, pin: str) -> bytes:
    """The head of a ``B`` item: marker, length, JSON frame (the residual's image follows)."""
    raw = json.dumps({"file": base_file, "offset": offset, "length": length, "mode": mode, "digest": pin}).encode()
    return AGAINST_BASE + _LENGTH.pack(len(raw)) + raw


def write_record(folder: str | os.PathLike[str], base: str | os.PathLike[str] | None, depth: int) -> None:
    record = {"format": FORMAT} | ({"base": Path(base).name, "depth": depth} if base is not None else {})
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
        if not isinstance(file, str) or "/" in file or "\\" in file or file in ("", ".", ".."):
            raise CorruptDataError(f"{self.folder}: item file {file!r} is not a plain file name")
        path = self.folder / file
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if not (isinstance(offset, int) and isinstance(length, int) and offset >= 0
                        and 0 <= length <= size - offset):
                    raise CorruptDataError(f"{path}: an item at offset {offset} of {length} bytes lies outside the "
                                           f"file ({size:,} bytes): the checkpoint is damaged or cut short")
                handle.seek(offset)
                data = handle.read(length)
        except FileNotFoundError:
            raise BaseRequiredError(f"{path}: missing (a rank file of the checkpoint)") from None
        except OSError as error:
            raise InputFileError(f"{path}: cannot read an item ({error.strerror or error})") from None
        if len(data) != length:
            raise CorruptDataError(f"{path}: the item at offset {offset} is cut short ({len(data)} of {length} bytes)")
        return data

    def array(self, file: str, offset: int, length: int) -> np.ndarray | None:
        """The tensor an item holds, if it is an ``N`` or ``B`` item (else None)."""
        return self.decode(memoryview(self.read(file, offset, length)), f"{self.folder / file}@{offset}")

    def depth(self) -> int:
        """How many checkpoints down this folder's chain of bases go (0: none)."""
        record = read_dcp_record(self.folder)
        depth = record.get("depth", 1 if "base" in record else 0)
        return depth if isinstance(depth, int) and depth >= 0 else MAX_CHAIN

    def decode(self, data: memoryview, where: str, depth: int = 0) -> np.ndarray | None:
        """The tensor of an ``N`` or ``B`` item's bytes (None for other items). A ``B`` item's
        base is decoded first, so a chain holds two arrays at a time, not one per link."""
        marker, body = bytes(data[:1]), data[1:]
        if marker == TENSOR:
            return self._image(body, where)
        if marker != AGAINST_BASE:
            return None
        if len(body) < _LENGTH.size:
            raise CorruptDataError(f"{where}: an item coded against a base is cut short")
        (size,) = _LENGTH.unpack_from(body)
        try:
            head = json.loads(bytes(body[_LENGTH.size : _LENGTH.size + size]))
            file, offset, length = head["file"], head["offset"], head["length"]
            if not (isinstance(file, str) and isinstance(offset, int) and isinstance(length, int)):
                raise TypeError("file, offset and length must be a string and two integers")
            pin = Delta.from_json({"mode": head["mode"], "base_tensor": "", "base_digest": head["digest"]}, where)
        except (ValueError, KeyError, TypeError, TensorzipError) as error:
            raise CorruptDataError(f"{where}: the frame of an item coded against a base is damaged ({error})") from None
        if depth >= MAX_CHAIN:
            raise BaseMismatchError(f"{where}: more than {MAX_CHAIN} checkpoints down its chain of bases")
        base_reader = self.base()
        base = base_reader.decode(memoryview(base_reader.read(file, offset, length)),
                                  f"{base_reader.folder / file}@{offset}", depth + 1)
        if base is None or digest_like(base, pin.base_digest) != pin.base_digest:
            raise BaseMismatchError(f"{where}: its base item ({base_reader.folder / file} at {offset}) differs from "
                                    "the one it was coded against: the base folder is not the checkpoint it was "
                                    "saved against; give the right base with base=")
        stored = np.ascontiguousarray(self._image(body[_LENGTH.size + size :], where))
        if base.dtype != stored.dtype or base.size != stored.size:
            raise CorruptDataError(f"{where}: its residual and its base item differ in dtype or size")
        restore(stored, base.reshape(-1), pin.mode, dtypes.by_numpy(stored.dtype), self.threads or 0)
        return stored

    def _image(self, image: memoryview, where: str) -> np.ndarray:
        try:
            return decompress(image, threads=self.threads, framework="np")
        except TensorzipError as error:
            raise type(error)(f"{where}: {error}") from None


def base_location(metadata: Any, index: Any) -> tuple[str, int, int] | None:
    """Where the base checkpoint (its DCP metadata) keeps the item ``index`` (fqn and chunk offsets)."""
    info = metadata.storage_data.get(index)
    if info is None or tuple(info.transform_descriptors or ()) not in (("stream.tensorzip/2",),):
        return None
    return info.relative_path, info.offset, info.length
