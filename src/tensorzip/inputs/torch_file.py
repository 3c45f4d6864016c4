"""PyTorch checkpoint files (``model.pt``, ``pytorch_model.bin``) as input, and as output.

A file is read with ``torch.load(weights_only=True)`` (memory-mapped when it is in
torch's zip format), which refuses anything but tensors and plain containers
without running code from the file; a file it refuses is refused here too, never
unpickled in full. It must hold a flat dict of name -> tensor, or such a dict as
the only entry ``"state_dict"`` of a dict. Each tensor is stored as its own
contiguous data: views and shared storages are not kept (tensors identical in
content are still stored once, by dedup).

The pickle itself cannot be restored byte for byte; its tensors can, bit for bit.
Decompressing writes a .safetensors file, or a torch file through ``torch.save``
when the output is named ``.pt``, ``.pth`` or ``.bin``.
"""

from __future__ import annotations

import importlib
import io
import os
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..container.records import TORCH_SOURCE, TORCH_WRAPPERS
from ..dtypes import SUPPORTED_DTYPES
from ..errors import InputFileError, TensorzipError, UnsupportedDtypeError
from .frameworks import to_numpy

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
STATE_DICT_KEY = TORCH_WRAPPERS[0]
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # the legacy format: a pickled magic number, protocol 2


def import_torch(purpose: str) -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise TensorzipError(f"{purpose} needs PyTorch: pip install torch") from None


def is_torch_path(path: str | os.PathLike[str]) -> bool:
    """Named like a torch file (.pt, .pth, .bin)."""
    return Path(path).suffix.lower() in TORCH_SUFFIXES


def looks_like_torch_file(path: str | os.PathLike[str]) -> bool:
    """A torch file by its name, or by its first bytes when it is not named .safetensors."""
    if is_torch_path(path):
        return True
    if Path(path).suffix.lower() == ".safetensors" or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return has_torch_magic(head) and not is_npz(path)


def is_npz(path: str | os.PathLike[str]) -> bool:
    """A NumPy .npz archive (np.savez): a zip like torch.save's, whose first member is a .npy
    (torch.save's first member is its pickle, ``<name>/data.pkl``)."""
    try:
        with open(path, "rb") as handle:
            local = handle.read(30 + 4096)
    except OSError:
        return False
    if len(local) < 30 or local[:4] != _ZIP_MAGIC:
        return False
    name_length = int.from_bytes(local[26:28], "little")
    return local[30 : 30 + name_length].endswith(b".npy")


def has_torch_magic(head: bytes) -> bool:
    """Whether a file's first bytes are those of torch.save (a zip, or the legacy pickle)."""
    return head[:4] in (_ZIP_MAGIC, _LEGACY_MAGIC)


def is_torch_zip(path: str | os.PathLike[str]) -> bool:
    """A file in torch.save's zip format (since torch 1.6), which is restored byte for byte
    (``torch_zip.py``); the legacy format is read as a flat state dict."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def is_torch_zip_bytes(data: bytes | memoryview) -> bool:
    """The bytes of a torch.save zip (by their first bytes)."""
    return bytes(data[:4]) == _ZIP_MAGIC


def _reason(error: BaseException) -> str:
    """The useful line of a torch.load failure (its weights_only message is long and
    suggests weights_only=False, which tensorzip never does)."""
    text = str(error)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            said = line.split("WeightsUnpickler error:", 1)[1].split(" Please use", 1)[0].strip()
            return said or "the pickle holds something other than tensors and plain values"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def _check_zip_complete(path: str | os.PathLike[str] | BinaryIO, where: str, size: int) -> None:
    """A zip-format .pt is memory-mapped, and a memory-mapped load reads storages by the
    offsets its records give, without the checks ``torch.load`` makes on a full read: a
    truncated file would hand over the zip's own bytes as weights. So the central directory
    (at the end: lost first when a file is cut) must parse, and every record must lie inside
    the file, before anything is loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise InputFileError(f"{where}: a damaged or truncated PyTorch (zip) file ({error}); nothing was read "
                             "from it: save it again") from None
    for record in records:
        if record.header_offset + record.compress_size > size:
            raise InputFileError(f"{where}: its entry {record.filename!r} runs past the end of the file "
                                 "(truncated?); nothing was read from it: save it again")


