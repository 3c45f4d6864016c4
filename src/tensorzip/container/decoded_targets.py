"""Tensors that other tensors of the same file are coded against, kept while one pass
decodes the file, so each is decoded once and not once per tensor that refers to it.

Why: a checkpoint holding N copies of a model (a fine-tune family, FP32 master weights
beside a BF16 copy) stores the later copies as residuals against the first. A loader
that decodes batch after batch would otherwise decode (and over HTTP, fetch) a target
again for every reference to it: the 2 GB scale checkpoint loaded at 100 MB/s took
31 s instead of about 12.

A kept array is the caller's own output when the pass hands its outputs to the caller
(``iter_tensors``, loaders): a CRC-32C taken when it is kept is checked before each use,
and an array the caller changed in between is decoded again from the file. A pass that
reuses one output buffer (streaming to a file) keeps private copies instead, within a
memory budget; a target over budget is decoded again when needed, as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from .. import _native
from .header import TensorEntry

# Private copies a streaming pass may hold at once (decoded bytes).
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

    def wanted(self, name: str) -> bool:
        """Whether a tensor of this name is still to be referred to in this pass."""
        return self._uses.get(name, 0) > 0 and name not in self._kept

    def keep(self, name: str, array: np.ndarray) -> None:
        """Remember ``array``, the whole decoded tensor ``name``."""
        if not self.wanted(name):
            return
        if self._private:
            if self._held + array.nbytes > self._budget:
                return
            self._kept[name] = (array.copy(), 0)
            self._held += array.nbytes
        else:
            self._kept[name] = (array, _native.crc32c(array.reshape(-1).view(np.uint8)))

    def get(self, name: str) -> np.ndarray | None:
        """The kept tensor ``name`` if it is still as decoded, else None (decode it again)."""
        found = self._kept.get(name)
        if found is None:
            return None
        array, crc = found
        if not self._private and _native.crc32c(array.reshape(-1).view(np.uint8)) != crc:
            del self._kept[name]  # changed by its owner since: never used as decoded
            return None
        return array

    def used(self, name: str) -> None:
        """One reference to ``name`` was restored; forget it after its last."""
        self._uses[name] -= 1
        if self._uses[name] <= 0:
            dropped = self._kept.pop(name, None)
            if dropped is not None and self._private:
                self._held -= dropped[0].nbytes
