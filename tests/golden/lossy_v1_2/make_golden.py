"""Write the golden lossy checkpoints of lossy weights format 1 (run once; outputs committed).

Written by the writer of session 5 (issue 22) from the same cases and inputs as ``lossy_v1``,
whose files stay as they are and are still decoded: headers are now stored zlib-compressed
(preamble flag bit 0), and a target in bits or bytes counts the whole file, so the solvers
spend the bytes the header no longer takes on the data. The record format did not change.
The encoder is checked against these files (tests/test_quantization.py).

A lossy checkpoint is a .tzip whose metadata ``tensorzip.lossy`` holds the record
(format 1, the shared step scale ``delta``, the source's safetensors header, each
tensor's mode and achieved error); each matrix of at least 16 x 16 is stored as
``lossy/NAME/{symbols,row_offset,row_step,column_step}``, every other tensor as
``exact/NAME``. These files are never edited or regenerated; the script only
writes files that are missing.

The source checkpoint (``checkpoint()``, written by ``safetensors_bytes`` here, not
by a library whose layout could change) has a float32 [96, 48], a float16 [48, 96]
and a bfloat16 [128, 32] matrix (quantized), a float32 [8, 8] matrix (too small:
exact), a float32 bias, int64 position ids and a bool mask (exact), and
``__metadata__``; its data is not in the header's name order.

- ``budget.tzip``: ``budget=0.3`` (30% of the source's bytes), no calibration.
- ``bits.tzip``: ``bits_per_weight=6.0``, no calibration.
- ``calibrated.tzip``: ``budget=0.3`` with ``sensitivity``: a per-column vector
  for the float32 matrix (some columns 0: never reached), a (rows, columns) pair
  for the bfloat16 one, a (rows, None) pair for the float16 one.
- ``NAME.safetensors``: each file decompressed (``tz.lossy.decompress_file``) by
  the format-1 code: the original header verbatim and every tensor in its dtype.

Inputs are rebuilt by the tests, which check the budgets and the recorded errors
against them.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np

import tensorzip as tz

HERE = Path(__file__).resolve().parent
BUDGET = 0.3
BITS_PER_WEIGHT = 6.0

# name -> keyword arguments of tz.lossy.compress_file ("sensitivity": True means sensitivity())
CASES: dict[str, dict] = {
    "budget": {"budget": BUDGET},
    "bits": {"bits_per_weight": BITS_PER_WEIGHT},
    "calibrated": {"budget": BUDGET, "sensitivity": True},
}

_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "bool": "BOOL"}


def checkpoint() -> dict[str, np.ndarray]:
    """Tensors in data order (not sorted by name)."""
    rng = np.random.default_rng(20261206)
    attn = rng.standard_normal((96, 48)) * 0.05
    attn[:, :4] *= 8.0  # a few strong input columns
    return {
        "layers.0.attn.weight": attn.astype(np.float32),
        "layers.0.attn.bias": (rng.standard_normal(96) * 0.01).astype(np.float32),
        "layers.0.mlp.weight": (rng.standard_normal((48, 96)) * 0.03 + 0.01).astype(np.float16),
        "embed.weight": (rng.standard_normal((128, 32)) * 0.1).astype(ml_dtypes.bfloat16),
        "small.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "position_ids": np.arange(40, dtype=np.int64).reshape(1, 40),
        "mask": rng.random(12) > 0.5,
    }


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """A .safetensors file: the header names tensors sorted, the data follows the dict's order."""
    header: dict[str, object] = {"__metadata__": {"format": "pt", "source": "tensorzip golden"}}
    offset = 0
    for name, array in tensors.items():
        header[name] = {"dtype": _SAFETENSORS_DTYPES[array.dtype.name], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(np.ascontiguousarray(a).tobytes() for a in tensors.values())


def sensitivity() -> dict[str, object]:
    rng = np.random.default_rng(20261207)
    columns = rng.gamma(2.0, 1.0, 48)
    columns[[5, 6]] = 0.0  # inputs no calibration sample reached
    return {
        "layers.0.attn.weight": columns,
        "embed.weight": (rng.zipf(1.5, 128).astype(np.float64), rng.gamma(2.0, 1.0, 32)),
        "layers.0.mlp.weight": (rng.gamma(2.0, 1.0, 48), None),
    }


def arguments(name: str) -> dict:
    options = dict(CASES[name])
    if options.pop("sensitivity", False):
        options["sensitivity"] = sensitivity()
    return options


def main() -> None:
    sys.stderr.write(f"writing with {tz.__file__}\n")
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "checkpoint.safetensors"
        source.write_bytes(safetensors_bytes(checkpoint()))
        for name in CASES:
            path = HERE / f"{name}.tzip"
            if not path.exists():
                tz.lossy.compress_file(source, Path(scratch) / "out.tzip", **arguments(name))
                path.write_bytes((Path(scratch) / "out.tzip").read_bytes())
            decoded = HERE / f"{name}.safetensors"
            if not decoded.exists():
                tz.lossy.decompress_file(path, decoded)


if __name__ == "__main__":
    main()
