"""Write the golden files of the ``blake3-pins`` feature (run once; the outputs are committed).

    python tests/golden/blake3_pins_v1/make_golden.py

Files coded against a base pin each base tensor by a content hash. Until issue 20 that was
SHA-256 (``sha256-128:``, the ``v1_1`` folder); new files pin by BLAKE3 (``blake3-128:``)
and declare the required feature ``blake3-pins``. Written the way a user writes them, with
``compress_file``; never edited or regenerated (only missing files are written).

- ``base.safetensors``: the base (FP32, BF16 and int64 tensors).
- ``tuned.safetensors``: a fine-tune of it, plus a tensor the base lacks.
- ``tuned.tzip``: ``tuned.safetensors`` coded against ``base.safetensors``.
- ``tuned2.tzip``: a further step coded against ``tuned.tzip`` (a chain: the base's
  tensors are decoded, then pinned).
- ``expected.npz``: the decoded bytes of every tensor of both .tzip files, as uint8.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz

HERE = Path(__file__).resolve().parent


def _tensors() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(20261203)
    base = {
        "w.f32": (rng.standard_normal((64, 48)) * 0.05).astype(np.float32),
        "w.bf16": (rng.standard_normal((48, 40)) * 0.05).astype(ml_dtypes.bfloat16),
        "ids.i64": np.arange(500, dtype=np.int64),
    }

    def step(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, a in tensors.items():
            if a.dtype == np.int64:
                out[name] = a + rng.integers(-1, 2, a.shape)
            else:
                wide = a.astype(np.float64)
                out[name] = (wide + rng.standard_normal(a.shape) * np.abs(wide) * 0.01).astype(a.dtype)
        return out

    tuned = step(base)
    tuned["head.f16"] = (rng.standard_normal((10, 8)) * 0.1).astype(np.float16)  # the base lacks it
    tuned2 = step(tuned)
    return base, tuned, tuned2


def main() -> int:
    sys.stderr.write(f"writing with {tz.__file__}\n")
    base, tuned, tuned2 = _tensors()
    for name, tensors in (("base.safetensors", base), ("tuned.safetensors", tuned)):
        if not (HERE / name).exists():
            save_safetensors(tensors, str(HERE / name))
    if not (HERE / "tuned.tzip").exists():
        tz.compress_file(HERE / "tuned.safetensors", HERE / "tuned.tzip", base=HERE / "base.safetensors")
    if not (HERE / "tuned2.tzip").exists():
        with tempfile.TemporaryDirectory() as folder:
            step = Path(folder) / "tuned2.safetensors"
            save_safetensors(tuned2, str(step))
            tz.compress_file(step, HERE / "tuned2.tzip", base=HERE / "tuned.tzip")
    if not (HERE / "expected.npz").exists():
        arrays = {}
        for file_name in ("tuned.tzip", "tuned2.tzip"):
            for name, array in tz.load_file(HERE / file_name).items():
                arrays[f"{file_name}/{name}"] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        np.savez(HERE / "expected.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
