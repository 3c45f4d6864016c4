"""What is this path? The one answer every face asks before it reads anything.

A ``.tzip`` file may hold a checkpoint (plain, or coded against a base), a whole folder
archive, or the parts of a lossy *layer* (lossy weights, an embedding collection, a KV
cache) whose tensors are not the data. Generic readers (``load_file``, ``safe_open``,
``tensorzip decompress``, ``info``) must treat each right or refuse it by name, so they
ask ``identify`` instead of sniffing magic bytes themselves. ``READERS`` says, for each
kind, which command and API read it: the text every refusal quotes.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputFileError, WrongKindError
from ..inputs.torch_file import has_torch_magic, is_npz
from . import records
from .format import MAGIC
from .reader import TzipReader

NUMPY_MAGIC = b"\x93NUMPY"
TZIP_SUFFIX = ".tzip"


class Kind(str, enum.Enum):
    """Every kind of path tensorzip reads or writes."""

    SAFETENSORS = "safetensors"  # a plain .safetensors file: input of compress
    PYTORCH = "pytorch"  # a torch.save file (.pt/.pth/.bin): input of compress
    NUMPY = "numpy"  # a .npy array: input of embeddings compress and analyze
    MODEL_FOLDER = "model-folder"  # a folder of weights (shards, index, config): input of compress
    CHECKPOINT = "checkpoint"  # a .tzip whose tensors are the data (perhaps coded against a base)
    FOLDER_ARCHIVE = "folder-archive"  # a .tzip of a whole shard folder (compress DIR --archive)
    COMPRESSED_FOLDER = "compressed-folder"  # a folder of .tzip shards (compress DIR)
    LOSSY_WEIGHTS = "lossy-weights"  # a .tzip layer: weights on a byte budget
    EMBEDDINGS = "embeddings"  # a .tzip layer: an embedding collection at a recall target
    KV_CACHE = "kv-cache"  # a .tzip layer: keys and values of an attention cache
    GUARD = "guard"  # a compressed folder's guard file (records.guard_bytes): read through its folder
    MANIFEST = "manifest"  # a compressed folder's list of what it holds (records.FOLDER_MANIFEST)
    DCP_FOLDER = "dcp-folder"  # a torch.distributed.checkpoint folder written by DCP's own writer
    DCP_COMPRESSED = "dcp-compressed"  # a torch.distributed.checkpoint folder tensorzip.dcp wrote
    UNKNOWN = "unknown"  # not a file tensorzip reads


@dataclass(frozen=True)
class Readers:
    """How a kind is read: in plain words, by the command line, and from Python."""

    words: str
    command: str
    api: str


READERS: Mapping[Kind, Readers] = {
    Kind.SAFETENSORS: Readers("a .safetensors checkpoint (not compressed)", "tensorzip compress",
                              "tz.compress_file"),
    Kind.PYTORCH: Readers("a PyTorch file (not compressed)", "tensorzip compress", "tz.compress_file"),
    Kind.NUMPY: Readers("a NumPy array (not compressed)", "tensorzip embeddings compress (vectors) or "
                        "tensorzip analyze", "tz.embeddings.save_file / tz.compress"),
    Kind.MODEL_FOLDER: Readers("a model folder (not compressed)", "tensorzip compress", "tz.compress_folder"),
    Kind.CHECKPOINT: Readers("a compressed checkpoint", "tensorzip decompress", "tz.load_file / tz.safe_open"),
    Kind.FOLDER_ARCHIVE: Readers("a compressed folder archive", "tensorzip decompress",
                                 "tz.decompress_file / tz.load_file"),
    Kind.COMPRESSED_FOLDER: Readers("a compressed model folder", "tensorzip decompress",
                                    "tz.decompress_folder / tensorzip.hf.transformers.from_pretrained"),
    Kind.GUARD: Readers("the guard file of a compressed model folder (it stops plain transformers from misreading "
                        "the folder; it holds no weights)", "tensorzip decompress (or info, verify, ls) on the "
                        "folder around it", "tensorzip.hf.transformers.from_pretrained on the folder"),
    Kind.LOSSY_WEIGHTS: Readers("lossy weights (a byte-budget checkpoint)", "tensorzip decompress",
                                "tz.lossy.load_file / tz.lossy.decompress_file"),
    Kind.EMBEDDINGS: Readers("an embedding collection", "tensorzip decompress (or tensorzip embeddings decompress)",
                             "tz.embeddings.load_file / tz.embeddings.open"),
    Kind.KV_CACHE: Readers("a KV cache", "tensorzip decompress (writes keys and values to .npz)",
                           "tz.kv.load_file"),
    Kind.MANIFEST: Readers("the manifest of a compressed model folder (the files it holds, checked by verify and "
                           "decompress)", "tensorzip verify (or info, ls, decompress) on the folder around it",
                           "tz.decompress_folder on the folder"),
    Kind.DCP_FOLDER: Readers("a torch.distributed.checkpoint (DCP) folder (not compressed)",
                             "tensorzip compress (to a compressed folder; decompress restores it byte for byte)",
                             "dcp.save(state_dict, storage_writer=tensorzip.dcp.TensorzipWriter(path))"),
    Kind.DCP_COMPRESSED: Readers("a torch.distributed.checkpoint (DCP) folder compressed by tensorzip", "",
                                 "dcp.load(state_dict, storage_reader=tensorzip.dcp.TensorzipReader(path))"),
    Kind.UNKNOWN: Readers("not a file tensorzip reads", "", ""),
}

LAYER_KINDS = {"kv-cache": Kind.KV_CACHE, "embeddings": Kind.EMBEDDINGS, "lossy-weights": Kind.LOSSY_WEIGHTS}


@dataclass(frozen=True)
class PathKind:
    """The answer for one path."""

    path: str
    kind: Kind
    base: str | None = None  # a .tzip coded against a base: the base's recorded file name
    source_format: str | None = None  # a .tzip: what it was made from (records.SOURCE_FORMATS)

    @property
    def is_tzip_file(self) -> bool:
        return self.kind in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE, Kind.LOSSY_WEIGHTS, Kind.EMBEDDINGS, Kind.KV_CACHE)

    @property
    def is_layer(self) -> bool:
        """Its tensors are the parts of a lossy code, not the data."""
        return self.kind in (Kind.LOSSY_WEIGHTS, Kind.EMBEDDINGS, Kind.KV_CACHE)

    @property
    def readers(self) -> Readers:
        return READERS[self.kind]

    def refuse(self, face: str, expected: str | None = None) -> WrongKindError:
        """The error for a face that does not read this kind: names what the path is and what
        reads it (``expected``: what the face wanted, e.g. "a KV cache")."""
        readers = self.readers
        if expected is not None and self.kind is not Kind.UNKNOWN:
            return WrongKindError(f"{self.path}: {readers.words}, not {expected}; use {readers.command} on the "
                                  f"command line, {readers.api} in Python")
        if self.kind is Kind.UNKNOWN:
            what = _unknown_words(self.path)
            return WrongKindError(f"{self.path}: {what}, which {face} does not read (tensorzip reads .tzip files and "
                                  "folders, .safetensors, PyTorch and .npy files, and model folders)")
        use = f"{readers.command} on the command line, {readers.api} in Python" if readers.command else \
            f"{readers.api} in Python (torch.distributed.checkpoint reads and writes DCP folders; tensorzip's " \
            "command line does not convert them)"
        return WrongKindError(f"{self.path}: {readers.words}, which {face} does not read; use {use}")


def kind_of_metadata(metadata: Mapping[str, str] | None, source: Mapping[str, object] | None) -> Kind:
    """The kind of a .tzip from its parsed header: a layer record wins, then a folder source."""
    layer = records.layer_of(metadata)
    if layer is not None:
        return LAYER_KINDS[layer]
    if records.is_folder_source(source):
        return Kind.FOLDER_ARCHIVE
    return Kind.CHECKPOINT


def require(path: str | os.PathLike[str], face: str, accepted: Collection[Kind], *,
            unknown_ok: bool = False) -> PathKind:
    """``identify(path)``, refused by name unless of an ``accepted`` kind (``unknown_ok``: let
    a file of no known kind through, for a reader whose own checks say more about it)."""
    found = identify(path)
    if found.kind in accepted or (unknown_ok and found.kind is Kind.UNKNOWN):
        return found
    raise found.refuse(face)


def refuse_layers(reader: TzipReader, face: str) -> TzipReader:
    """``reader``, if its tensors are the data; a lossy layer's parts are refused, naming what reads them."""
    metadata = reader.header.metadata
    if not metadata or metadata.keys().isdisjoint(records.LAYER_KEYS):  # the common case, in O(1)
        return reader
    kind = kind_of_metadata(metadata, reader.header.source)
    if kind in (Kind.LOSSY_WEIGHTS, Kind.EMBEDDINGS, Kind.KV_CACHE):
        reader.close()
        raise PathKind(reader.where, kind).refuse(face)
    return reader


