"""The weights of any checkpoint as lazy tensors: what the loaders hand to transformers,
diffusers and ``safe_open``.

``open_weights(path)`` takes what ``tensorzip compress`` writes (a compressed model folder,
a folder archive, a single .tzip) and what it reads (.safetensors, a Hugging Face model
folder, shards and their index), local or at an fsspec URL, and gives one ``LazyTensor``
per tensor. A lazy tensor follows safetensors' slice protocol (``get_shape``,
``get_dtype``, ``tensor[...]``), which is how transformers 5 takes a checkpoint without
reading it: each tensor is decoded when the model asks for it, into a fresh tensor that
becomes the parameter, so the whole model is never held twice.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..container.decoded_targets import DecodedTargets
from ..container.format import MAGIC
from ..container.header import ReadLimits
from ..container.kinds import Kind, identify, open_data, refuse_layers
from ..container.reader import TzipReader, batched_by_stored_bytes
from ..container.records import RESERVED_PREFIX, is_folder_source
from ..dtypes import DTypeSpec, by_numpy
from ..errors import InputFileError
from ..inputs.frameworks import to_numpy, to_torch
from ..inputs.safetensors import SafetensorsFile, parse_header
from ..inputs.sources import RemoteFile, is_url, open_remote
from ..inputs.torch_file import TorchFile, import_torch, looks_like_torch_file

SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


class LazyTensor:
    """One tensor of an open checkpoint, decoded when indexed (safetensors' slice protocol:
    ``get_shape()``, ``get_dtype()``, ``t[...]``, ``t[0:4]``) or by ``load()``."""

    def __init__(self, source: _Source, name: str, spec: DTypeSpec, shape: tuple[int, ...], torch_out: bool = True,
                 device: Any = "cpu", ahead: Callable[[str], np.ndarray | None] | None = None):
        self._source = source
        self._ahead = ahead  # takes this tensor from a decode-ahead run, if one holds it
        self.name = name
        self.spec = spec
        self._shape = tuple(shape)
        self._torch_out = torch_out
        self._device = device

    def get_shape(self) -> list[int]:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self.spec.safetensors_name

    @property
    def shape(self) -> Any:
        return import_torch("a lazy tensor's shape").Size(self._shape) if self._torch_out else self._shape

    @property
    def dtype(self) -> Any:
        return getattr(import_torch("a lazy tensor's dtype"), self.spec.name) if self._torch_out \
            else self.spec.numpy_dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return int(np.prod(self._shape, dtype=np.int64))

    def is_floating_point(self) -> bool:
        return self.spec.name.startswith(("float", "bfloat"))

    def load(self) -> Any:
        """The whole tensor, decoded (a torch tensor on the device, or a numpy array)."""
        array = self._ahead(self.name) if self._ahead is not None else None
        if array is None:
            array = self._source.read(self.name)
        if not self._torch_out:
            return array
        tensor = to_torch(array)
        return tensor if str(self._device) == "cpu" else tensor.to(self._device)

    def __getitem__(self, index: Any) -> Any:
        whole = self.load()
        return whole if index is Ellipsis or index == () else whole[index]

    def __repr__(self) -> str:
        return f"LazyTensor({self.name!r}, {self.spec.name}, {list(self._shape)})"


class _Source:
    """One file's tensors: names, dtypes, shapes, and reading one or many."""

    where: str

    def entries(self) -> Iterator[tuple[str, DTypeSpec, tuple[int, ...]]]:
        raise NotImplementedError

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def read_all(self, names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
        return ((name, self.read(name)) for name in names)

    def read_into(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Each named tensor written into its ``out`` (C-contiguous, its dtype and size)."""
        for name, out in items:
            np.copyto(out.reshape(-1), self.read(name).reshape(-1))

    def metadata(self) -> dict[str, str] | None:
        return None

    def close(self) -> None:
        pass


class _TzipSource(_Source):
    def __init__(self, reader: TzipReader):
        self.reader = reader
        self.where = reader.where

    def entries(self) -> Iterator[tuple[str, DTypeSpec, tuple[int, ...]]]:
        return ((e.name, e.spec, e.shape) for e in self.reader.header.tensors.values())

    def read(self, name: str) -> np.ndarray:
        return self.reader.get_tensor(name)

    def read_all(self, names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
        return self.reader.iter_tensors(names)  # batched, the next batch read while one decodes

    def read_into(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Decoded straight into the destination memory, batch by batch (one native call each)."""
        entries = [(self.reader.entry(name), out.reshape(-1)) for name, out in items]
        targets = DecodedTargets([e for e, _ in entries], private_copies=False,  # outs stay where they are
                                 budget_bytes=self.reader.targets_budget())
        for batch in batched_by_stored_bytes([e for e, _ in entries], self.reader.pipeline_batch_bytes()):
            chosen = {id(e) for e in batch}
            self.reader.decode_into([(e, out) for e, out in entries if id(e) in chosen], targets=targets)

    def metadata(self) -> dict[str, str] | None:
        recorded = self.reader.metadata()
        return None if recorded is None else {k: v for k, v in recorded.items() if not k.startswith(RESERVED_PREFIX)}

    def close(self) -> None:
        self.reader.close()


class _SafetensorsSource(_Source):
    def __init__(self, path: Path):
        self.file = SafetensorsFile(path)
        self.where = self.file.where
        self._by_name = {e.name: e for e in self.file.entries}

    def entries(self) -> Iterator[tuple[str, DTypeSpec, tuple[int, ...]]]:
        return ((e.name, e.spec, tuple(e.shape)) for e in self.file.entries)

    def read(self, name: str) -> np.ndarray:
        entry = self._by_name[name]
        array = np.array(self.file.array(entry))  # a copy: the file's map is read-only
        self.file.release(entry)
        return array

    def metadata(self) -> dict[str, str] | None:
        return self.file.metadata


class _RemoteSafetensorsSource(_Source):
    """A .safetensors file at a URL: its header, then each tensor's byte range."""

    def __init__(self, remote: RemoteFile):
        self.remote = remote
        self.where = remote.where
        prefix = remote.read(0, 8) if remote.size >= 8 else b""
        if len(prefix) < 8:
            raise InputFileError(f"{self.where}: not a safetensors file (only {remote.size} bytes)")
        length = int.from_bytes(prefix, "little")
        if length > SAFETENSORS_HEADER_LIMIT or 8 + length > remote.size:
            raise InputFileError(f"{self.where}: not a safetensors file (header of {length:,} bytes declared)")
        self.data_start = 8 + length
        entries, self._metadata = parse_header(remote.read(8, length), self.where, remote.size - self.data_start)
        self._by_name = {e.name: e for e in entries}

    def entries(self) -> Iterator[tuple[str, DTypeSpec, tuple[int, ...]]]:
        return ((e.name, e.spec, tuple(e.shape)) for e in self._by_name.values())

    def read(self, name: str) -> np.ndarray:
        entry = self._by_name[name]
        raw = bytearray(self.remote.read(self.data_start + entry.begin, entry.end - entry.begin))
        return np.frombuffer(raw, dtype=entry.spec.numpy_dtype).reshape(entry.shape)

    def metadata(self) -> dict[str, str] | None:
        return self._metadata


class _TorchSource(_Source):
    def __init__(self, path: Path):
        self.where = str(path)
        self._state = {name: to_numpy(tensor) for name, tensor in TorchFile(path).state.items()}

    def entries(self) -> Iterator[tuple[str, DTypeSpec, tuple[int, ...]]]:
        return ((name, by_numpy(a.dtype), a.shape) for name, a in self._state.items())

    def read(self, name: str) -> np.ndarray:
        return self._state[name]


class Weights:
    """Every tensor of a checkpoint (one file or a folder's shards), lazily; close it (or use
    ``with``) to release the files."""

    def __init__(self, path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                 threads: int | None = None, framework: str = "pt", device: Any = "cpu",
                 limits: ReadLimits | None = None):
        self.where = str(path)
        self._sources: list[_Source] = []
        self.tensors: dict[str, LazyTensor] = {}
        self.archive: TzipReader | None = None  # a folder archive keeps the config among its files
        self._ahead: _DecodeAhead | None = None
        torch_out = framework == "pt"
        try:
            for source in _open_sources(path, base, threads, limits):
                self._sources.append(source)
                for name, spec, shape in source.entries():
                    if name in self.tensors:
                        raise InputFileError(f"{self.where}: tensor {name!r} is in two files "
                                             f"({self.tensors[name]._source.where} and {source.where})")
                    self.tensors[name] = LazyTensor(source, name, spec, shape, torch_out, device, self._take_ahead)
                if isinstance(source, _TzipSource) and is_folder_source(source.reader.header.source):
                    self.archive = source.reader
        except BaseException:
            self.close()
            raise

    @property
    def files(self) -> list[str]:
        return [source.where for source in self._sources]

    def metadata(self) -> dict[str, str] | None:
        return self._sources[0].metadata() if len(self._sources) == 1 else None

    def tzip_readers(self) -> list[TzipReader]:
        return [source.reader for source in self._sources if isinstance(source, _TzipSource)]

    def read_all(self, names: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Decoded tensors, file by file, each file's in batches (the fast path of ``load_file``)."""
        wanted = list(self.tensors) if names is None else names
        by_source: dict[int, list[str]] = {}
        for name in wanted:
            by_source.setdefault(id(self.tensors[name]._source), []).append(name)
        for source in self._sources:
            if id(source) in by_source:
                yield from source.read_all(by_source[id(source)])

    def read_into(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Each named tensor decoded into its ``out`` array (existing memory: a parameter's)."""
        by_source: dict[int, list[tuple[str, np.ndarray]]] = {}
        for name, out in items:
            by_source.setdefault(id(self.tensors[name]._source), []).append((name, out))
        for source in self._sources:
            if id(source) in by_source:
                source.read_into(by_source[id(source)])

    def kept_file(self, name: str) -> bytes | None:
        """A file a folder archive keeps beside its tensors (``config.json``), or None."""
        if self.archive is None or name not in self.archive.header.files:
            return None
        entry = self.archive.header.files[name].data
        if entry is None:
            return None
        out = np.empty(entry.nbytes, dtype=np.uint8)
        self.archive.decode_into([(entry, out)])
        return out.tobytes()

    def decode_ahead(self) -> None:
        """Decode every tensor in storage order in a background thread (batched, each batch's
        reading overlapped with the one before's decoding), so that a consumer asking for the
        tensors one by one (transformers) finds them decoded while it does its own work. For
        whole-model loads only: what is decoded ahead is held until asked for."""
        if self._ahead is None:
            self._ahead = _DecodeAhead(self)

    def _take_ahead(self, name: str) -> np.ndarray | None:
        return self._ahead.take(name) if self._ahead is not None else None

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None
        for source in self._sources:
            source.close()
        self._sources = []

    def __enter__(self) -> Weights:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _DecodeAhead:
    """The background run of ``Weights.decode_ahead``: decoded tensors wait here until taken."""

    def __init__(self, weights: Weights):
        self._weights = weights
        self._ready: dict[str, np.ndarray] = {}
        self._coming = set(weights.tensors)
        self._error: BaseException | None = None
        self._stopped = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tensorzip-decode-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for name, array in self._weights.read_all():
                with self._changed:
                    if self._stopped:
                        return
                    if name in self._coming:  # not taken (and decoded) by the consumer meanwhile
                        self._ready[name] = array
                    self._changed.notify_all()
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who raises it
            with self._changed:
                self._error = error
                self._changed.notify_all()
        finally:
            with self._changed:
                self._coming.clear()
                self._changed.notify_all()

    def take(self, name: str) -> np.ndarray | None:
        """The tensor once decoded here; None when this run will not have it (the caller then
        decodes it itself). An error of the run is raised to whoever waits."""
        with self._changed:
            while name in self._coming and name not in self._ready and self._error is None:
                self._changed.wait()
            if name in self._ready:
                self._coming.discard(name)
                return self._ready.pop(name)
            if self._error is not None:
                raise self._error
            self._coming.discard(name)
            return None

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._ready.clear()
            self._changed.notify_all()
        self._thread.join()


def open_weights(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                 threads: int | None = None, framework: str = "pt", device: Any = "cpu",
                 limits: ReadLimits | None = None) -> Weights:
    """The lazy weights of ``path`` (see the module's docstring for what it may be). ``limits``:
    the .tzip reader's (``max_memory_bytes`` bounds any one tensor decoded in memory)."""
    return Weights(path, base=base, threads=threads, framework=framework, device=device, limits=limits)


def _open_sources(path: str | os.PathLike[str], base: str | os.PathLike[str] | None,
                  threads: int | None, limits: ReadLimits | None) -> Iterator[_Source]:
    if is_url(path):
        yield _open_url(str(path), base, threads, limits)
        return
    where = Path(path)
    try:
        is_folder = stat.S_ISDIR(os.stat(where).st_mode)
    except OSError:
        is_folder = False  # identify names what is wrong with it
    if not is_folder:
        yield _open_file(where, base, threads, limits)
        return
    kind = identify(where)
    if kind.kind not in (Kind.COMPRESSED_FOLDER, Kind.MODEL_FOLDER):
        raise InputFileError(f"{where}: a folder without weights (no .tzip, .safetensors or pytorch_model*.bin "
                             "files, no index naming them)")
    from ..folders import base_beside_folder, weight_files

    for file in weight_files(where):
        source = _open_file(file, base, threads, limits)
        if base is None and isinstance(source, _TzipSource) and kind.kind is Kind.COMPRESSED_FOLDER:
            beside = base_beside_folder(file, where, source.reader.base_name)
            if beside is not None:  # where compress --base found it
                source.reader.use_base(beside)
        yield source


def _open_file(path: Path, base: str | os.PathLike[str] | None, threads: int | None,
               limits: ReadLimits | None) -> _Source:
    head = b""
    try:
        if stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO (it would block)
            with open(path, "rb") as handle:
                head = handle.read(len(MAGIC))
    except OSError:
        pass  # missing, unreadable: identify says which
    if head == MAGIC:  # the header is parsed once, by the reader; layers are refused by name
        return _TzipSource(open_data(path, "loading weights", threads=threads, base=base, limits=limits))
    kind = identify(path)
    if kind.kind is Kind.SAFETENSORS:
        return _SafetensorsSource(path)
    if kind.kind is Kind.PYTORCH or (kind.kind is Kind.UNKNOWN and looks_like_torch_file(path)):
        return _TorchSource(path)
    raise kind.refuse("loading weights")


def _open_url(url: str, base: str | os.PathLike[str] | None, threads: int | None,
              limits: ReadLimits | None) -> _Source:
    remote = open_remote(url)
    try:
        if remote.read(0, min(remote.size, len(MAGIC))) == MAGIC:
            reader = TzipReader(remote, threads=threads, base=base, limits=limits)
            return _TzipSource(refuse_layers(reader, "loading weights"))
        return _RemoteSafetensorsSource(remote)
    except BaseException:
        remote.close()
        raise
