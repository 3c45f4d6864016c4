"""torch.distributed.checkpoint (DCP) with tensorzip: each rank's tensors coded as it writes them.

    import torch.distributed.checkpoint as dcp
    from tensorzip.dcp import TensorzipWriter, TensorzipReader

    dcp.save(state_dict, storage_writer=TensorzipWriter("ckpt/step-100"))
    dcp.load(state_dict, storage_reader=TensorzipReader("ckpt/step-100"))

DCP's file-system writer serializes every item (a tensor shard, or a blob of other state)
with ``torch.save`` and passes the bytes through its stream extensions; that is how its own
``ZStandard`` extension works. ``TensorzipWriter`` writes each tensor item itself instead,
as a .tzip image of the tensor (``tz.compress``'s form): serializing with ``torch.save`` only
to parse the bytes back cost more than coding them (measured: 1.3 s of a 2.2 s save of a
MiniLM AdamW checkpoint). Every other item (a pickled blob of plain values, a tensor of a
dtype tensorzip does not code) goes through ``TensorzipStreams``, the stream extension, as
DCP hands it over: a torch.save zip's storages coded (``inputs/torch_zip.py``), anything
else kept as it is. Everything else is DCP's own: the plan, the per-rank files and their
names, the metadata, resharding on load to any number of ranks. Each rank codes its own
items, with its own native threads.

Every item is recorded in the metadata as ``stream.tensorzip/2`` (``/1``: written before
tensor items were coded directly; still read). On load the extension gives DCP what it
expects, torch.save bytes; ``TensorzipReader`` knows the extension (a plain
``FileSystemReader`` would say it does not).
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import IO, Any

from .. import dtypes
from ..codecs.policy import checked_level
from ..codecs.residual import choose_delta, codec_for, digest, residual
from ..container.records import FRAMEWORK_KEY
from ..container.writer import TzipWriter
from ..errors import TensorzipError, UnsupportedDtypeError
from ..files import compress_torch_bytes, decompress_file
from ..inputs.frameworks import to_numpy, to_torch
from ..inputs.torch_file import import_torch, is_torch_zip_bytes
from ..outputs.memory_file import MemoryFile
from .items import AGAINST_BASE, CODED, KEPT, MAX_DEPTH, TENSOR, ItemReader, base_location, frame, write_record

_import_error: str | None = None
try:
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
    from torch.distributed.checkpoint._extension import ExtensionRegistry, StreamTransformExtension
except ImportError as error:  # torch is optional for tensorzip; this module needs it
    _import_error = str(error)
    FileSystemReader = FileSystemWriter = StreamTransformExtension = object  # type: ignore[assignment,misc]
    ExtensionRegistry = None  # type: ignore[assignment,misc]
try:  # what DCP's own writer builds its results from; without it, tensors go through torch.save
    from torch.distributed.checkpoint.filesystem import DEFAULT_SUFFIX, SerializationFormat, _split_by_size_and_type
    from torch.distributed.checkpoint.filesystem import _StorageInfo as StorageInfo
    from torch.distributed.checkpoint.planner import WriteItemType
    from torch.distributed.checkpoint.storage import WriteResult
    from torch.futures import Future
    _DIRECT = True
except ImportError:
    _DIRECT = False

VERSION = "2"  # item format: dcp/items.py
READABLE_VERSIONS = ("1", "2")


def _require_torch() -> None:
    import_torch("tensorzip.dcp")
    if _import_error is not None:
        raise TensorzipError(f"tensorzip.dcp needs torch.distributed.checkpoint with stream extensions "
                             f"(torch >= 2.6): {_import_error}")


class TensorzipStreams(StreamTransformExtension):  # type: ignore[misc,valid-type]
    """A DCP stream extension: each item's bytes as a .tzip image (see the module)."""

    items: ItemReader | None = None  # the folder being loaded (TensorzipReader binds it): for items with a base

    def __init__(self, threads: int | None = None, level: str = "default"):
        _require_torch()
        super().__init__()
        self.threads = threads
        self.level = checked_level(level)  # how hard items are coded (issue 22); reading needs no level

    @staticmethod
    def registry_name() -> str:
        return "stream.tensorzip"

    @classmethod
    def from_descriptor(cls, version: str) -> TensorzipStreams:
        if version.partition(".")[0] not in READABLE_VERSIONS:
            raise ValueError(f"stream.tensorzip version {version!r} is newer than this tensorzip; upgrade it")
        return cls()

    def get_descriptor(self) -> str:
        return f"{self.registry_name()}/{VERSION}"

    def transform_to(self, output: IO[bytes]) -> IO[bytes]:
        return _CodingWriter(output, self.threads, self._thread_buffers(), self.level)

    def write_tensor(self, output: IO[bytes], tensor: Any, base: tuple[ItemReader, tuple[str, int, int]] | None = None
                     ) -> None:
        """A tensor item, coded from its memory (no torch.save); against ``base`` (the base
        checkpoint's reader and where it keeps the same item) when that codes smaller. One
        tensorzip cannot code (complex, a float8 variant it lacks) goes through
        ``transform_to`` as torch.save bytes."""
        try:
            array = to_numpy(tensor)
            spec = dtypes.by_numpy(array.dtype)  # one tensorzip codes
        except UnsupportedDtypeError:
            coding = self.transform_to(output)
            import_torch("tensorzip.dcp").save(tensor, coding)
            coding.close()
            return
        head, codec = TENSOR, None
        if base is not None:
            reader, location = base
            previous = reader.array(*location)
            if previous is not None and previous.dtype == array.dtype and previous.size == array.size:
                previous = previous.reshape(array.shape)
                mode, _ = choose_delta(array, previous, spec)
                if mode is not None:
                    head, codec = frame(*location, mode, digest(previous)), codec_for(mode, array, spec)
                    array = residual(array, previous, mode, spec, self.threads or 0)
        image = self._thread_buffers().image
        image.seek(0)
        image.truncate_to(0)
        with TzipWriter(image, metadata={FRAMEWORK_KEY: "pt"}, threads=self.threads, level=self.level) as writer:
            writer.add("", array, codec)
        output.write(head)
        output.write(image.getbuffer())

    def _thread_buffers(self) -> _Buffers:
        buffers = self.__dict__.get("_buffers")
        if buffers is None:
            buffers = self.__dict__["_buffers"] = _Buffers()
        return buffers

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_buffers"}

    def transform_from(self, input: IO[bytes]) -> IO[bytes]:  # noqa: A002 - DCP's parameter name
        data = input.read()
        marker, body = data[:1], memoryview(data)[1:]
        if marker == KEPT:
            return io.BytesIO(body)
        if marker in (TENSOR, AGAINST_BASE):  # DCP loads what torch.save writes
            if marker == AGAINST_BASE and self.items is None:
                raise TensorzipError("a DCP item coded against a base checkpoint: load it with "
                                     "tensorzip.dcp.TensorzipReader(path, base=...)")
            items = self.items or ItemReader(".", threads=self.threads)  # an N item needs no folder
            restored = io.BytesIO()
            array = items.decode(memoryview(data), f"{items.folder}: an item")
            import_torch("tensorzip.dcp").save(to_torch(array), restored)
            restored.seek(0)
            return restored
        if marker != CODED:
            raise TensorzipError("a DCP item marked stream.tensorzip does not start as tensorzip writes one "
                                 "(damaged checkpoint file?)")
        restored = io.BytesIO()
        decompress_file(body, restored, threads=self.threads)
        restored.seek(0)
        return restored


