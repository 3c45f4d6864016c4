"""Writes the golden files of the error-bounded codec ``tensorzip.bounded`` (issue 21; run once,
when it was added; kept to prove every later tensorzip decodes them to the same values, and
that the encoder still writes these bytes).

Inputs (``inputs()``, from a fixed seed): hidden-state-like arrays, correlated along the first
axis with one outlier channel. ``NAME.tzip``: ``tz.compress(input, max_abs_error=BOUND)``;
``expected.npz``: each file's decoded values (``NAME``).

- ``rows_f32``: float32 (96, 64), bound 1e-3: a prediction along the rows is chosen.
- ``noise_f64``: float64 (50, 40) of independent values, bound 0.05: no prediction.
- ``half_f16``: float16 (40, 32), bound 0.01 (the decoder's rounding to float16 counted).
- ``brain_bf16``: bfloat16 (40, 32), bound 0.05.

    python tests/golden/bounded_codec_v1/make_golden.py
"""

from pathlib import Path

import ml_dtypes
import numpy as np

import tensorzip as tz

HERE = Path(__file__).parent
CASES = {"rows_f32": ((96, 64), np.float32, 1e-3, True), "noise_f64": ((50, 40), np.float64, 0.05, False),
         "half_f16": ((40, 32), np.float16, 0.01, True), "brain_bf16": ((40, 32), ml_dtypes.bfloat16, 0.05, True)}


def inputs() -> dict[str, tuple[np.ndarray, float]]:
    rng = np.random.default_rng(20261203)
    out = {}
    for name, (shape, dtype, bound, correlated) in CASES.items():
        x = rng.standard_normal(shape)
        if correlated:
            x = x.cumsum(axis=0) * 0.2 + rng.standard_normal(shape) * 0.05
        x[:, 3] *= 20
        out[name] = (x.astype(dtype), bound)
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
