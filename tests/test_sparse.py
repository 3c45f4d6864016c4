"""Sparse tensors: zero mask + nonzero values, exact, and chosen only where it is smaller."""

from __future__ import annotations

import contextlib
import io

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip.codecs import BytePlanesCodec, SparseCodec, choose_codec
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.dtypes import by_numpy

from .conftest import assert_bit_equal, flip

FLOATS = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64]


def sparse(rng, n, density, dtype):
    # float64 values straight from float64 draws (from float32 they would hide float32: another path)
    values = rng.standard_normal(n) * 0.02
    values[rng.random(n) >= density] = 0
    return values.astype(dtype)


def write(array, codec=None) -> bytes:
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("x", array, codec=codec)
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64, np.uint16, np.int8, np.bool_])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 7, 1000, 70_001])
def test_round_trip_every_byte(rng, dtype, density, n):
    array = sparse(rng, n, density, dtype)
    blob = write(array, SparseCodec(rotate_bits=0, chunk_elements=4096))
    assert_bit_equal(TzipReader(blob).get_tensor("x"), array)


def test_negative_zero_and_nan_are_values(rng):
    array = np.zeros(1000, np.float32)
    array[[3, 500]] = -0.0
    array[7] = np.nan
    array[9] = np.float32(np.frombuffer(b"\x01\x00\xc0\x7f", np.float32)[0])  # a NaN with a payload
    blob = write(array, SparseCodec(0, 256))
    assert_bit_equal(TzipReader(blob).get_tensor("x"), array)


@pytest.mark.parametrize("dtype", FLOATS)
def test_policy_picks_sparse_for_pruned_weights_and_it_is_smaller(rng, dtype):
    array = sparse(rng, 200_000, 0.1, dtype)
    chosen = choose_codec(array, by_numpy(array.dtype))
    assert isinstance(chosen, SparseCodec)
    planes = write(array, BytePlanesCodec.for_dtype(by_numpy(array.dtype)))
    auto = write(array)
    assert len(auto) < 0.9 * len(planes)
    assert_bit_equal(TzipReader(auto).get_tensor("x"), array)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.standard_normal(50_000) * 0.02).astype(np.float32),  # dense weights
        lambda rng: np.zeros(50_000, np.float32),  # all zeros: constant planes are smaller
        lambda rng: sparse(rng, 50_000, 0.5, np.int8),  # one-byte elements: no zero per plane to save
        lambda rng: np.arange(50_000, dtype=np.int64) % 7,  # few zeros
    ],
)
def test_policy_does_not_pick_sparse_where_it_does_not_pay(rng, make):
    array = make(rng)
    assert not isinstance(choose_codec(array, by_numpy(array.dtype)), SparseCodec)


def test_corrupt_sparse_chunks_raise(rng):
    array = sparse(rng, 5000, 0.2, np.float32)
    blob = bytearray(write(array, SparseCodec(1, 1024)))
    reader = TzipReader(bytes(blob))
    first = reader.entry("x").chunks[0]
    for offset in range(first.offset, first.offset + 40):
        damaged = flip(bytes(blob), offset)
        with pytest.raises(tz.CorruptDataError):
            TzipReader(damaged).get_tensor("x")
    # Without checksums, every damaged byte of the chunk is refused with a TensorzipError
    # or decodes to some array: never another exception, never a crash.
    for offset in range(first.offset, first.offset + first.length):
        with contextlib.suppress(tz.TensorzipError):
            TzipReader(flip(bytes(blob), offset)).get_tensor("x", verify_checksums=False)


def test_config_round_trip():
    codec = SparseCodec(1, 1000)
    assert SparseCodec.from_config(codec.get_config()) == codec
    assert codec.get_config() == {"id": "tensorzip.sparse", "rotate_bits": 1, "chunk_elements": 1000}