class _Buffers(threading.local):
    """One writer thread's reused memory: the item's torch.save bytes and its .tzip image.
    Fresh pages cost as much as coding on some machines; DCP writes items one after another
    on each thread, so each thread's two buffers serve all its items."""

    def __init__(self) -> None:
        self.item = MemoryFile()
        self.image = MemoryFile()


class _CodingWriter(io.RawIOBase):
    """Takes one item's bytes; codes and writes them to DCP's stream when closed."""

    def __init__(self, output: IO[bytes], threads: int | None, buffers: _Buffers, level: str):
        super().__init__()
        self._output = output
        self._threads = threads
        self._level = level
        self._buffers = buffers
        self._item = buffers.item
        self._item.seek(0)
        self._item.truncate_to(0)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._item.write(data)

    def close(self) -> None:
        if self.closed:
            return
        data = self._item.getbuffer()
        coded = None
        if is_torch_zip_bytes(data):
            image = self._buffers.image
            image.seek(0)
            image.truncate_to(0)
            try:
                compress_torch_bytes(data, image, threads=self._threads, saved_here=True, level=self._level)
                coded = image.getbuffer()
            except Exception:  # noqa: BLE001 - a zip tensorzip cannot read (encrypted, deflated): kept as it is
                coded = None
        if coded is not None and len(coded) < len(data):
            self._output.write(CODED)
            self._output.write(coded)
        else:
            self._output.write(KEPT)
            self._output.write(data)
        del data, coded
        self._output.flush()
        super().close()


