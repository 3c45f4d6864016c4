"""Readers of what users give ``compress``: a .safetensors file, a folder of shards, a PyTorch file.

Each reader satisfies ``CheckpointInput``, so the writers (``files.py``, ``writing/cluster.py``,
``analysis/weights.py``) take any of them without asking which one it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from .tree import Tree

# Where a tensor lies as raw bytes: (name, array mapped from the file, file path, byte offset).
TensorLocation = tuple[str, np.ndarray, str, int]


class CheckpointInput(Protocol):
    """What every input reader offers the writers."""

    where: str  # the path, for messages
    size: int  # bytes of the input (a folder: of its shards and index)
    metadata: dict[str, str] | None  # the .tzip metadata to write (safetensors' own; "format": "pt")

    @property
    def tensor_bytes(self) -> int: ...

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every tensor, in storage order (the order the .tzip is written in)."""
        ...

    def source_record(self) -> dict[str, Any]:
        """What restores the original byte for byte (``container/records.py``)."""
        ...

    def locations(self) -> Iterator[TensorLocation] | None:
        """Every tensor with where its raw bytes lie, for workers that read them themselves;
        ``None`` when the tensors are not raw bytes of a file (a pickled PyTorch file)."""
        ...

    def release_tensor(self, name: str) -> None:
        """Drop a written tensor's mapped pages from resident memory (bounded memory)."""
        ...

    def other_files(self) -> Tree | None:
        """A folder's files beside its tensors (config, tokenizer, subfolders), which an archive
        keeps byte for byte; ``None`` for a single file."""
        ...
