"""Base pins remembered per version of the base file (issue 20).

Decoding a file coded against a base checks each base tensor's content hash (its pin:
BLAKE3, or SHA-256 in older files) before using it: that is what makes a wrong or edited
base an error instead of wrong output. Users decode many fine-tunes against one base, and
hashing it again each time costs as much as the decoding. So the pins of a base file's
tensors are remembered, per version of that file: its device, inode, size, modification time
and change time (``st_ctime``, which every write to the file moves and which no user can set
back). A base written since (even to the same size, with its modification time restored) is
a new version, and its tensors are hashed again. What the cache cannot see is a change below
the file system (a disk edited raw): ``TENSORZIP_PIN_CACHE=0`` turns it off, and ``tensorzip
verify`` hashes the tensors of the base it reads every time.

One small JSON file per base path under ``$TENSORZIP_CACHE/pins/``, replaced atomically; a
cache that cannot be read or written is no cache (never an error).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from ..outputs.cache_dir import default_cache_dir

PIN_CACHE_ENV = "TENSORZIP_PIN_CACHE"  # "0": hash every base tensor every time
MAX_CACHE_BYTES = 16 << 20  # a cache file larger than this is ignored (not ours, or damaged)
# Base files whose pins are kept: when a new one is written past this, the least recently
# written are removed (each is a few KB; a user who has decoded against hundreds of bases
# keeps the most recent ones).
MAX_CACHED_BASES = 256


def pin_cache_enabled() -> bool:
    return os.environ.get(PIN_CACHE_ENV, "1") != "0"


def _version(status: os.stat_result) -> list[int]:
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _key(offset: int, nbytes: int, scheme: str) -> str:
    # SHA-256 pins keep the key they had before BLAKE3 pins existed.
    return f"{offset}:{nbytes}" if scheme == "sha256-128:" else f"{offset}:{nbytes}:{scheme}"


class PinCache:
    """The remembered pins of one base file, as of the version seen when it was opened."""

    def __init__(self, file: str | os.PathLike[str], directory: Path | None = None,
                 status: os.stat_result | None = None):
        """``status``: the file as the caller mapped it (fstat of the descriptor it mapped), so
        pins are keyed on the bytes actually read even if the path was replaced since; without
        it, the path as it is now."""
        self.file = os.path.realpath(file)
        self.version = _version(status if status is not None else os.stat(self.file))
        folder = (directory or default_cache_dir()) / "pins"
        self.path = folder / (hashlib.blake2b(self.file.encode(), digest_size=16).hexdigest() + ".json")
        self._pins: dict[str, str] = self._load()
        self._changed = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        try:
            if self.path.stat().st_size > MAX_CACHE_BYTES:
                return {}
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not (isinstance(doc, dict) and doc.get("file") == self.file and doc.get("version") == self.version
                and isinstance(doc.get("pins"), dict)):
            return {}  # another file's, or another version of this one
        return {k: v for k, v in doc["pins"].items() if isinstance(k, str) and isinstance(v, str)}

    def lookup(self, offset: int, nbytes: int, scheme: str) -> str | None:
        """The remembered pin by hash ``scheme`` (its prefix, e.g. "blake3-128:") of the tensor
        at ``offset`` (``nbytes`` long), or None."""
        with self._lock:
            return self._pins.get(_key(offset, nbytes, scheme))

    def remember(self, offset: int, nbytes: int, pin: str, scheme: str) -> None:
        with self._lock:
            self._pins[_key(offset, nbytes, scheme)] = pin
            self._changed = True

    def save(self) -> None:
        """Write what was learned, if the file is still the version it was hashed as."""
        with self._lock:
            if not self._changed:
                return
            try:
                if _version(os.stat(self.file)) != self.version:
                    return  # written to while we read it: what we hashed may be neither version
                self.path.parent.mkdir(parents=True, exist_ok=True)
                doc = {"file": self.file, "version": self.version, "pins": self._pins}
                handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".pins-", suffix=".tmp")
                try:
                    with os.fdopen(handle, "w") as out:
                        json.dump(doc, out)
                    os.replace(temporary, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)
                    raise
                _evict_oldest(self.path.parent, keep=MAX_CACHED_BASES)
            except OSError:
                return  # a read-only or full cache folder: no cache
            self._changed = False


def _evict_oldest(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently written pin files of ``folder`` (best effort:
    another process may be removing them too)."""
    files = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                files.append((entry.stat().st_mtime_ns, entry.path))
    for _, path in sorted(files, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(path)