def load_weights_only(path: str | os.PathLike[str] | bytes | memoryview) -> tuple[Any, int, bool]:
    """``torch.load(weights_only=True)`` of a PyTorch file (memory-mapped when it is a zip), or
    an InputFileError saying why not: what torch refuses to load safely is refused here. Returns
    what it holds, the file's size, and whether it is in torch's zip format. ``path`` may be
    the file's bytes (a DCP item's stream), loaded from memory."""
    source: str | os.PathLike[str] | BinaryIO
    if isinstance(path, (bytes, memoryview)):
        where, size, head, source = "<bytes>", len(path), bytes(path[:4]), io.BytesIO(path)
    else:
        where, source = str(path), path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as handle:
                head = handle.read(4)
        except FileNotFoundError:
            raise InputFileError(f"{where}: no such file") from None
        except IsADirectoryError:
            raise InputFileError(f"{where}: is a directory, not a PyTorch file") from None
        except OSError as error:
            raise InputFileError(f"{where}: cannot read ({error.strerror or error})") from None
    torch = import_torch(f"{where}: reading a PyTorch file")
    if head == _ZIP_MAGIC:
        _check_zip_complete(source, where, size)
        if not isinstance(source, (str, os.PathLike)):
            source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(source, map_location="cpu", weights_only=True,
                                mmap=head == _ZIP_MAGIC and isinstance(source, (str, os.PathLike)))
    except Exception as error:  # noqa: BLE001 - whatever the unpickler raises, the file is refused
        if head not in (_ZIP_MAGIC, _LEGACY_MAGIC):
            raise InputFileError(f"{where}: not a PyTorch file (it does not start as torch.save writes "
                                 "one), nor a .safetensors or .tzip file; `tensorzip info` says what it "
                                 "is") from None
        raise InputFileError(
            f"{where}: not loadable as a PyTorch file without unpickling arbitrary objects "
            f"({_reason(error)}); "
            "tensorzip never unpickles arbitrary objects. Save tensors and plain values only (state dicts, "
            "optimizer states, numbers) or safetensors"
        ) from None
    return loaded, size, head == _ZIP_MAGIC


class TorchFile:
    """A PyTorch state-dict file, loaded safely and checked: flat, string keys, tensors."""

    def __init__(self, path: str | os.PathLike[str]):
        self.where = str(path)
        torch = import_torch(f"{self.where}: reading a PyTorch file")
        loaded, self.size, _ = load_weights_only(path)
        self.wrapper: str | None = None
        if (isinstance(loaded, Mapping) and set(loaded) == {STATE_DICT_KEY}
                and isinstance(loaded[STATE_DICT_KEY], Mapping)):
            self.wrapper = STATE_DICT_KEY
            loaded = loaded[STATE_DICT_KEY]
        self.state = self._checked(loaded, torch)

    def _checked(self, loaded: Any, torch: Any) -> dict[str, Any]:
        if not isinstance(loaded, Mapping):
            raise InputFileError(f"{self.where}: holds a {type(loaded).__name__}, not a dict of tensors "
                                 "(a state dict)")
        if STATE_DICT_KEY in loaded and len(loaded) > 1 and not all(
                isinstance(v, torch.Tensor) for v in loaded.values()):
            others = ", ".join(repr(k) for k in list(loaded) if k != STATE_DICT_KEY)[:200]
            raise InputFileError(f"{self.where}: holds 'state_dict' beside other entries ({others}); only a flat "
                                 "dict of tensors is stored, so they would be lost: save the state dict alone")
        for name, value in loaded.items():
            if not isinstance(name, str):
                raise InputFileError(f"{self.where}: key {name!r} is a {type(name).__name__}; tensor names must "
                                     "be strings")
            if not isinstance(value, torch.Tensor):
                raise InputFileError(f"{self.where}: entry {name!r} is a {type(value).__name__}, not a tensor; "
                                     "only a flat dict of name -> tensor is supported")
            if value.layout != torch.strided or value.is_quantized or value.is_meta:
                kind = "quantized" if value.is_quantized else "meta" if value.is_meta else str(value.layout)
                raise InputFileError(f"{self.where}: tensor {name!r} is a {kind} tensor; only dense tensors "
                                     "are supported")
            dtype = str(value.dtype).removeprefix("torch.")
            if dtype not in SUPPORTED_DTYPES:
                raise UnsupportedDtypeError(f"{self.where}: tensor {name!r} has dtype {dtype}, which tensorzip "
                                            "does not store")
        return dict(loaded)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state.values())

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Each tensor as a contiguous numpy array (a view of the mapped file where it can be)."""
        for name, tensor in self.state.items():
            yield name, to_numpy(tensor)

    @property
    def metadata(self) -> dict[str, str]:
        """As Hugging Face writes it: the restored .safetensors loads in transformers."""
        return {"format": "pt"}

    def locations(self) -> None:
        return None  # unpickled tensors: not raw bytes a worker could read from the file

    def release_tensor(self, name: str) -> None:
        return None

    def other_files(self) -> None:
        return None

    def source_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"format": TORCH_SOURCE, "file": os.path.basename(self.where), "size": self.size}
        if self.wrapper is not None:
            record["wrapper"] = self.wrapper
        return record


class _RememberedWriteError:
    """The handle for ``torch.save``, remembering the OS error of a failed write: torch turns
    it into a RuntimeError ("unexpected pos ...") that does not say the disk is full."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def save_torch(tensors: dict[str, Any], handle: BinaryIO, wrapper: str | None) -> None:
    """Write a state dict with ``torch.save`` (under ``wrapper`` when the original had one)."""
    torch = import_torch("writing a .pt/.bin file")
    sink = _RememberedWriteError(handle)
    try:
        torch.save({wrapper: tensors} if wrapper else tensors, sink)
    except RuntimeError:
        if sink.error is not None:  # the atomic output turns it into an OutputFileError naming the file
            raise sink.error from None
        raise
