"""The digest of an original file, recorded at compression so ``verify`` proves the restored
file identical without the original at hand (``compress --digest``).

BLAKE2b-256 from the standard library (no extra dependency; BLAKE3 would need one). The
file is hashed in a thread beside the encoder: hashlib releases the GIL on large updates,
so on a machine with a spare core the digest costs little wall time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

from ..errors import InputFileError

ALGORITHM = "blake2b-256"
_PIECE = 8 * 1024 * 1024


def new_hash() -> Any:
    return hashlib.blake2b(digest_size=32)


def formatted(hasher: Any) -> str:
    """The recorded form: ``"blake2b-256:<hex>"``."""
    return f"{ALGORITHM}:{hasher.hexdigest()}"


class FileDigest:
    """Hashes a file in a background thread; ``result()`` waits for it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = path
        self._value: str | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="tensorzip-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        hasher = new_hash()
        buffer = bytearray(_PIECE)
        view = memoryview(buffer)
        try:
            with open(self.path, "rb", buffering=0) as handle:
                while count := handle.readinto(buffer):
                    hasher.update(view[:count])
        except OSError as error:
            self._error = error
            return
        self._value = formatted(hasher)

    def result(self) -> str:
        self._thread.join()
        if self._error is not None or self._value is None:
            reason = self._error.strerror if self._error is not None else "unknown"
            raise InputFileError(f"{self.path}: cannot read it to record its digest ({reason})")
        return self._value


class DigestSink:
    """A write-only stream that hashes what is written (``decompress_file`` into it, then
    compare ``value()`` with the recorded digest): verifying needs no disk space."""

    name = "<digest>"

    def __init__(self) -> None:
        self._hasher = new_hash()
        self._size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hasher.update(view)
        self._size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        return None

    def value(self) -> str:
        return formatted(self._hasher)
