"""Write a golden compressed model folder (run once; the outputs are committed).

    python tests/golden/compressed_folder_v1/make_golden.py [OUT_DIR]

``compress_folder`` of a small model folder (two shards and their index, a config, a
subfolder) as the running version writes it: this folder holds the one written by the code of
commit dd2ff94 (manifest format 1, no guards; see ../README.md for running an earlier
revision), ``../compressed_folder_v2/`` the one written with guards (manifest format 2), by
this same script given that folder. Never regenerated: the script only writes what is missing.

- ``model.tzip/``: the compressed folder (empty folders are not part of the model, as git
  keeps none);
- ``expected.json``: every file of the original folder, its bytes in hex.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz


def build(root: Path) -> None:
    rng = np.random.default_rng(20261202)
    save_safetensors({"w": rng.standard_normal((16, 8)).astype(np.float32)}, str(root / "model-1.safetensors"),
                     metadata={"format": "pt"})
    save_safetensors({"b": np.arange(8, dtype=np.int64)}, str(root / "model-2.safetensors"),
                     metadata={"format": "pt"})
    index = {"metadata": {"total_size": 576}, "weight_map": {"w": "model-1.safetensors", "b": "model-2.safetensors"}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    (root / "config.json").write_text('{"hidden_size": 8}\n')
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}\n')


def main() -> None:
    here = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent
    if (here / "model.tzip").exists():
        return
    print(f"writing with {tz.__file__}")  # noqa: T201 - a script: which package wrote the files
    with tempfile.TemporaryDirectory() as scratch:
        original = Path(scratch) / "model"
        original.mkdir()
        build(original)
        tz.compress_folder(original, here / "model.tzip")
        files = {p.relative_to(original).as_posix(): p.read_bytes().hex() for p in sorted(original.rglob("*"))
                 if p.is_file()}
    (here / "expected.json").write_text(json.dumps(files, indent=1) + "\n")


if __name__ == "__main__":
    main()
