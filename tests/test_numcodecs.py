"""tensorzip through numcodecs' registry: found by id, lossless, and honours ``out``."""

import ml_dtypes
import numcodecs
import numpy as np
import pytest

from tensorzip.integrations.numcodecs_codec import Tensorzip


def test_registry_finds_the_codec_by_id():
    codec = numcodecs.get_codec({"id": "tensorzip"})
    assert isinstance(codec, Tensorzip)
    assert numcodecs.get_codec(codec.get_config()) == codec


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.int64, np.uint8])
def test_round_trip_every_byte(dtype):
    rng = np.random.default_rng(7)
    array = rng.standard_normal((17, 33)).astype(np.float32).astype(dtype)
    codec = Tensorzip(threads=1)
    encoded = codec.encode(array)
    decoded = codec.decode(encoded)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tobytes() == array.tobytes()
    out = np.empty_like(array)
    assert codec.decode(encoded, out=out) is out
    assert out.tobytes() == array.tobytes()


def test_fortran_ordered_buffer_decodes_to_the_same_memory_bytes():
    # numcodecs codes a buffer's bytes in memory order: what Zarr format 2 ``order="F"`` relies on
    array = np.asfortranarray((np.random.default_rng(3).standard_normal((40, 24)) * 0.02).astype(np.float32))
    codec = Tensorzip(threads=1)
    encoded = codec.encode(array)
    assert codec.decode(encoded).tobytes(order="A") == array.tobytes(order="F")
    out = np.empty_like(array)  # Fortran-ordered, like the input
    codec.decode(encoded, out=out)
    assert np.array_equal(out, array) and out.tobytes(order="F") == array.tobytes(order="F")
