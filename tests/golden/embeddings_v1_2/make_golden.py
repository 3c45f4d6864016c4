"""Write the golden embedding collections of embeddings format 1 as the solver of issue 20
writes them (run once; outputs committed): the same cases and inputs as ``embeddings_v1``,
whose files stay as they are (test_golden_layers decodes both).

What changed in the writer: a recall target is met when the recall's lower confidence
bound (one-sided Wilson, 95%, over queries x k) reaches it, not the estimate, and the
record gains ``recall_lower_bound`` and ``recall_confidence``; the solver screens
candidates without ranking them and stops bisecting within 2% of the level. The format
(version 1) did not change: older readers read these files. These files are never
edited or regenerated; the script only writes files that are missing.

- ``recall.tzip``: ``recall=0.9, k=10``, the solver's choice of basis, emphasis and
  level; recall measured with each of the 300 rows as a query (the held-out sample
  is at most 500 rows), each excluded from its own results; float32.
- ``axes_l2.tzip``: ``recall=0.8, k=5, metric="l2", rotation=False``: the original
  axes, stored as ``dims``; float32.
- ``level.tzip``: ``level=0.02`` by hand (PCA, emphasis 0.75), no target; float16
  input (decodes to float32).
- ``unit_norm.tzip``: unit-norm vectors, ``recall=0.95`` measured on 64 given
  queries (``queries=``): decoded vectors are scaled back to norm 1.
- ``int8.tzip``, ``int4.tzip``, ``binary.tzip``: the fixed-level modes: int8 on the
  original axes; int4 with ``rotation=True`` on unit-norm data (PCA directions and
  the rescaling to norm 1 together); binary (2 levels, each side's mean) on the
  original axes of unit-norm data.
- ``lossless.tzip``: ``mode="lossless"``, float16 vectors kept bit for bit.
- ``expected.npz``: each file's decoded vectors (``NAME``) as written by the
  format-1 code.

Inputs are rebuilt from fixed seeds by the tests, which measure recall again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tensorzip as tz

HERE = Path(__file__).resolve().parent
COUNT, DIM = 300, 24

# name -> (input: "plain" or "unit", dtype name) and the keyword arguments of tz.embeddings.compress
CASES: dict[str, tuple[str, str, dict]] = {
    "recall": ("plain", "float32", {"recall": 0.9, "k": 10}),
    "axes_l2": ("plain", "float32", {"recall": 0.8, "k": 5, "metric": "l2", "rotation": False}),
    "level": ("plain", "float16", {"level": 0.02}),
    "unit_norm": ("unit", "float32", {"recall": 0.95, "k": 10, "queries": True}),
    "int8": ("plain", "float32", {"mode": "int8"}),
    "int4": ("unit", "float32", {"mode": "int4", "rotation": True}),
    "binary": ("unit", "float32", {"mode": "binary"}),
    "lossless": ("plain", "float16", {"mode": "lossless"}),
}


def vectors(kind: str, dtype: str) -> np.ndarray:
    """300 x 24, variance falling along (rotated) directions, as real embeddings have."""
    rng = np.random.default_rng(20261204)
    x = rng.standard_normal((COUNT, DIM)) * np.linspace(1.0, 0.1, DIM)
    x = x @ np.linalg.qr(rng.standard_normal((DIM, DIM)))[0] + 0.3
    if kind == "unit":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype)


def queries() -> np.ndarray:
    """Unit-norm queries near the collection's strong directions, not rows of it."""
    rng = np.random.default_rng(20261205)
    base = vectors("unit", "float64")[rng.choice(COUNT, 64, replace=False)]
    q = base + 0.3 * rng.standard_normal(base.shape) / np.sqrt(DIM)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def arguments(name: str) -> tuple[np.ndarray, dict]:
    """(vectors, keyword arguments) of a case, queries included."""
    kind, dtype, options = CASES[name]
    options = dict(options)
    if options.pop("queries", False):
        options["queries"] = queries()
    return vectors(kind, dtype), options


def main() -> None:
    sys.stderr.write(f"writing with {tz.__file__}\n")
    expected = {}
    for name in CASES:
        path = HERE / f"{name}.tzip"
        if not path.exists():
            x, options = arguments(name)
            path.write_bytes(tz.embeddings.compress(x, **options))
        expected[name] = tz.embeddings.open(path.read_bytes()).decode()
    if not (HERE / "expected.npz").exists():
        np.savez_compressed(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
