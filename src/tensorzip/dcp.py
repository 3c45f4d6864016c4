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
from typing import IO, Any

from . import dtypes
from .arrays import decompress
from .container.records import FRAMEWORK_KEY
from .container.writer import TzipWriter
from .errors import TensorzipError, UnsupportedDtypeError
from .files import compress_torch_bytes, decompress_file
from .inputs.frameworks import to_numpy
from .inputs.torch_file import import_torch, is_torch_zip_bytes
from .outputs.memory_file import MemoryFile

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

_CODED = b"T"  # a .tzip image of the item's torch.save bytes follows
_KEPT = b"R"  # the item's bytes follow as they are
_TENSOR = b"N"  # (version 2) a .tzip image of the tensor itself (tz.compress's form) follows
VERSION = "2"
READABLE_VERSIONS = ("1", "2")


def _require_torch() -> None:
    import_torch("tensorzip.dcp")
    if _import_error is not None:
        raise TensorzipError(f"tensorzip.dcp needs torch.distributed.checkpoint with stream extensions "
                             f"(torch >= 2.6): {_import_error}")


class TensorzipStreams(StreamTransformExtension):  # type: ignore[misc,valid-type]
    """A DCP stream extension: each item's bytes as a .tzip image (see the module)."""

    def __init__(self, threads: int | None = None):
        _require_torch()
        super().__init__()
        self.threads = threads

    @staticmethod
    def registry_name() -> str:
        return "stream.tensorzip"

    @staticmethod
    def from_descriptor(version: str) -> TensorzipStreams:
        if version.partition(".")[0] not in READABLE_VERSIONS:
            raise ValueError(f"stream.tensorzip version {version!r} is newer than this tensorzip; upgrade it")
        return TensorzipStreams()

    def get_descriptor(self) -> str:
        return f"{self.registry_name()}/{VERSION}"

    def transform_to(self, output: IO[bytes]) -> IO[bytes]:
        return _CodingWriter(output, self.threads, self._thread_buffers())

    def write_tensor(self, output: IO[bytes], tensor: Any) -> None:
        """A tensor item, coded from its memory (no torch.save); one tensorzip cannot code
        (complex, a float8 variant it lacks) goes through ``transform_to`` as torch.save bytes."""
        try:
            array = to_numpy(tensor)
            dtypes.by_numpy(array.dtype)  # one tensorzip codes
        except UnsupportedDtypeError:
            coding = self.transform_to(output)
            import_torch("tensorzip.dcp").save(tensor, coding)
            coding.close()
            return
        image = self._thread_buffers().image
        image.seek(0)
        image.truncate_to(0)
        with TzipWriter(image, metadata={FRAMEWORK_KEY: "pt"}, threads=self.threads) as writer:
            writer.add("", array)
        output.write(_TENSOR)
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
        if marker == _KEPT:
            return io.BytesIO(body)
        if marker == _TENSOR:  # DCP loads what torch.save writes
            restored = io.BytesIO()
            import_torch("tensorzip.dcp").save(decompress(body, threads=self.threads, framework="pt"), restored)
            restored.seek(0)
            return restored
        if marker != _CODED:
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

    def __init__(self, output: IO[bytes], threads: int | None, buffers: _Buffers):
        super().__init__()
        self._output = output
        self._threads = threads
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
                compress_torch_bytes(data, image, threads=self._threads, saved_here=True)
                coded = image.getbuffer()
            except TensorzipError:
                coded = None  # not a file of tensors tensorzip reads: kept as it is
        if coded is not None and len(coded) < len(data):
            self._output.write(_CODED)
            self._output.write(coded)
        else:
            self._output.write(_KEPT)
            self._output.write(data)
        del data, coded
        self._output.flush()
        super().close()


class TensorzipWriter(FileSystemWriter):  # type: ignore[misc,valid-type]
    """DCP's ``FileSystemWriter`` with every item coded by tensorzip (``threads``: native
    threads per rank; the other arguments are FileSystemWriter's). Tensor items are coded
    from memory (see the module); files, their names and the metadata are DCP's."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None, **kwargs: Any):
        _require_torch()
        if "_extensions" in kwargs:
            raise TensorzipError("TensorzipWriter chooses the stream extension itself; use FileSystemWriter for others")
        self._streams = TensorzipStreams(threads)
        super().__init__(path, _extensions=[self._streams], **kwargs)

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
                        self._streams.write_tensor(stream, data)
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


def extension_registry() -> Any:
    """DCP's extension registry with tensorzip's (and DCP's own, such as ZStandard)."""
    _require_torch()
    registry = ExtensionRegistry()
    registry.register(TensorzipStreams)
    return registry


class TensorzipReader(FileSystemReader):  # type: ignore[misc,valid-type]
    """DCP's ``FileSystemReader`` that also reads what ``TensorzipWriter`` wrote."""

    def __init__(self, path: str | os.PathLike[str]):
        _require_torch()
        super().__init__(path, _extension_registry=extension_registry())
