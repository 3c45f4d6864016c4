"""Writes the golden files of the "packed" feature and of compressed headers (issue 22; run
once, when they were added; kept to prove every later tensorzip still reads them, and that
the encoder still writes these bytes).

source.safetensors: a small checkpoint as a model has them: FP32 biases near 0.02 and
LayerNorm weights near 1 (so the writer splits them into two groups by magnitude), a zero
bias, BF16 and FP16 small matrices, int64 position ids, a bool mask, a 0-d step counter, a
bias identical to another (stored once, ``same_as`` a packed tensor), a small tensor holding
NaN, infinities, signed zeros and subnormals, an empty tensor, and one 96 KiB matrix (over
64 KiB: coded alone). packed.tzip: ``tz.compress_file(source.safetensors)``, whose header is
stored zlib-compressed (preamble flag bit 0) with groups and packed entries.

    python tests/golden/packed_tensors_v1/make_golden.py
"""

from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

import tensorzip as tz

HERE = Path(__file__).parent


def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261203)
    out: dict[str, np.ndarray] = {"embeddings.position_ids": np.arange(64, dtype=np.int64)[None, :]}
    for layer in range(3):
        out[f"layer.{layer}.dense.bias"] = (rng.standard_normal(96) * 0.02).astype(np.float32)
        out[f"layer.{layer}.LayerNorm.weight"] = (1 + rng.standard_normal(96) * 0.02).astype(np.float32)
        out[f"layer.{layer}.LayerNorm.bias"] = (rng.standard_normal(96) * 0.01).astype(np.float32)
        out[f"layer.{layer}.adapter.bf16"] = (rng.standard_normal((8, 24)) * 0.05).astype(ml_dtypes.bfloat16)
        out[f"layer.{layer}.adapter.fp16"] = (rng.standard_normal((24, 8)) * 0.05).astype(np.float16)
    out["layer.1.dense.bias.copy"] = out["layer.1.dense.bias"].copy()
    out["zero.bias"] = np.zeros(96, np.float32)
    special = (rng.standard_normal(40) * 0.1).astype(np.float32)
    special.view(np.uint32)[:8] = [0x7FC00001, 0xFFA00000, 0x7F800000, 0xFF800000, 0, 0x80000000, 1, 0x807FFFFF]
    out["special"] = special
    out["mask"] = rng.random(33) < 0.5
    out["step"] = np.array(1234, dtype=np.int64)
    out["empty"] = np.zeros((0, 3), np.float32)
    out["big.weight"] = (rng.standard_normal((96, 256)) * 0.05).astype(np.float32)
    return out


if __name__ == "__main__":
    if (HERE / "packed.tzip").exists():
        raise SystemExit("golden files are never rewritten; a format change adds a new folder")
    save_file(tensors(), str(HERE / "source.safetensors"), metadata={"format": "pt"})
    tz.compress_file(HERE / "source.safetensors", HERE / "packed.tzip")
