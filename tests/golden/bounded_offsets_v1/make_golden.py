"""Writes the golden files of the error-bounded codec's channel offsets (the ``offsets``
config field of ``tensorzip.bounded``, issue 21; run once, when they were added; kept to prove
every later tensorzip decodes them to the same values, and that the encoder still writes
these bytes).

Inputs (``inputs()``, from a fixed seed): hidden-state-like arrays whose channels (last axis)
sit at different means, so the encoder keeps a per-channel offset. ``NAME.tzip``:
``tz.compress(input, max_abs_error=BOUND)``; ``expected.npz``: each file's decoded values.

- ``channels_f32``: float32 (300, 48), bound 0.01.
- ``channels_bf16``: bfloat16 (200, 40), bound 0.05 (the decoder's rounding to bfloat16 counted).

    python tests/golden/bounded_offsets_v1/make_golden.py
"""

from pathlib import Path

import ml_dtypes
import numpy as np

import tensorzip as tz

HERE = Path(__file__).parent
CASES = {"channels_f32": ((300, 48), np.float32, 0.01), "channels_bf16": ((200, 40), ml_dtypes.bfloat16, 0.05)}


def inputs() -> dict[str, tuple[np.ndarray, float]]:
    rng = np.random.default_rng(20261204)
    out = {}
    for name, (shape, dtype, bound) in CASES.items():
        centres = rng.standard_normal(shape[-1]) * 4
        out[name] = ((rng.standard_normal(shape) * 0.3 + centres).astype(dtype), bound)
    return out


if __name__ == "__main__":
    if (HERE / "expected.npz").exists():
        raise SystemExit("golden files are never rewritten; a format change adds a new folder")
    decoded = {}
    for name, (x, bound) in inputs().items():
        blob = tz.compress(x, max_abs_error=bound)
        (HERE / f"{name}.tzip").write_bytes(blob)
        decoded[name] = tz.decompress(blob)
    np.savez(HERE / "expected.npz", **{k: np.ascontiguousarray(v).view(np.uint8) for k, v in decoded.items()})
