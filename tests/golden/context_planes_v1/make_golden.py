"""Writes the golden files of the `max` level's context planes (issue 22; run once, when they
were added; kept to prove every later tensorzip still reads them, and that the encoder at
``level="max"`` still writes these bytes).

source.safetensors: weight-like matrices (normal values) in BF16 and FP32, large enough that
plane 1 of their chunks is coded given plane 0 (chunk plane mode 3, codec config
``"context_planes": true``); an FP16 matrix (its plane 0 already holds the top mantissa
bits: the model does not pay, so it records the plain config); a BF16 tensor of uniform
random bits (does not pay either); a small FP32 bias; and twelve LoRA-sized BF16 matrices of
16 x 384 (packed into one group, whose chunk codes plane 1 given plane 0: the group's codec
config has ``context_planes`` too).
max.tzip: ``tz.compress_file(source.safetensors, level="max")``.

    python tests/golden/context_planes_v1/make_golden.py
"""

from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

import tensorzip as tz

HERE = Path(__file__).parent


def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261203)
    lora = {f"lora.{i}.A": (rng.standard_normal((16, 384)) * 0.02).astype(ml_dtypes.bfloat16) for i in range(12)}
    return lora | {
        "attention.query.weight": (rng.standard_normal((160, 512)) * 0.05).astype(ml_dtypes.bfloat16),
        "intermediate.dense.weight": (rng.standard_normal((72, 1024)) * 0.03).astype(np.float32),
        "output.dense.weight": (rng.standard_normal((40, 1024)) * 0.04).astype(np.float16),
        "noise": rng.integers(0, 1 << 16, 36_000, dtype=np.uint16).view(ml_dtypes.bfloat16),
        "output.dense.bias": (rng.standard_normal(512) * 0.02).astype(np.float32),
    }


if __name__ == "__main__":
    if (HERE / "max.tzip").exists():
        raise SystemExit("golden files are never rewritten; a format change adds a new folder")
    save_file(tensors(), str(HERE / "source.safetensors"), metadata={"format": "pt"})
    tz.compress_file(HERE / "source.safetensors", HERE / "max.tzip", level="max")
