"""Entropy bounds against answers known in advance."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tensorzip.analysis import tensor_bounds
from tensorzip.cli.main import main


def test_uniform_bytes_cost_eight_bits_and_have_no_context(rng):
    data = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    bounds = tensor_bounds(data)
    assert bounds.order0_bytes == pytest.approx(data.size, rel=0.01)
    assert bounds.context_bytes == pytest.approx(bounds.order0_bytes)


def test_two_equiprobable_values_cost_one_bit_each():
    data = np.tile(np.array([0, 255], np.uint8), 5000)
    assert tensor_bounds(data).order0_bytes == pytest.approx(10_000 / 8)


def test_second_plane_determined_by_the_first_has_no_conditional_entropy(rng):
    exponent_like = rng.integers(100, 110, 50_000).astype(np.uint16)
    words = (exponent_like << 8) | (exponent_like * 7 % 256)  # after rotation: plane 1 = f(plane 0)
    rotated_back = ((words >> 1) | (words << 15)).astype(np.uint16)  # undo the bf16 layout's rotation
    bounds = tensor_bounds(rotated_back.view(ml_dtypes.bfloat16))
    plane0_bits = np.log2(10) * words.size
    assert bounds.order0_bytes == pytest.approx(2 * plane0_bits / 8, rel=0.01)
    assert bounds.context_bytes == pytest.approx(plane0_bits / 8, rel=0.01)


def test_rows_at_different_scales_are_free_given_the_row_median():
    rows = np.array([2.0 ** k for k in range(-20, 12)], np.float32)[:, None]
    weights = np.broadcast_to(rows, (32, 64)).astype(ml_dtypes.bfloat16)  # one exponent per row, mantissa 0
    bounds = tensor_bounds(np.ascontiguousarray(weights))
    assert bounds.order0_bytes == pytest.approx(32 * 64 * 5 / 8, rel=0.01)  # 32 exponents: 5 bits each
    assert bounds.context_bytes == pytest.approx(0.0, abs=1e-6)


def test_empty_tensor():
    assert tensor_bounds(np.zeros((0, 3), np.float32)).order0_bytes == 0.0


def test_compress_verbose_shows_both_bounds(tmp_path, capsys, rng):
    from safetensors.numpy import save_file

    source = tmp_path / "m.safetensors"
    save_file({"w": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}, str(source))
    assert main(["compress", str(source), "-v"]) == 0
    out = capsys.readouterr().out
    assert "order-0" in out and "context" in out and "\nw " in out
