"""The checkpoint a file is coded against: where to find it, and handing out its
tensors only after checking they are the ones the file was made with.

A base is a .safetensors file, a folder of safetensors shards, a .tzip file (a checkpoint or
a folder archive), or a folder ``tensorzip compress`` made (``DIR.tzip/``, its .tzip shards).
A .tzip base may itself be coded against a base (a chain of training checkpoints); its own base is looked up by the
file name its header records, in the same folder, and so on down the chain.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs.residual import NEW_PINS, Delta, digest, digest_like, pin_scheme
from ..dtypes import by_name
from ..errors import (
    BaseMismatchError,
    BaseRequiredError,
    CorruptDataError,
    FormatError,
    InputFileError,
    LimitExceededError,
)
from ..inputs.safetensors import SafetensorsFile
from ..inputs.shards import ShardedCheckpoint
from ..inputs.torch_file import is_torch_zip
from ..inputs.torch_zip import Storage, TorchZipCheckpoint
from . import records
from .format import MAGIC
from .pin_cache import PinCache, pin_cache_enabled

MAX_CHAIN_LENGTH = 256  # links followed before a chain is taken for a loop


class BaseCheckpoint:
    """An open base checkpoint; ``tensor_for(delta, ...)`` returns a verified base tensor."""

    def __init__(self, path: str | os.PathLike[str], *, open_tzip: Callable[..., Any], threads: int | None = None,
                 chain: tuple[tuple[int, int], ...] = ()):
        """``open_tzip(path, threads=, chain=)`` opens a .tzip base (the reader class,
        passed in so this module does not import the reader that imports it; callers use
        ``container.open_base``). ``chain``: the files (device, inode) that led here; a base
        among them is a loop, refused by name."""
        self.path = Path(path)
        self.name = self.path.name
        self._safetensors: dict[str, tuple[SafetensorsFile, Any]] | None = None
        self._readers: list[Any] = []  # open .tzip files (one, or a compressed folder's shards)
        self._tzip_of: dict[str, Any] = {}  # tensor name -> the .tzip reader holding it
        self._torch: dict[str, tuple[TorchZipCheckpoint, Storage]] | None = None
        self._pins: dict[str, PinCache] = {}  # file -> its remembered pins
        self.remember_pins = True  # False: every pin hashed from the bytes (verify)
        self._pins_lock = threading.Lock()
        try:
            is_folder = self.path.is_dir()
        except OSError as error:  # a name over 255 bytes, a link loop
            raise InputFileError(f"base {self.path}: cannot open ({error.strerror or error})") from None
        if is_folder and ((self.path / records.FOLDER_MANIFEST).is_file()
                          or not any(p.suffix == ".safetensors" for p in self.path.iterdir() if p.is_file())):
            self._open_compressed_folder(open_tzip, threads, chain)
            return
        if is_folder:  # a folder of shards
            folder = ShardedCheckpoint(self.path)
            self._safetensors = {e.name: (shard, e) for _, shard in folder.shards for e in shard.entries}
            self._entries = dict.fromkeys(self._safetensors)
            return
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):  # a FIFO would block the open below
                raise InputFileError(f"base {self.path} is not a regular file (a FIFO, device or socket); a base "
                                     "is a .safetensors or .tzip checkpoint, or a folder of shards")
            with open(self.path, "rb") as handle:
                magic = handle.read(len(MAGIC))
        except FileNotFoundError:
            raise BaseRequiredError(f"base {str(self.path)!r} does not exist") from None
        except OSError as error:
            raise InputFileError(f"{self.path}: cannot open the base ({error.strerror or error})") from None
        if magic == MAGIC:
            self._add_tzip(self.path, open_tzip, threads, chain)
        elif is_torch_zip(self.path):  # a torch.save checkpoint: its storages, by the names compress gives them
            checkpoint = TorchZipCheckpoint(self.path)
            self._torch = {s.name: (checkpoint, s) for s in checkpoint.storages}
            self._entries = dict.fromkeys(self._torch)
        else:
            try:
                single = SafetensorsFile(self.path)
            except (FormatError, CorruptDataError, LimitExceededError) as error:  # not a safetensors file
                numpy = " (a NumPy array)" if magic.startswith(b"\x93NUMPY") else ""
                raise type(error)(f"base {self.path}{numpy} is not a checkpoint a base can be: a .safetensors "
                                  f"or .tzip checkpoint, a PyTorch file or a folder of shards ({error})") from None
            self._safetensors = {e.name: (single, e) for e in single.entries}
            self._entries = dict.fromkeys(self._safetensors)

    def _add_tzip(self, path: Path, open_tzip: Callable[..., Any], threads: int | None,
                  chain: tuple[tuple[int, int], ...]) -> None:
        if len(chain) >= MAX_CHAIN_LENGTH:
            raise BaseRequiredError(f"{path}: the chain of bases is longer than {MAX_CHAIN_LENGTH} files")
        status = os.stat(path)
        if (status.st_dev, status.st_ino) in chain:
            raise BaseMismatchError(f"{path}: the chain of bases comes back to this file (a file coded against "
                                    "itself, or files naming each other as base); no file can be decoded this "
                                    "way: give the checkpoint it was made against with --base")
        reader = open_tzip(path, threads=threads, chain=chain)
        self._readers.append(reader)
        layer = records.layer_of(reader.header.metadata)
        if layer is not None:  # its tensors are the parts of a lossy code: nothing to code against
            self.close()
            raise InputFileError(f"base {path} is a lossy {layer} file, not a checkpoint; a base is a "
                                 ".safetensors or .tzip checkpoint, or a folder of either")
        for name in reader.header.tensors:
            if name in self._tzip_of:
                self.close()
                raise InputFileError(f"base {self.path}: tensor {name!r} is in two of its shards")
            self._tzip_of[name] = reader
        self._entries = dict.fromkeys(self._tzip_of)

    def _open_compressed_folder(self, open_tzip: Callable[..., Any], threads: int | None,
                                chain: tuple[tuple[int, int], ...]) -> None:
        """A folder ``tensorzip compress`` made (DIR.tzip/): its top-level .tzip shards."""
        shards = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix == ".tzip")
        if not shards:
            raise InputFileError(f"base {self.path}: a folder with neither .safetensors nor .tzip shards; a base "
                                 "is a .safetensors or .tzip checkpoint, or a folder of either")
        self._entries = {}
        for shard in shards:
            with open(shard, "rb") as handle:
                if handle.read(len(MAGIC)) != MAGIC:
                    self.close()
                    raise InputFileError(f"base {self.path}: {shard.name} is not a .tzip file")
            self._add_tzip(shard, open_tzip, threads, chain)

    def files(self) -> list[Path]:
        """Every file this base reads: itself (or its folder) and, for a .tzip coded against a
        base of its own, each file down the chain. An output may replace none of them."""
        return [self.path, *(f for reader in self._readers for f in reader.base_files())]

    def tensor(self, name: str) -> np.ndarray | None:
        """The base tensor called ``name``, or ``None`` when the base has none."""
        if name not in self._entries:
            return None
        if self._safetensors is not None:
            shard, entry = self._safetensors[name]
            return shard.array(entry)
        if self._torch is not None:
            checkpoint, storage = self._torch[name]
            return checkpoint.array(storage)
        return self._tzip_of[name].get_tensor(name)

    def location(self, name: str) -> tuple[str, int] | None:
        """Where base tensor ``name`` lies as raw bytes, (file, byte offset), when the base is
        safetensors (a file or a folder of shards) and holds it; else ``None`` (a .tzip base's
        tensors must be decoded). Lets another process read it without opening the base."""
        if self._torch is not None and name in self._torch:
            checkpoint, storage = self._torch[name]
            return checkpoint.where, storage.offset
        if self._safetensors is None or name not in self._safetensors:
            return None
        shard, entry = self._safetensors[name]
        return shard.where, shard.data_start + entry.begin

    def layout(self, name: str) -> tuple[str, int] | None:
        """(dtype name, element count) of base tensor ``name`` from the base's header alone,
        or ``None`` when the base has no such tensor."""
        if name not in self._entries:
            return None
        if self._safetensors is not None:
            _, entry = self._safetensors[name]
            return entry.spec.name, math.prod(entry.shape)
        if self._torch is not None:
            _, storage = self._torch[name]
            return storage.dtype, math.prod(storage.shape)
        stored = self._tzip_of[name].header.tensors[name]
        return stored.spec.name, stored.numel

    def tensor_for(self, delta: Delta, where: str, name: str, expected: str,
                   like: tuple[str, int] | None = None) -> np.ndarray:
        """The base tensor a delta was made against, checked against its content hash.
        ``like``: the (dtype name, element count) it must have, checked from the base's
        header before the base tensor is read or decoded."""
        array = self.unpinned_tensor_for(delta, where, name, expected, like)
        if self.pin(delta.base_tensor, array, delta.base_digest) != delta.base_digest:
            raise BaseMismatchError(
                f"{where}: tensor {name!r} is coded against base {expected!r}, but tensor "
                f"{delta.base_tensor!r} of {self.path} differs from the one it was made with "
                f"(content hash {digest_like(array, delta.base_digest)}, expected "
                f"{delta.base_digest}): wrong base?{self._chain_hint(expected)}"
            )
        return array

    def unpinned_tensor_for(self, delta: Delta, where: str, name: str, expected: str,
                            like: tuple[str, int] | None = None) -> np.ndarray:
        """``tensor_for`` before its content hash is checked: for a reader that restores while
        it decodes and checks the pin (``tensor_for``) before anything is returned."""
        layout = self.layout(delta.base_tensor)
        if layout is None:
            raise BaseMismatchError(
                f"{where}: tensor {name!r} is coded against tensor {delta.base_tensor!r} of base {expected!r}, "
                f"but {self.path} has no such tensor: wrong base?{self._chain_hint(expected)}"
            )
        if like is not None and layout != like:
            raise BaseMismatchError(
                f"{where}: tensor {name!r} is coded against tensor {delta.base_tensor!r} of base {expected!r}, "
                f"but that tensor of {self.path} is {layout[1]} x {layout[0]}, not {like[1]} x {like[0]}: wrong base?"
                f"{self._chain_hint(expected)}"
            )
        array = self.tensor(delta.base_tensor)
        assert array is not None
        return array

    def pin_is_remembered(self, delta: Delta) -> bool:
        """Whether the base tensor ``delta`` names is remembered, for this version of its file,
        to have the pin ``delta`` expects (no bytes read): then it needs no hashing."""
        layout = self.layout(delta.base_tensor)
        slot = self._pin_slot(delta.base_tensor) if layout is not None else None
        scheme = pin_scheme(delta.base_digest) or NEW_PINS
        return slot is not None and slot[0].lookup(
            slot[1], layout[1] * by_name(layout[0]).itemsize, scheme) == delta.base_digest

    def pin(self, name: str, array: np.ndarray, expected: str | None = None) -> str:
        """The content hash of base tensor ``name`` (``array``, its bytes): the one remembered
        for this version of its file (``pin_cache``; mapped bases only: a .tzip base's tensors
        are decoded anyway), if it is the ``expected`` one when one is given; else computed
        from the bytes (and remembered). A remembered pin only ever confirms: a mismatch is
        always the bytes' own hash. The hash is the one ``expected`` names (new pins: NEW_PINS)."""
        scheme = (pin_scheme(expected) if expected is not None else None) or NEW_PINS
        slot = self._pin_slot(name)
        if slot is None:
            return digest(array, scheme)
        cache, offset = slot
        known = cache.lookup(offset, array.nbytes, scheme)
        if known is not None and (expected is None or known == expected):
            return known
        computed = digest(array, scheme)
        cache.remember(offset, array.nbytes, computed, scheme)
        return computed

    def _pin_slot(self, name: str) -> tuple[PinCache, int] | None:
        """(the remembered pins of the file holding base tensor ``name``, its offset there), or
        None where pins are not remembered (off, verify, a .tzip base, an unreadable file)."""
        location = self.location(name) if self.remember_pins and pin_cache_enabled() else None
        if location is None:
            return None
        holder = self._torch[name][0] if self._torch is not None and name in self._torch else \
            self._safetensors[name][0] if self._safetensors is not None else None
        status = getattr(holder, "mapped_status", None)
        if status is None:  # not mapped from a file we opened: nothing to key remembered pins on
            return None
        with self._pins_lock:
            cache = self._pins.get(location[0])
            if cache is None:
                try:
                    cache = self._pins[location[0]] = PinCache(location[0], status=status)
                except OSError:
                    return None
        return cache, location[1]

    def _chain_hint(self, expected: str) -> str:
        """When the file given is not the one the header names: --base replaces only that one
        link, so a base further down a chain must be found beside the link that names it."""
        if not expected or self.name == expected:
            return ""
        return (f" (the file names {expected!r} as its base and --base replaces that file; a base further down a "
                "chain is looked for beside the link that names it: put it there)")

    def close(self) -> None:
        for cache in self._pins.values():
            cache.save()
        self._pins.clear()
        if self._torch:
            next(iter(self._torch.values()))[0].close()
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    def __enter__(self) -> BaseCheckpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


PASS_IT = "pass it (base=... in Python, --base on the command line)"


def locate_base(recorded: str, given: str | os.PathLike[str] | None, next_to: str | os.PathLike[str] | None,
                where: str, *, link: bool = False) -> str | os.PathLike[str]:
    """Where the base a header names is: ``given``, else beside the file that names it.
    Raises BaseRequiredError, naming the expected base, when it is not there. ``link``: the
    file is itself a base down a chain, whose base only its place can give (--base gives the
    first file's)."""
    if given is None and next_to is None:
        raise BaseRequiredError(f"{where}: coded against base {recorded!r}; {PASS_IT}")
    path = given if given is not None else Path(next_to).parent / recorded  # type: ignore[arg-type]
    if not os.path.exists(path):
        advice = (f"put {recorded!r} beside {where} (a base further down a chain is looked for beside the link "
                  "that names it; --base replaces only the first file's base)") if link else PASS_IT
        raise BaseRequiredError(f"{where}: coded against base {recorded!r}, which is not at {path}; {advice}")
    return path
