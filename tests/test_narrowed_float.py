"""Wide floats holding narrow ones are stored narrow, bit-exactly, and only then."""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip.codecs import BytePlanesCodec, NarrowedFloatCodec, choose_codec
from tensorzip.codecs.narrowed_float import hides_narrower
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.dtypes import by_numpy

from .conftest import assert_bit_equal


def stored_codec(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("x", array)
    reader = TzipReader(buffer.getvalue())
    assert_bit_equal(reader.get_tensor("x"), array)
    return reader.entry("x").codec_config


def f16_values(rng, shape) -> np.ndarray:
    bits = rng.integers(0, 1 << 16, shape, dtype=np.uint16)
    values = bits.view(np.float16)
    return np.where(np.isnan(values), np.float16(1.5), values).astype(np.float32)  # every non-NaN f16 value


@pytest.mark.parametrize("shape", [(1,), (7,), (300, 301), (100_003,)])
def test_f32_holding_f16_is_stored_narrow_and_exact(rng, shape):
    array = f16_values(rng, shape)  # includes -0.0, inf, subnormals of f16
    config = stored_codec(array)
    assert config["id"] == NarrowedFloatCodec.codec_id and config["stored_dtype"] == "float16"


def test_f64_holding_f32_is_stored_narrow_and_exact(rng):
    array = (rng.standard_normal(5000) * 1e3).astype(np.float32).astype(np.float64)
    assert stored_codec(array)["stored_dtype"] == "float32"


def test_narrow_storage_is_smaller(rng):
    array = (rng.standard_normal((256, 256)) * 0.02).astype(np.float16).astype(np.float32)
    narrow = tz.compress(array)
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("", array, codec=BytePlanesCodec.for_dtype(by_numpy(array.dtype)))
    assert len(narrow) < len(buffer.getvalue())
    assert_bit_equal(tz.decompress(narrow), array)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.standard_normal(10_000) * 0.02).astype(np.float32),  # ordinary weights
        lambda rng: np.concatenate([f16_values(rng, (9_999,)), np.float32([0.1])]),  # one value off, at the end
        lambda rng: np.float32([1e6, 1e-9]),  # outside f16's range / below its subnormals
        lambda rng: np.float32([1.0, np.nan, 2.0]),  # NaNs are never narrowed
        lambda rng: (rng.standard_normal(100) * 0.02).astype(ml_dtypes.bfloat16),  # no narrower dtype
        lambda rng: np.arange(10, dtype=np.int32),
    ],
)
def test_path_is_not_taken_where_it_does_not_hold(rng, make):
    array = make(rng)
    assert hides_narrower(array) is None
    assert isinstance(choose_codec(array, by_numpy(array.dtype)), BytePlanesCodec)
    assert stored_codec(array)["id"] == BytePlanesCodec.codec_id


def test_sample_passing_but_full_check_failing(rng):
    array = f16_values(rng, (50_000,))
    array[12_345] = np.float32(0.1)  # not on the sample's stride
    assert hides_narrower(array) is None


def test_config_round_trip_and_wrong_dtype():
    codec = NarrowedFloatCodec.for_narrow_dtype("float16")
    assert NarrowedFloatCodec.from_config(codec.get_config()) == codec
    with pytest.raises(tz.TensorzipError):
        NarrowedFloatCodec(stored_dtype="int8")
    with pytest.raises(tz.TensorzipError), TzipWriter(io.BytesIO()) as writer:
        writer.add("x", np.zeros(4, np.float64), codec=codec)  # float16 cannot stand for float64
        writer.flush()
