"""Tensors that other tensors of the same file are coded against, kept while one pass
decodes the file, so each is decoded once and not once per tensor that refers to it.

Why: a checkpoint holding N copies of a model (a fine-tune family, FP32 master weights
beside a BF16 copy) stores the later copies as residuals against the first. A loader
that decodes batch after batch would otherwise decode (and over HTTP, fetch) a target
again for every reference to it: the 2 GB scale checkpoint loaded at 100 MB/s took
31 s instead of about 12.

A kept array is the caller's own output when the pass hands its outputs to the caller
(``iter_tensors``, loaders): a CRC-32C taken when it is kept is checked before each use
and again after it, and an array the caller changed in between is decoded again from
the file (a change made while it was being read is caught by the second check). A pass
that reuses one output buffer (streaming to a file) keeps private copies instead. Both
kinds are held within a memory budget (at most a quarter of ``ReadLimits.max_memory_bytes``); a
target over budget is decoded again when needed, as before, and a target whose every
use lies in the batch that decoded it is not kept at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from .. import _native
from .header import TensorEntry

# Decoded bytes a pass may keep at once (a reader lowers it to a quarter of its ReadLimits).
COPY_BUDGET_BYTES = 512 * 1024 * 1024


class DecodedTargets:
    """The reference targets of one decoding pass over ``entries`` (in decoding order)."""

    def __init__(self, entries: Iterable[TensorEntry], *, private_copies: bool,
                 budget_bytes: int = COPY_BUDGET_BYTES):
        self._uses = Counter(e.reference.tensor for e in entries if e.reference is not None)
        self._private = private_copies
        self._budget = budget_bytes
        self._held = 0
        self._kept: dict[str, tuple[np.ndarray, int]] = {}

    @property
    def held_bytes(self) -> int:
        """Decoded bytes kept now (caller-owned arrays included: holding them keeps them alive)."""
        return self._held

    def wanted(self, name: str) -> bool:
        """Whether a tensor of this name is still to be referred to in this pass."""
        return self._uses.get(name, 0) > 0 and name not in self._kept

    def keep(self, name: str, array: np.ndarray, *, uses_here: int = 0) -> None:
        """Remember ``array``, the whole decoded tensor ``name``, unless its ``uses_here``
        references in the batch that decoded it are all it has left, or it is over budget."""
        if not self.wanted(name) or self._uses[name] <= uses_here:
            return
        if self._held + array.nbytes > self._budget:
            return
        if self._private:
            self._kept[name] = (array.copy(), 0)
        else:
            self._kept[name] = (array, _checksum(array))
        self._held += array.nbytes

    def get(self, name: str) -> np.ndarray | None:
        """The kept tensor ``name`` if it is still as decoded, else None (decode it again)."""
        found = self._kept.get(name)
        if found is None:
            return None
        array, crc = found
        if not self._private and _checksum(array) != crc:
            self._forget(name)  # changed by its owner since: never used as decoded
            return None
        return array

    def still_intact(self, name: str) -> bool:
        """After a use of ``get(name)``'s array: whether it was unchanged while it was read.
        False means the owner wrote to it meanwhile, so that use must be redone from the file."""
        found = self._kept.get(name)
        if found is None or self._private:
            return True
        if _checksum(found[0]) == found[1]:
            return True
        self._forget(name)
        return False

    def used(self, name: str) -> None:
        """One reference to ``name`` was restored; forget it after its last."""
        self._uses[name] -= 1
        if self._uses[name] <= 0:
            self._forget(name)

    def _forget(self, name: str) -> None:
        dropped = self._kept.pop(name, None)
        if dropped is not None:
            self._held -= dropped[0].nbytes


def _checksum(array: np.ndarray) -> int:
    return _native.crc32c(array.reshape(-1).view(np.uint8))
