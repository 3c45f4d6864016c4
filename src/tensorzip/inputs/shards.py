"""Multi-file checkpoints: a folder of safetensors shards, as Hugging Face saves
large models (``model-00001-of-00003.safetensors`` ... plus
``model.safetensors.index.json``), stored as one .tzip.

One archive rather than a .tzip per shard: tensors repeated across shards (tied
weights saved twice) are then stored once by the same dedup as within a file,
and any tensor is still read alone. The header's ``source`` records each shard's
name and verbatim safetensors header, and the index file's text, so decompressing
rebuilds the folder byte for byte (docs/format.md, "Folders").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..container.records import FOLDER_SOURCE, load_json
from ..errors import InputFileError
from .safetensors import SafetensorsFile
from .tree import PERMISSION_BITS, Tree, walk_tree

INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_BYTES = 100 * 1024 * 1024


class ShardedCheckpoint:
    """The shards of a checkpoint folder, in name order, and its index file."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputFileError(f"{self.folder}: not a folder")
        shard_paths = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix == ".safetensors")
        if not shard_paths:
            raise InputFileError(f"{self.folder}: no .safetensors files in the folder")
        self.shards = [(p.name, SafetensorsFile(p)) for p in shard_paths]
        self.index = self._read_index(shard_paths)
        seen: dict[str, str] = {}
        for shard_name, shard in self.shards:
            for entry in shard.entries:
                if entry.name in seen:
                    raise InputFileError(
                        f"{self.folder}: tensor {entry.name!r} is in both {seen[entry.name]} and {shard_name}"
                    )
                seen[entry.name] = shard_name

    metadata: dict[str, str] | None = None  # a folder archive records none of its own

    def _mode(self, name: str) -> int:
        """Permission bits of a file of the folder (of the file a link points to)."""
        return stat.S_IMODE(os.stat(self.folder / name).st_mode) & PERMISSION_BITS

    def other_files(self) -> Tree:
        """Everything in the folder besides the shards and the index (config, tokenizer,
        subfolders, empty folders), which the archive keeps byte for byte, every subfolder
        with its permission bits (a private folder must not come back world-readable)."""
        tree = walk_tree(self.folder)
        kept = {name for name, _ in self.shards} | ({self.index[0]} if self.index else set())
        return Tree(tree.root, tree.folders, [f for f in tree.files if f.path not in kept])

    def _read_index(self, shard_paths: list[Path]) -> tuple[str, str] | None:
        indexes = sorted(p for p in self.folder.iterdir() if p.is_file() and p.name.endswith(INDEX_SUFFIX))
        if not indexes:
            return None
        if len(indexes) > 1:
            raise InputFileError(f"{self.folder}: more than one index file ({', '.join(p.name for p in indexes)})")
        path = indexes[0]
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise InputFileError(f"{path}: index file is over {MAX_INDEX_BYTES} bytes")
        raw = path.read_bytes()
        doc = load_json(raw, str(path), "the safetensors index", InputFileError)
        weight_map = doc.get("weight_map", {}) if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise InputFileError(f"{path}: not a safetensors index (no weight_map object)")
        text = raw.decode("utf-8")
        names = {p.name for p in shard_paths}
        missing = sorted({f for f in weight_map.values() if isinstance(f, str)} - names)
        if missing:
            raise InputFileError(f"{path}: names shards that are not in the folder: {', '.join(missing[:3])}")
        return path.name, text

    @property
    def size(self) -> int:
        """Bytes of the shards and the index, as stored in the folder."""
        return sum(s.size for _, s in self.shards) + (len(self.index[1].encode("utf-8")) if self.index else 0)

    @property
    def tensor_bytes(self) -> int:
        return sum(e.end - e.begin for _, s in self.shards for e in s.entries)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        for _, shard in self.shards:
            for entry in shard.entries:
                yield entry.name, shard.array(entry)

    def locations(self) -> Iterator[tuple[str, np.ndarray, str, int]]:
        for _, shard in self.shards:
            yield from shard.locations()

    def release_tensor(self, name: str) -> None:
        for _, shard in self.shards:
            shard.release_tensor(name)

    def source_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "format": FOLDER_SOURCE,
            "files": [{"name": name, "header": shard.header_text, "tensors": len(shard.entries),
                       "mode": self._mode(name)} for name, shard in self.shards],
        }
        if self.index is not None:
            record["index"] = {"name": self.index[0], "text": self.index[1], "mode": self._mode(self.index[0])}
        return record
