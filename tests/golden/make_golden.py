"""Write the golden .tzip files of format 1.0 (run once; the outputs are committed).

    python tests/golden/make_golden.py

Golden files are never edited or regenerated: a reader must decode every file
ever written, so if the encoder's output has to change, add new golden files
(e.g. a ``v1_1/`` directory written by a copy of this script) and keep these.

Each file is described in ``expected.json`` (tensor names, dtypes, shapes,
metadata); the decoded bytes of every tensor are in ``expected.npz`` as uint8
arrays, so bfloat16 and float8 are stored exactly.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

import tensorzip as tz
from tensorzip import dtypes
from tensorzip.codecs import BytePlanesCodec, SparseCodec
from tensorzip.container import TzipWriter

HERE = Path(__file__).resolve().parent
MANIFEST = "expected.json"
ARRAYS = "expected.npz"
FORMAT_VERSION = "1.0"


def _cases() -> dict[str, dict[str, Any]]:
    """file name -> {"metadata": ..., "tensors": [(name, array, codec or None)]}."""
    rng = np.random.default_rng(20240601)

    def small_normal(shape, dtype, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)

    random_f32 = rng.integers(0, 256, 500 * 4, dtype=np.uint8).view(np.float32)
    return {
        "floats.tzip": {  # low-entropy floats: rANS-coded planes
            "metadata": None,
            "tensors": [
                ("layer.weight.bf16", small_normal((64, 64), ml_dtypes.bfloat16), None),
                ("layer.weight.f16", small_normal((2000,), np.float16), None),
                ("layer.weight.f32", small_normal((30, 50), np.float32), None),
            ],
        },
        "constant.tzip": {  # all-zero and all-equal tensors: constant planes
            "metadata": None,
            "tensors": [
                ("zeros.f32", np.zeros((1000,), np.float32), None),
                ("ones.bf16", np.ones((17, 3), ml_dtypes.bfloat16), None),
                ("sevens.u8", np.full((300,), 7, np.uint8), None),
            ],
        },
        "raw.tzip": {  # random bytes: raw planes
            "metadata": None,
            "tensors": [
                ("noise.u8", rng.integers(0, 256, 4096, dtype=np.uint8), None),
                ("noise.f32", random_f32, None),
            ],
        },
        "ints_bools.tzip": {
            "metadata": None,
            "tensors": [
                ("position_ids", np.arange(512, dtype=np.int64)[None, :], None),
                ("token_type", rng.integers(-3, 3, (40, 25), dtype=np.int64), None),
                ("mask", rng.random(777) < 0.3, None),
                ("counts.u16", rng.geometric(0.1, 600).astype(np.uint16), None),
                ("f8", small_normal((256,), ml_dtypes.float8_e4m3fn, 1.0), None),
            ],
        },
        "edge_shapes.tzip": {
            "metadata": None,
            "tensors": [
                ("empty", np.zeros((0,), np.float32), None),
                ("empty2d", np.zeros((3, 0), np.int8), None),
                ("scalar", np.array(-2.5, dtype=np.float64), None),
                ("one", np.array([np.nan], dtype=np.float32), None),
            ],
        },
        "metadata.tzip": {
            "metadata": {"format": "pt", "step": "1000", "note": "ünïcödé ✓"},
            "tensors": [("w", small_normal((8, 8), np.float32), None)],
        },
        "multichunk.tzip": {  # several chunks per tensor, both rotations, a short last chunk
            "metadata": None,
            "tensors": [
                ("rotated", small_normal((2500,), np.float32), BytePlanesCodec(1, 256)),
                ("plain", small_normal((10, 100), ml_dtypes.bfloat16), BytePlanesCodec(0, 100)),
                ("ints", rng.integers(0, 50, 333, dtype=np.int32), BytePlanesCodec(0, 64)),
            ],
        },
        "single_array.tzip": {  # as tz.compress writes a single array
            "metadata": {"tensorzip.framework": "np"},
            "tensors": [("", small_normal((100,), np.float32), None)],
        },
        "narrowed.tzip": {  # wide floats holding narrow ones: stored narrow (narrowed_float)
            "metadata": None,
            "tensors": [
                ("f32_holding_f16", small_normal((40, 30), np.float16).astype(np.float32), None),
                ("f64_holding_f32", small_normal((500,), np.float32).astype(np.float64), None),
            ],
        },
        "sparse.tzip": {  # mostly zeros: zero mask + nonzero values (sparse), several chunks
            "metadata": None,
            "tensors": [
                ("pruned.f32", np.where(rng.random(3000) < 0.1, small_normal((3000,), np.float32), 0)
                 .astype(np.float32), SparseCodec(1, 1024)),
                ("pruned.i64", np.where(rng.random(700) < 0.2, rng.integers(-9, 9, 700), 0).astype(np.int64),
                 SparseCodec(0, 300)),
            ],
        },
    }


def encode(metadata: dict[str, str] | None, tensors: list[tuple[str, np.ndarray, Any]]) -> bytes:
    """One .tzip image, written with one thread (the output must not depend on it)."""
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=metadata, threads=1) as writer:
        for name, array, codec in tensors:
            writer.add(name, array, codec=codec)
    return buffer.getvalue()


def main() -> int:
    cases = _cases()
    manifest: dict[str, Any] = {"format": FORMAT_VERSION, "tensorzip": tz.__version__, "files": {}}
    arrays: dict[str, np.ndarray] = {}
    for index, (file_name, case) in enumerate(cases.items()):
        target = HERE / file_name
        if not target.exists():  # existing golden files are never rewritten; new cases are added
            target.write_bytes(encode(case["metadata"], case["tensors"]))
        entries = []
        for position, (name, array, _) in enumerate(case["tensors"]):
            key = f"f{index}_t{position}"
            arrays[key] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            entries.append({"name": name, "dtype": dtypes.by_numpy(array.dtype).name,
                            "shape": list(array.shape), "key": key})
        manifest["files"][file_name] = {"metadata": case["metadata"], "tensors": entries}
    np.savez(HERE / ARRAYS, **arrays)
    (HERE / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
