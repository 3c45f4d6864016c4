"""Write the golden files of the ``files`` feature (run once; the outputs are committed).

    python tests/golden/archive_files_v1/make_golden.py

The ``files`` required feature lets a folder archive keep the folder's other files
(config, tokenizer, subfolders, empty folders) with their permission bits, after every
tensor's chunks. Never edited or regenerated: the script only writes what is missing.

- ``archive.tzip``: ``compress_file(folder, "archive.tzip")`` of the tree ``build`` makes.
- ``expected.json``: every entry of that tree (git keeps neither empty folders nor modes,
  so the tree itself is not committed): its kind and, for a file, its mode and bytes in hex.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz

HERE = Path(__file__).resolve().parent


def build(root: Path) -> None:
    rng = np.random.default_rng(20261202)
    save_safetensors({"w": rng.standard_normal((16, 8)).astype(np.float32)}, str(root / "model-1.safetensors"))
    save_safetensors({"b": np.arange(8, dtype=np.int64)}, str(root / "model-2.safetensors"))
    index = {"metadata": {}, "weight_map": {"w": "model-1.safetensors", "b": "model-2.safetensors"}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    (root / "config.json").write_text('{"hidden_size": 8}\n')
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}\n')
    (root / "empty").mkdir()
    (root / "script.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "script.sh", 0o755)
    os.chmod(root / "config.json", 0o444)
    (root / "zero").write_bytes(b"")


def listing(root: Path) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for here, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(here, name), root)] = {"kind": "folder"}
        for name in files:
            path = Path(here, name)
            found[os.path.relpath(path, root)] = {"kind": "file", "mode": stat.S_IMODE(path.stat().st_mode),
                                                  "hex": path.read_bytes().hex()}
    return dict(sorted(found.items()))


def main() -> None:
    if (HERE / "archive.tzip").exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "folder"
        root.mkdir()
        build(root)
        tz.compress_file(root, HERE / "archive.tzip")
        (HERE / "expected.json").write_text(json.dumps(listing(root), indent=1) + "\n")


if __name__ == "__main__":
    main()