def open_data(path: str | os.PathLike[str] | bytes | bytearray | memoryview, face: str,
              **options: object) -> TzipReader:
    """A reader of a .tzip whose tensors are the data (a checkpoint or a folder archive), for
    the generic faces; every other kind is refused by name before anything is decoded."""
    in_memory = not isinstance(path, str) and not hasattr(path, "__fspath__")  # any buffer; a PathLike check is slow
    if not in_memory and not os.path.isfile(path):
        found = identify(path)  # a folder, a FIFO, a missing path: say what it is
        raise found.refuse(face)
    try:
        reader = TzipReader(path, **options)  # type: ignore[arg-type]
    except FormatError:
        if not in_memory:
            found = identify(path)
            if found.kind is not Kind.UNKNOWN:
                raise found.refuse(face) from None
        raise
    return refuse_layers(reader, face)


def identify(path: str | os.PathLike[str]) -> PathKind:
    """What ``path`` is, from its first bytes (and a .tzip's header). Never blocks on a FIFO
    or a device: only regular files and folders are opened."""
    where = str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(f"{where}: no such file or folder") from None
    except OSError as error:
        raise InputFileError(f"{where}: cannot open ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        return PathKind(where, _folder_kind(Path(path)))
    if not stat.S_ISREG(mode):
        raise InputFileError(f"{where}: not a regular file (a FIFO, device or socket); tensorzip reads files")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise InputFileError(f"{where}: cannot open ({error.strerror or error})") from None
    if head.startswith(MAGIC):
        with TzipReader(path) as reader:  # the whole header is checked: a kind is never guessed
            header = reader.header
            return PathKind(where, kind_of_metadata(header.metadata, header.source),
                            base=reader.base_name, source_format=records.source_format(header.source))
    if Path(where).name == records.FOLDER_MANIFEST and head.startswith(b"{"):
        return PathKind(where, Kind.MANIFEST)
    if head.startswith(NUMPY_MAGIC):
        return PathKind(where, Kind.NUMPY)
    if _looks_like_safetensors(head, size):
        guard = records.guard_bytes()
        if size == len(guard):
            with open(path, "rb") as handle:
                if handle.read() == guard:
                    return PathKind(where, Kind.GUARD)
        return PathKind(where, Kind.SAFETENSORS)
    if has_torch_magic(head) and not is_npz(path):  # by content only: a random .bin is not a PyTorch file
        return PathKind(where, Kind.PYTORCH)
    return PathKind(where, Kind.UNKNOWN)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _folder_kind(folder: Path) -> Kind:
    """A folder with tensorzip's manifest is a compressed folder; one with .safetensors files,
    a model folder (a compressed folder never holds one, so a stray .tzip beside them does not
    make it compressed); without either, .tzip files anywhere make a compressed folder (one
    written before the manifest existed), other weights a model folder."""
    if (folder / records.FOLDER_MANIFEST).is_file():
        return Kind.COMPRESSED_FOLDER
    if (folder / records.DCP_METADATA).is_file():
        return _dcp_kind(folder)
    tzip = safetensors = weights = False
    for _, _, files in os.walk(folder):
        for name in files:
            tzip = tzip or name.endswith(TZIP_SUFFIX)
            safetensors = safetensors or name.endswith(".safetensors")
            weights = weights or name.endswith((".bin", ".pt", ".pth"))
    if safetensors:
        return Kind.MODEL_FOLDER
    if tzip:
        return Kind.COMPRESSED_FOLDER
    return Kind.MODEL_FOLDER if weights else Kind.UNKNOWN


def _dcp_kind(folder: Path) -> Kind:
    """A DCP folder is tensorzip's when it has tensorzip's record, or (written before the record
    existed) its first rank file starts with an item marker, not torch.save's zip or a pickle."""
    if (folder / records.DCP_RECORD).is_file():
        return Kind.DCP_COMPRESSED
    for rank_file in sorted(folder.glob(f"*{records.DCP_SUFFIX}")):
        try:
            with open(rank_file, "rb") as handle:
                first = handle.read(1)
        except OSError:
            continue
        if first:
            return Kind.DCP_COMPRESSED if first in records.DCP_ITEM_MARKERS else Kind.DCP_FOLDER
    return Kind.DCP_FOLDER


def _unknown_words(path: str) -> str:
    if os.path.isdir(path):
        return "a folder with no weights" if any(os.scandir(path)) else "an empty folder"
    try:
        if os.path.getsize(path) == 0:
            return "an empty file"
    except OSError:
        return "not a kind of file tensorzip knows"
    if is_npz(path):
        return ("a NumPy .npz archive (save each array with np.save as a .npy, or the dict with "
                "safetensors.numpy.save_file as a .safetensors)")
    return "not a kind of file tensorzip knows"


def load_npy(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """A .npy array given as an input (vectors, queries, labels, a representation matrix),
    memory-mapped: its kind checked first (a FIFO or device is refused, never opened), and
    never unpickled (numpy's advice to allow it is not passed on)."""
    found = require(path, f"a reader of {what} (a .npy array)", (Kind.NUMPY,))
    try:
        return np.load(found.path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        raise InputFileError(f"{path}: a .npy of Python objects (or damaged), not a numeric array of {what}; "
                             "tensorzip never unpickles: save it with np.save(path, array)") from None


def load_npz(path: str | os.PathLike[str], what: str) -> dict[str, np.ndarray]:
    """Every array of a .npz given as an input (per-column sensitivities), the same checks."""
    identify(path)  # refuses what is missing or not a regular file before it is opened
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputFileError(f"{path}: not a .npz of {what} ({error})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputFileError(f"{path}: a single array, not a .npz of {what} (np.savez(path, name=array, ...))")
    with data:
        try:
            return {name: data[name] for name in data.files}
        except (ValueError, OSError) as error:
            raise InputFileError(f"{path}: not a .npz of {what} ({error})") from None
