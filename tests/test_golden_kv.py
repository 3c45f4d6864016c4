"""KV files written by KV record format 1 (min-max groups only) stay readable, to the
byte, after format 2 added the per-layer grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.kv.codec import from_bytes

GOLDEN = Path(__file__).parent / "golden" / "kv_v1"


@pytest.mark.parametrize("name", ["levels", "bounded"])
def test_format_1_kv_files_decode_as_written(name):
    blob = (GOLDEN / f"{name}.tzip").read_bytes()
    assert from_bytes(blob)[1]["format"] == 1
    keys, values = tz.kv.decompress(blob)
    with np.load(GOLDEN / "expected.npz") as expected:
        assert keys.dtype == expected[f"{name}.keys"].dtype
        assert keys.tobytes() == expected[f"{name}.keys"].tobytes()
        assert values.tobytes() == expected[f"{name}.values"].tobytes()


def test_format_1_bounded_file_still_meets_its_bound():
    import sys

    sys.path.insert(0, str(GOLDEN))
    try:
        from make_golden import _cache
    finally:
        sys.path.remove(str(GOLDEN))
    keys, values = _cache(np.float32)
    decoded = tz.kv.decompress((GOLDEN / "bounded.tzip").read_bytes())
    for original, restored in zip((keys, values), decoded, strict=True):
        assert np.abs(restored - original).max() <= 0.02
