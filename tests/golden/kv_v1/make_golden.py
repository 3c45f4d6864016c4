"""Write the golden KV-cache files of KV record format 1 (run once; outputs committed).

    python tests/golden/kv_v1/make_golden.py

Record format 1 has one quantizer: min-max groups (``levels``) or, with
``max_abs_error``, a grid from each group's minimum. These files are never edited
or regenerated; the script only writes files that are missing.

- ``levels.tzip``: 6 levels, group 16, a 3-token exact window, 2 outlier channels,
  a rank-1 correction; float16 input.
- ``bounded.tzip``: ``max_abs_error=0.02``; float32 input.
- ``expected.npz``: the decoded keys and values of both, as written by format-1 code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tensorzip as tz

HERE = Path(__file__).resolve().parent


def _cache(dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261123)
    shape = (2, 1, 3, 21, 9)  # odd tokens and head_dim
    keys = rng.standard_normal(shape) + np.linspace(-2, 2, shape[-1])  # channel offsets, like real keys
    values = rng.standard_normal(shape) * 0.5
    return keys.astype(dtype), values.astype(dtype)


def main() -> None:
    blobs = {
        "levels": tz.kv.compress(*_cache(np.float16), levels=6, group_size=16, window=3, outliers=2, rank=1),
        "bounded": tz.kv.compress(*_cache(np.float32), max_abs_error=0.02, group_size=8),
    }
    expected = {}
    for name, blob in blobs.items():
        path = HERE / f"{name}.tzip"
        if not path.exists():
            path.write_bytes(blob)
        keys, values = tz.kv.decompress(path.read_bytes())
        expected[f"{name}.keys"], expected[f"{name}.values"] = keys, values
    if not (HERE / "expected.npz").exists():
        np.savez(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
