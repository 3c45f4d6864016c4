"""A PyTorch checkpoint in torch's zip format, any structure, stored so it comes back byte for byte.

``torch.save`` writes a zip of stored (uncompressed) records: the pickle ``data.pkl``, a few
small records, and one record ``data/<key>`` per storage, holding that storage's raw bytes.
tensorzip codes each storage's bytes as a tensor of its dtype (named by the path of the
first tensor that views it: ``optimizer.state.0.exp_avg``) and keeps every other byte of the
file as it is: the *skeleton*, the file with the storages' bytes cut out (zip headers, the
pickle with its int keys, tuples, floats and RNG states, the central directory), deflated
into the ``source`` record. Restoring writes the skeleton back with each storage's bytes
where they were, so the .pt is identical to the byte, shared storages and views included.

The file must first load with ``torch.load(weights_only=True)`` (what that refuses is refused
here); the pickle's structure is then read without running it (``torch_pickle.py``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import mmap
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..container.records import TORCH_ZIP_SOURCE
from ..dtypes import by_name
from ..errors import HeaderError, InputFileError
from .torch_file import load_weights_only
from .torch_pickle import PickleStructure, TensorView, inspect_pickle

# The top-level keys a training script keeps its model's state dict under.
MODEL_KEYS = frozenset({"model", "state_dict", "model_state_dict", "module", "net", "ema", "model_ema"})
# Per-parameter optimizer states, by their key (torch.optim's AdamW, SGD, Adam, ...).
OPTIMIZER_STATES = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "step", "square_avg",
                              "acc_delta", "sum", "exp_inf", "mu_product", "ax", "eta", "prev", "step_size"})
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip local file header, before its name and extra field
_LOCAL_MAGIC = b"PK\x03\x04"
STATE_DICT_KEY = "state_dict"


@dataclass(frozen=True)
class Storage:
    """One storage record of the zip, as the .tzip stores it."""

    name: str  # the tensor name in the .tzip
    key: str  # its record: <archive>/data/<key>
    offset: int  # of its bytes in the file
    nbytes: int
    dtype: str  # tensorzip's dtype name; uint8 when its type is not one tensorzip codes
    shape: tuple[int, ...]


class TorchZipCheckpoint:
    """A zip-format PyTorch file as a ``CheckpointInput`` whose tensors are its storages."""

    def __init__(self, path: str | os.PathLike[str] | bytes | memoryview, *, saved_here: bool = False):
        """``path``: the file, or its bytes (as a DCP item stream hands them over).
        ``saved_here``: the bytes are what ``torch.save`` just wrote in this process (a DCP
        item), so torch's own weights-only load, which guards files from elsewhere and costs a
        copy of every storage, is skipped; the structure is still read without running it."""
        in_memory = isinstance(path, (bytes, memoryview))
        self.where = "<bytes>" if in_memory else str(path)
        self.path = path
        if not (saved_here and in_memory):
            load_weights_only(path)  # torch itself must accept it as weights (and the zip be whole)
        self._map: mmap.mmap | memoryview | None = None
        # The file as mapped (not as its path says now): what remembered pins are keyed on.
        self.mapped_status: os.stat_result | None = None
        if in_memory:
            self._map = memoryview(path).cast("B")
            self.size = len(self._map)
        else:
            with open(path, "rb") as handle:
                self.mapped_status = os.fstat(handle.fileno())
                self.size = self.mapped_status.st_size
                if self.size:
                    self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self.structure, self.storages, self.little_endian = self._read_layout()
        except BaseException:
            self.close()
            raise
        flat = self._flat_layout()
        self.flat = flat is not None
        self.views: list[list[Any]] = []  # a flat state dict's views that are not stored tensors
        if flat is not None:
            renames, self.views = flat
            self.storages = [dataclasses.replace(s, name=renames[s.name]) for s in self.storages]
        self.metadata: dict[str, str] | None = {"format": "pt"}

    # -- layout ----------------------------------------------------------------------------

    def _read_layout(self) -> tuple[PickleStructure, list[Storage], bool]:
        try:
            source = ViewFile(self._map) if isinstance(self._map, memoryview) else self.where
            with zipfile.ZipFile(source) as archive:
                records = archive.infolist()
                pickles = [r for r in records if r.filename.endswith("/data.pkl") and r.filename.count("/") == 1]
                if len(pickles) != 1:
                    raise InputFileError(f"{self.where}: a zip without the one data.pkl torch.save writes")
                prefix = pickles[0].filename[: -len("data.pkl")]
                structure = inspect_pickle(archive.read(pickles[0]), self.where)
                order = archive.read(prefix + "byteorder") if prefix + "byteorder" in archive.NameToInfo else b"little"
        except zipfile.BadZipFile as error:
            raise InputFileError(f"{self.where}: a damaged PyTorch (zip) file ({error})") from None
        by_name = {r.filename: r for r in records}
        used: set[str] = set()
        views: dict[str, list[TensorView]] = {}
        for view in structure.tensors:
            views.setdefault(view.storage.key, []).append(view)
        storages = []
        little = order == b"little"
        for key in structure.storages():
            record = by_name.get(f"{prefix}data/{key}")
            if record is None:
                raise InputFileError(f"{self.where}: the pickle refers to storage {key!r}, which the zip lacks")
            if record.compress_type != zipfile.ZIP_STORED or record.file_size != record.compress_size:
                raise InputFileError(f"{self.where}: storage record {record.filename!r} is compressed, which "
                                     "torch.save never does; save the checkpoint again with torch.save")
            name, dtype, shape = self._as_tensor(key, views.get(key, []), structure, record.file_size, little)
            if name in used:
                name = f"{name}#storage{key}"
            used.add(name)
            storages.append(Storage(name, key, self._data_offset(record), record.file_size, dtype, shape))
        storages.sort(key=lambda s: s.offset)
        for before, after in zip(storages, storages[1:], strict=False):
            if before.offset + before.nbytes > after.offset:
                raise InputFileError(f"{self.where}: storage records {before.key!r} and {after.key!r} overlap")
        return structure, storages, little

    def _data_offset(self, record: zipfile.ZipInfo) -> int:
        """Where a record's bytes start: after its local header, name and extra field (which
        may differ from the central directory's: read it from the local header itself)."""
        start = record.header_offset
        if self._map is None or start + _LOCAL_HEADER.size > self.size:
            raise InputFileError(f"{self.where}: record {record.filename!r} lies outside the file")
        fields = _LOCAL_HEADER.unpack_from(self._map, start)
        if fields[0] != _LOCAL_MAGIC:
            raise InputFileError(f"{self.where}: record {record.filename!r} has no local header at offset {start}")
        offset = start + _LOCAL_HEADER.size + fields[9] + fields[10]
        if offset + record.file_size > self.size:
            raise InputFileError(f"{self.where}: record {record.filename!r} runs past the end of the file")
        return offset

    @staticmethod
    def _as_tensor(key: str, views: list[TensorView], structure: PickleStructure, nbytes: int,
                   little: bool) -> tuple[str, str, tuple[int, ...]]:
        """The name, dtype and shape a storage is stored as: the tensor that is exactly the
        storage when there is one; else its elements as a flat tensor of their dtype; else bytes."""
        bare = [".".join(map(str, keys)) for keys, ref in structure.bare_storages if ref.key == key]
        name = views[0].path if views else (bare[0] if bare else f"storage {key}")
        dtypes = {view.dtype for view in views}
        dtype = dtypes.pop() if len(dtypes) == 1 else None
        if dtype is None or not little:
            return name, "uint8", (nbytes,)
        itemsize = by_name(dtype).itemsize
        for view in views:
            if view.offset == 0 and view.is_contiguous and view.numel * itemsize == nbytes:
                return view.path, dtype, view.shape
        if nbytes % itemsize:
            return name, "uint8", (nbytes,)
        return name, dtype, (nbytes // itemsize,)

    def _flat_layout(self) -> tuple[dict[str, str], list[list[Any]]] | None:
        """For a plain state dict (or one under "state_dict"), whatever views and shared
        storages it has: the storages' new names (the state dict's keys) and the views that
        are not a stored tensor themselves, ``[key, storage name, offset, shape, stride]``, so
        the state dict also makes a .safetensors file. None for any other structure."""
        views = self.structure.tensors
        if not views or not all(v.keys for v in views):
            return None  # no tensors, or the file is one tensor
        wrapped = self.structure.top_level == [STATE_DICT_KEY] and all(len(v.keys) == 2 for v in views)
        depth = 2 if wrapped else 1
        keys = [v.keys[-1] for v in views]
        if (self.structure.bare_storages or not views or len(set(keys)) != len(keys)
                or not all(len(v.keys) == depth and isinstance(v.keys[-1], str) for v in views)):
            return None
        by_key = {s.key: s for s in self.storages}
        renames: dict[str, str] = {}
        for view in views:
            storage = by_key[view.storage.key]
            if view.dtype != storage.dtype:
                return None  # stored as bytes: its elements are not one dtype
            if storage.name == view.path and storage.shape == view.shape:
                renames[storage.name] = view.keys[-1]  # this view is the stored tensor
        for storage in self.storages:
            if storage.name not in renames:  # only part of it is viewed: a name no key has
                renames[storage.name] = f"{storage.name.split('.')[-1]}#storage{storage.key}"
        by_storage_key = {s.key: renames[s.name] for s in self.storages}
        extra = [[view.keys[-1], by_storage_key[view.storage.key], view.offset, list(view.shape), list(view.stride)]
                 for view in views if renames.get(view.path) != view.keys[-1]
                 or by_key[view.storage.key].name != view.path]
        return renames, extra

    # -- CheckpointInput -------------------------------------------------------------------

    @property
    def tensor_bytes(self) -> int:
        return sum(s.nbytes for s in self.storages)

    def array(self, storage: Storage) -> np.ndarray:
        """A storage's elements, viewing the mapped file (a copy only when unaligned)."""
        spec = by_name(storage.dtype)
        if self._map is None:
            return np.zeros(storage.shape, dtype=spec.numpy_dtype)
        array = np.frombuffer(self._map, dtype=np.uint8, count=storage.nbytes, offset=storage.offset)
        if storage.offset % spec.itemsize:
            array = array.copy()  # an unaligned record (torch before 64-byte alignment)
        return array.view(spec.numpy_dtype).reshape(storage.shape)

    def tensors(self) -> Any:
        for storage in self.storages:
            yield storage.name, self.array(storage)

    def locations(self) -> Any:
        return ((s.name, self.array(s), self.where, s.offset) for s in self.storages)

    def release_tensor(self, name: str) -> None:
        return None

    def other_files(self) -> None:
        return None

    def skeleton(self) -> bytes:
        """Every byte of the file outside the storages' records, in order."""
        if self._map is None:
            return b""
        pieces = []
        position = 0
        for storage in self.storages:
            pieces.append(self._map[position : storage.offset])
            position = storage.offset + storage.nbytes
        pieces.append(self._map[position:])
        return b"".join(pieces)

    def source_record(self) -> dict[str, Any]:
        return dict(skeleton_record(self), top_level=[str(k)[:200] for k in self.structure.top_level[:1000]])

    def close(self) -> None:
        """Unmap the file (left to the arrays that still view it, if any)."""
        if isinstance(self._map, mmap.mmap):
            with contextlib.suppress(BufferError):
                self._map.close()
        self._map = None


def skeleton_record(checkpoint: TorchZipCheckpoint) -> dict[str, Any]:
    """The ``torch-zip`` source record of a file whose storages are coded as tensors: its
    skeleton, deflated, and where each storage goes back (``restore_plan`` reads it)."""
    skeleton = checkpoint.skeleton()
    return {"format": TORCH_ZIP_SOURCE, "file": os.path.basename(checkpoint.where), "size": checkpoint.size,
            "skeleton": base64.b64encode(zlib.compress(skeleton, 9)).decode("ascii"),
            "skeleton_bytes": len(skeleton), "storages": [[s.name, s.offset] for s in checkpoint.storages],
            "flat": checkpoint.flat, "views": checkpoint.views}


class ViewFile(io.RawIOBase):
    """A read-only, seekable file over bytes in memory, without the copy ``io.BytesIO`` makes
    of a memoryview (a DCP item's bytes are the size of its tensor)."""

    def __init__(self, view: memoryview):
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, start + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        piece = self._view[self._position : self._position + len(target)]
        target[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)


def checkpoint_part(name: str, flat: bool) -> str:
    """Which part of a training checkpoint a stored tensor belongs to, from its path: "model",
    "optimizer exp_avg" (and each other per-parameter state), "optimizer" (the rest of it), or
    the top-level key it lies under. For reports: where the bytes (and the gains) are."""
    if flat:
        return "model"
    keys = name.split("#", 1)[0].split(".")
    if "state" in keys[1:] and keys[-1] in OPTIMIZER_STATES and "optim" in keys[0].lower():
        return f"optimizer {keys[-1]}"
    if "optim" in keys[0].lower():
        return "optimizer"
    return "model" if keys[0] in MODEL_KEYS else keys[0]


def restore_plan(record: dict[str, Any], tensors: list[tuple[str, int]], where: str) -> tuple[bytes, list[int]]:
    """How to write a torch-zip source back: its skeleton, and for each tensor (in the
    .tzip's order, ``(name, nbytes)``) how many skeleton bytes come before it; the rest of
    the skeleton comes after the last. Every figure of the record is checked against the
    tensors and the file size first, so nothing is written from a record that does not add up."""
    storages = record.get("storages")
    if (not isinstance(storages, list) or len(storages) != len(tensors)
            or any(not (isinstance(s, list) and len(s) == 2 and s[0] == name and isinstance(s[1], int))
                   for s, (name, _) in zip(storages, tensors, strict=False))):
        raise HeaderError(f"{where}: the torch-zip source record does not list the file's tensors in order")
    size, expected = record.get("size"), record.get("skeleton_bytes")
    if not isinstance(size, int) or not isinstance(expected, int) or expected + sum(n for _, n in tensors) != size:
        raise HeaderError(f"{where}: the torch-zip source record's sizes do not add up to the file's")
    try:
        packed = base64.b64decode(record.get("skeleton", ""), validate=True)
        inflater = zlib.decompressobj()
        skeleton = inflater.decompress(packed, expected + 1)
    except (ValueError, TypeError, zlib.error) as error:
        raise HeaderError(f"{where}: the torch-zip skeleton does not decode ({error})") from None
    if len(skeleton) != expected or not inflater.eof:
        raise HeaderError(f"{where}: the torch-zip skeleton holds {len(skeleton):,} bytes, not {expected:,}")
    gaps = []
    position = used = 0  # in the file; in the skeleton
    for (name, nbytes), (_, offset) in zip(tensors, storages, strict=True):
        gap = offset - position
        if gap < 0 or used + gap > expected:
            raise HeaderError(f"{where}: tensor {name!r} is placed at offset {offset}, inside what comes before it")
        gaps.append(gap)
        used += gap
        position = offset + nbytes
    return skeleton, gaps
