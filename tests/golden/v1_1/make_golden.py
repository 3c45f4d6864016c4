"""Write the golden files of format 1.1 (run once; the outputs are committed).

    python tests/golden/v1_1/make_golden.py

1.1 added coding against a base (``delta``, ``base``) and tensors stored once
(``same_as``). Like the 1.0 files, these are never edited or regenerated; the
script only writes files that are missing.

- ``base.safetensors``: the base checkpoint (plain safetensors).
- ``tuned.tzip``: coded against ``base.safetensors``, one tensor per delta mode
  and dtype family, a tensor the base lacks, and a tied copy (``same_as``).
- ``tuned2.tzip``: coded against ``tuned.tzip`` (a chain of two links).
- ``expected.npz``: the decoded bytes of every tensor of both .tzip files, as uint8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file as save_safetensors

from tensorzip import dtypes
from tensorzip.codecs import BytePlanesCodec
from tensorzip.codecs.residual import Delta, codec_for, digest, residual
from tensorzip.container import TzipWriter
from tensorzip.container.reader import open_base

HERE = Path(__file__).resolve().parent


def _tensors() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(20261123)
    base = {
        "w.f32": (rng.standard_normal((40, 30)) * 0.05).astype(np.float32),
        "w.bf16": (rng.standard_normal((32, 32)) * 0.05).astype(ml_dtypes.bfloat16),
        "ids.i64": np.arange(300, dtype=np.int64),
    }

    def step(tensors):
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
    tuned2 = step({k: v for k, v in tuned.items() if k != "head.f16"})
    return base, tuned, tuned2


MODES = {"w.f32": "sub", "w.bf16": "xor", "ids.i64": "sub"}


def _write(path: Path, tensors: dict[str, np.ndarray], base_path: Path, tied: str | None = None) -> None:
    with open_base(base_path) as base, TzipWriter(path, base={"file": base_path.name}) as writer:
        for name, array in tensors.items():
            spec = dtypes.by_numpy(array.dtype)
            other = base.tensor(name)
            if name in MODES and other is not None:
                stored = residual(array, other, MODES[name], spec)
                writer.add(name, stored, codec_for(MODES[name], stored, spec), Delta(MODES[name], name, digest(other)))
            else:
                writer.add(name, array, BytePlanesCodec.for_dtype(spec))
        if tied is not None:
            writer.add_shared(f"{tied}.tied", tied)


def main() -> int:
    base, tuned, tuned2 = _tensors()
    base_path = HERE / "base.safetensors"
    if not base_path.exists():
        save_safetensors(base, str(base_path))
    if not (HERE / "tuned.tzip").exists():
        _write(HERE / "tuned.tzip", tuned, base_path, tied="w.f32")
    if not (HERE / "tuned2.tzip").exists():
        _write(HERE / "tuned2.tzip", tuned2, HERE / "tuned.tzip")
    if not (HERE / "expected.npz").exists():
        arrays = {f"tuned.tzip/{n}": a.reshape(-1).view(np.uint8) for n, a in tuned.items()}
        arrays["tuned.tzip/w.f32.tied"] = tuned["w.f32"].reshape(-1).view(np.uint8)
        arrays.update({f"tuned2.tzip/{n}": a.reshape(-1).view(np.uint8) for n, a in tuned2.items()})
        np.savez(HERE / "expected.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
