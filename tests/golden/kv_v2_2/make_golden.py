"""Write the golden KV-cache files of KV record format 2 (run once; outputs committed).

Written by the writer of session 5 (issue 22) from the same cases and inputs as ``kv_v2``,
whose files stay as they are and are still decoded: headers are now stored zlib-compressed
(preamble flag bit 0), and a target in bits or bytes counts the whole file, so the solvers
spend the bytes the header no longer takes on the data. The record format did not change.
The encoder is checked against these files (tests/test_quantization.py).

Record format 2 added the per-layer grid (``"quantizer": "grid"``, used by
``bits=``, ``step=``, ``max_abs_error=`` and ``max_rel_error=``) next to format
1's min-max groups (``"quantizer": "groups"``, ``levels=``). These files are never
edited or regenerated; the script only writes files that are missing.

- ``budget.tzip``: ``bits=4`` (the default quantizer: the finest grid whose whole
  file fits 4 bits per element, found by encoding); values with per-token step
  refinement (``grid_refine``); float16 input.
- ``budget_queries.tzip``: ``bits=5`` with queries: the search also picks
  ``value_step_ratio``; the record holds the measured attention error; float32.
- ``attention.tzip``: ``max_rel_error=0.05`` with queries (the attention output's
  relative error); float32.
- ``step.tzip``: ``step=0.25`` (values: ``0.25 * 0.35``), a 2-token exact window,
  bfloat16 input.
- ``bounded.tzip``: ``max_abs_error=0.01`` (checked in float16, the layers' grid
  shrunk where the rounding broke it), a 2-token window and 1 outlier channel;
  float16 input.
- ``levels.tzip``: min-max groups in format 2: 6 levels, group 8, a 3-token window,
  2 outlier channels, a rank-2 correction; float32 input.
- ``levels_f16.tzip``: 17 levels, group 16, uint8 symbols over groups that do not
  divide the tokens (21) or channels; float16 input.
- ``all_window.tzip``: ``step=0.1`` with a window longer than the cache: every
  token exact, no symbols stored at all; float16.
- ``expected.npz``: for each file, the decoded keys and values as written by the
  format-2 code (``NAME.keys``, ``NAME.values``; bfloat16 as its uint16 bits) and
  their dtype names (``NAME.keys.dtype``, ``NAME.values.dtype``).

Inputs (``cache``, ``queries``) are rebuilt from fixed seeds by the tests, which
check the bounds again against them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np

import tensorzip as tz

HERE = Path(__file__).resolve().parent
SMALL = (2, 1, 3, 21, 9)  # odd tokens and head_dim
LARGE = (2, 1, 4, 48, 16)  # enough elements that a few bits per element pay for the header

# name -> (input: shape, dtype name) and the keyword arguments of tz.kv.compress
CASES: dict[str, tuple[tuple[int, ...], str, dict]] = {
    "budget": (LARGE, "float16", {"bits": 4}),
    "budget_queries": (LARGE, "float32", {"bits": 5, "queries": True}),
    "attention": (LARGE, "float32", {"max_rel_error": 0.05, "queries": True}),
    "step": (SMALL, "bfloat16", {"step": 0.25, "window": 2}),
    "bounded": (SMALL, "float16", {"max_abs_error": 0.01, "window": 2, "outliers": 1}),
    "levels": (SMALL, "float32", {"levels": 6, "group_size": 8, "window": 3, "outliers": 2, "rank": 2}),
    "levels_f16": (SMALL, "float16", {"levels": 17, "group_size": 16}),
    "all_window": (SMALL, "float16", {"step": 0.1, "window": 32}),
}


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def cache(shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Keys with per-channel offsets (like real keys), values smaller; one strong value channel."""
    rng = np.random.default_rng(20261202)
    keys = rng.standard_normal(shape) + np.linspace(-2, 2, shape[-1])
    values = rng.standard_normal(shape) * 0.5
    values[..., 1] *= 6.0
    return keys.astype(numpy_dtype(dtype)), values.astype(numpy_dtype(dtype))


def queries(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(20261203)
    return rng.standard_normal(shape[:3] + (8, shape[4])).astype(numpy_dtype(dtype))


def arguments(name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(keys, values, keyword arguments) of a case, queries included."""
    shape, dtype, options = CASES[name]
    keys, values = cache(shape, dtype)
    options = dict(options)
    if options.pop("queries", False):
        options["queries"] = queries(shape, dtype)
    return keys, values, options


def main() -> None:
    sys.stderr.write(f"writing with {tz.__file__}\n")
    expected = {}
    for name in CASES:
        path = HERE / f"{name}.tzip"
        if not path.exists():
            keys, values, options = arguments(name)
            path.write_bytes(tz.kv.compress(keys, values, **options))
        for part, array in zip(("keys", "values"), tz.kv.decompress(path.read_bytes()), strict=True):
            expected[f"{name}.{part}.dtype"] = np.array(array.dtype.name)
            expected[f"{name}.{part}"] = array.view(np.uint16) if array.dtype.name == "bfloat16" else array
    if not (HERE / "expected.npz").exists():
        np.savez_compressed(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
