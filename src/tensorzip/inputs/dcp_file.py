"""A torch.distributed.checkpoint rank file (``__R_N.distcp``) as DCP's own writer leaves it,
stored so it comes back byte for byte (``tensorzip compress dcp_folder/``, issue 19).

DCP's ``FileSystemWriter`` writes each item of a rank (a tensor shard, or a pickled value) as
the ``torch.save`` zip of it, one after another; the folder's ``.metadata`` says where each
item lies. tensorzip never unpickles ``.metadata`` (it holds arbitrary classes): it finds the
items in the file itself, each a zip running from a local header to its end-of-central-
directory record, checks each with torch's weights-only load like any ``.pt``, and codes the
storages of the ones that pass as tensors (named ``item<N>.<path>``). Everything else (the
items' zip headers and pickles, an item weights-only refuses, bytes after the last item)
is the skeleton, kept as it is, exactly as a ``torch-zip`` source keeps a ``.pt``'s: the
.tzip's source record is a ``torch-zip`` record marked ``"container": "dcp"``, and restoring
it is the same skeleton-and-holes write.

An end-of-directory signature can occur inside tensor data; a candidate end only counts when
the zip it closes opens at the item's own first byte, and a span that is no weights-only zip
is kept whole, so a wrong guess costs compression, never bytes.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import zipfile
from collections.abc import Iterator
from typing import Any

from ..container.records import DCP_METADATA, DCP_SUFFIX
from ..errors import InputFileError, TensorzipError
from .torch_zip import TorchZipCheckpoint, ViewFile, skeleton_record

_LOCAL_MAGIC = b"PK\x03\x04"
_END_MAGIC = b"PK\x05\x06"
_END_RECORD_BYTES = 22  # the end-of-central-directory record before its comment


def is_dcp_rank_file(path: str | os.PathLike[str]) -> bool:
    """A ``.distcp`` file beside a ``.metadata``: DCP's rank file (by name and place)."""
    return str(path).endswith(DCP_SUFFIX) and os.path.isfile(os.path.join(os.path.dirname(path) or ".", DCP_METADATA))


def item_spans(data: Any, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each torch.save zip from the start of ``data``, one after another; stops
    at the first span that is not one (the rest is kept as bytes)."""
    view = memoryview(data)
    start = 0
    while start + len(_LOCAL_MAGIC) <= size and bytes(view[start : start + 4]) == _LOCAL_MAGIC:
        search, end = start, -1
        while end < 0:
            found = data.find(_END_MAGIC, search, size)
            if found < 0 or found + _END_RECORD_BYTES > size:
                return
            comment = int.from_bytes(view[found + 20 : found + 22], "little")
            candidate = found + _END_RECORD_BYTES + comment
            if candidate <= size and _opens_at_start(view[start:candidate]):
                end = candidate
            search = found + 1
        yield start, end
        start = end


def _opens_at_start(span: memoryview) -> bool:
    """Whether ``span`` is one whole zip whose first record starts at its first byte."""
    try:
        with zipfile.ZipFile(ViewFile(span)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False
    return bool(records) and min(r.header_offset for r in records) == 0


class DistcpFile(TorchZipCheckpoint):
    """A DCP rank file as a ``CheckpointInput`` whose tensors are its items' storages."""

    def __init__(self, path: str | os.PathLike[str]):  # noqa: D107 - the module says what it reads
        self.where = str(path)
        self.path = path
        self.size = os.path.getsize(path)
        self._map: Any = None
        self.storages = []
        self.items = self.kept_items = 0
        self.flat = False
        self.views: list[list[Any]] = []
        self.metadata: dict[str, str] | None = {"format": "pt"}
        if not self.size:
            raise InputFileError(f"{self.where}: an empty DCP rank file")
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._read_items()
        except BaseException:
            self.close()
            raise

    def _read_items(self) -> None:
        view = memoryview(self._map)
        for number, (start, end) in enumerate(item_spans(self._map, self.size)):
            self.items += 1
            try:
                item = TorchZipCheckpoint(view[start:end])
            except TensorzipError:  # not weights-only torch.save data: its bytes stay in the skeleton
                self.kept_items += 1
                continue
            prefix = f"item{number}"
            self.storages += [dataclasses.replace(s, name=f"{prefix}.{s.name}" if s.name else prefix,
                                                  offset=s.offset + start) for s in item.storages]
            item.close()
        del view
        if not self.items:
            raise InputFileError(f"{self.where}: not a DCP rank file (no torch.save item at its start); DCP's "
                                 "own writer writes one zip per item")

    def source_record(self) -> dict[str, Any]:
        return dict(skeleton_record(self), container="dcp", items=self.items, kept_items=self.kept_items,
                    top_level=[])