class TensorzipWriter(FileSystemWriter):  # type: ignore[misc,valid-type]
    """DCP's ``FileSystemWriter`` with every item coded by tensorzip (``threads``: native
    threads per rank; the other arguments are FileSystemWriter's). Tensor items are coded
    from memory (see the module); files, their names and the metadata are DCP's."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 base: str | os.PathLike[str] | None = None, level: str = "default", **kwargs: Any):
        """``base``: the checkpoint saved before (a folder this writer wrote, on every rank the
        same): each tensor item is coded against the same item there (same name and shard)
        when that is smaller. Loading then needs it beside this one, or given to
        ``TensorzipReader(path, base=...)``. ``level``: ``"default"`` or ``"max"`` (as
        ``compress_file``'s: smaller BF16/FP32 items, slower to decode)."""
        _require_torch()
        if "_extensions" in kwargs:
            raise TensorzipError("TensorzipWriter chooses the stream extension itself; use FileSystemWriter for others")
        self._streams = TensorzipStreams(threads, level)
        self._base, self._depth = self._checked_base(path, base)
        self._base_items: tuple[ItemReader, Any] | None = None
        super().__init__(path, _extensions=[self._streams], **kwargs)

    @staticmethod
    def _checked_base(path: str | os.PathLike[str], base: str | os.PathLike[str] | None
                      ) -> tuple[str | os.PathLike[str] | None, int]:
        """The base to code against and the depth of the chain this save makes: a base that is
        ``MAX_DEPTH`` links deep already is not used (this save is a keyframe, so loading never
        needs more than ``MAX_DEPTH`` folders back)."""
        if base is None:
            return None, 0
        here, there = Path(path).resolve(), Path(base).resolve()
        if here == there:
            raise TensorzipError(f"{path}: would be saved over its own base; save each checkpoint to a new folder")
        if here.parent != there.parent:
            raise TensorzipError(f"base {base}: must be a folder beside {path} (a checkpoint finds its base by name "
                                 "beside itself)")
        if not (there / ".metadata").is_file():
            raise TensorzipError(f"base {base}: not a DCP checkpoint folder (no .metadata)")
        depth = ItemReader(base).depth() + 1
        return (base, depth) if depth <= MAX_DEPTH else (None, 0)

    def _base_of(self, item: Any) -> tuple[ItemReader, tuple[str, int, int]] | None:
        if self._base is None:
            return None
        if self._base_items is None:
            reader = ItemReader(self._base, threads=self._streams.threads)
            try:
                metadata = FileSystemReader(self._base).read_metadata()
            except Exception as error:  # noqa: BLE001 - whatever DCP raises for a folder it cannot read
                raise TensorzipError(f"base {self._base}: not a DCP checkpoint ({error})") from None
            self._base_items = (reader, metadata)
        reader, metadata = self._base_items
        location = base_location(metadata, item.index)
        return None if location is None else (reader, location)

    def finish(self, metadata: Any, results: Any) -> None:
        super().finish(metadata, results)
        write_record(self.path, self._base, self._depth)

    def write_data(self, plan: Any, planner: Any) -> Any:
        """This rank's items into its file(s), as DCP's writer names and lays them out."""
        if not _DIRECT or getattr(self, "serialization_format", SerializationFormat.TORCH_SAVE) != \
                SerializationFormat.TORCH_SAVE:
            return super().write_data(plan, planner)
        prefix = plan.storage_data.prefix
        buckets = (_split_by_size_and_type(max(1, self.thread_count), plan.items) if self.single_file_per_rank
                   else [[item] for item in plan.items])
        descriptors = [self._streams.get_descriptor()]
        results = []
        for number, bucket in enumerate(buckets):
            file_name = f"{prefix}{number}{DEFAULT_SUFFIX}"
            with self.fs.create_stream(self.fs.concat_path(self.path, file_name), "wb") as stream:
                for item in bucket:
                    offset = stream.tell()
                    data = planner.resolve_data(item)
                    if item.type == WriteItemType.BYTE_IO:
                        coding = self._streams.transform_to(stream)
                        coding.write(data.getbuffer())
                        coding.close()
                    else:
                        self._streams.write_tensor(stream, data, self._base_of(item))
                    length = stream.tell() - offset
                    results.append(WriteResult(index=item.index, size_in_bytes=length,
                                               storage_data=StorageInfo(file_name, offset, length,
                                                                        transform_descriptors=descriptors)))
                stream.flush()
                if self.sync_files:
                    os.fsync(stream.fileno())
        done: Any = Future()
        done.set_result(results)
        return done


def extension_registry(items: ItemReader | None = None) -> Any:
    """DCP's extension registry with tensorzip's (and DCP's own, such as ZStandard); ``items``:
    the folder being loaded, for items coded against its base."""
    _require_torch()
    registry = ExtensionRegistry()
    registry.register(TensorzipStreams if items is None else type(
        "TensorzipStreams", (TensorzipStreams,), {"items": items}))
    return registry


class TensorzipReader(FileSystemReader):  # type: ignore[misc,valid-type]
    """DCP's ``FileSystemReader`` that also reads what ``TensorzipWriter`` wrote. ``base``: the
    checkpoint it was saved against, when not beside it under its recorded name."""

    def __init__(self, path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None):
        _require_torch()
        super().__init__(path, _extension_registry=extension_registry(ItemReader(path, base)))
