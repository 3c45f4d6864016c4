"""Bit-exact round trips through every public entry point, for every dtype."""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorzip as tz
from tensorzip.codecs import BytePlanesCodec
from tensorzip.codecs.byte_planes import DEFAULT_CHUNK_BYTES
from tensorzip.container import TzipReader, TzipWriter

from .conftest import (
    ALL_DTYPES,
    DATA_KINDS,
    assert_bit_equal,
    make_data,
    np_dtype,
    random_bits,
    split_tzip,
    to_bytes,
)

# 0-d arrays are tested apart (see test_zero_dim_*): the API path currently loses their shape.
SHAPES = [(0,), (3, 0), (1,), (7,), (33,), (1001,), (16, 24), (5, 1, 3)]


def test_supported_dtypes_are_the_documented_ones():
    assert set(ALL_DTYPES) == {
        "bfloat16", "float16", "float32", "float64", "float8_e4m3fn", "float8_e5m2",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
    }


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_compress_decompress_every_shape(dtype, kind, rng):
    for shape in SHAPES:
        array = make_data(kind, rng, dtype, shape)
        blob = tz.compress(array)
        assert isinstance(blob, bytes)
        back = tz.decompress(blob)
        assert isinstance(back, np.ndarray)
        assert_bit_equal(back, array)


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_save_load_every_shape(dtype, kind, rng, tmp_path):
    tensors = {f"t{i}/{'x'.join(map(str, s))}": make_data(kind, rng, dtype, s) for i, s in enumerate(SHAPES)}
    path = tmp_path / "m.tzip"
    tz.save_file(tensors, path, metadata={"dtype": dtype})
    loaded = tz.load_file(path)
    assert list(loaded) == list(tensors)
    for name, array in tensors.items():
        assert_bit_equal(loaded[name], array)
    with tz.safe_open(path) as f:
        assert f.metadata() == {"dtype": dtype}
        for name in reversed(list(tensors)):
            assert_bit_equal(f.get_tensor(name), tensors[name])


def test_zero_dim_compress_decompress(rng):
    for dtype in ALL_DTYPES:
        for kind in DATA_KINDS:
            array = np.asarray(make_data(kind, rng, dtype, ()))  # a 0-d array, not a numpy scalar
            assert_bit_equal(tz.decompress(tz.compress(array)), array)


def test_zero_dim_numpy_scalar():
    assert_bit_equal(tz.decompress(tz.compress(np.float32(1.5))), np.array(1.5, dtype=np.float32))


def test_zero_dim_save_load(rng, tmp_path):
    tensors = {dtype: make_data("bits", rng, dtype, ()) for dtype in ALL_DTYPES}
    tz.save_file(tensors, tmp_path / "s.tzip")
    loaded = tz.load_file(tmp_path / "s.tzip")
    for name, array in tensors.items():
        assert_bit_equal(loaded[name], array)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zero_dim_through_the_writer(dtype, rng):
    """The container itself stores 0-d tensors correctly (shape [] in the header)."""
    array = make_data("bits", rng, dtype, ())
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("scalar", array)
    blob = buffer.getvalue()
    _, _, header = split_tzip(blob)
    assert header["tensors"][0]["shape"] == []
    assert len(header["tensors"][0]["chunks"]) == 1
    assert_bit_equal(TzipReader(blob).get_tensor("scalar"), array)


def test_zero_dim_torch_tensor():
    torch = pytest.importorskip("torch")
    scalars = (torch.tensor(2.5), torch.tensor(-7, dtype=torch.int64), torch.tensor(1.0).to(torch.bfloat16))
    for tensor in scalars:
        back = tz.decompress(tz.compress(tensor))
        assert_bit_equal(back, tensor)


def test_special_float_values_survive(rng):
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, np.finfo(np.float32).max, 1.0], dtype=np.float32
    )
    nan_bits = [0x7FC00001, 0xFFC00123, 0x7F800001, 0xFF812345]
    payload_nans = np.array(nan_bits, dtype=np.uint32).view(np.float32)
    with np.errstate(over="ignore"):
        narrowed = [specials.astype(np.float16), specials.astype(ml_dtypes.bfloat16)]
    for array in (specials, payload_nans, specials.astype(np.float64), *narrowed):
        assert_bit_equal(tz.decompress(tz.compress(array)), array)


@pytest.mark.parametrize("rotate", [0, 1])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_multi_chunk_tensors(dtype, rotate, rng):
    arrays = {
        f"{kind}-{shape}": make_data(kind, rng, dtype, shape)
        for kind in DATA_KINDS
        for shape in [(1001,), (37, 29), (100,), (101,), (99,)]
    }
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        for name, array in arrays.items():
            writer.add(name, array, codec=BytePlanesCodec(rotate_bits=rotate, chunk_elements=100))
    blob = buffer.getvalue()
    _, _, header = split_tzip(blob)
    chunk_counts = {t["name"]: len(t["chunks"]) for t in header["tensors"]}
    for name, array in arrays.items():
        assert chunk_counts[name] == -(-array.size // 100)
    reader = TzipReader(blob)
    for name, array in arrays.items():
        assert_bit_equal(reader.get_tensor(name), array)
    # and all at once, in one batch, in another order
    decoded = dict(reader.iter_tensors(sorted(arrays)))
    for name, array in arrays.items():
        assert_bit_equal(decoded[name], array)


def test_default_chunking_over_one_mebibyte(rng):
    per_chunk = DEFAULT_CHUNK_BYTES // 4
    count = max(1 << 20, DEFAULT_CHUNK_BYTES) // 4 + 7  # a bit over 1 MiB of float32, and over one chunk
    array = (rng.standard_normal(count) * 0.05).astype(np.float32)
    array[::1000] = random_bits(rng, "float32", array[::1000].shape)
    blob = tz.compress(array)
    _, _, header = split_tzip(blob)
    (entry,) = header["tensors"]
    assert entry["codec"]["chunk_elements"] == per_chunk
    assert len(entry["chunks"]) == -(-count // per_chunk) >= 2
    assert len(blob) < array.nbytes  # low-entropy exponents compress
    assert_bit_equal(tz.decompress(blob), array)


def test_incompressible_data_costs_little(rng):
    array = random_bits(rng, "uint8", (100_000,))
    blob = tz.compress(array)
    assert len(blob) <= array.nbytes + 1024
    assert_bit_equal(tz.decompress(blob), array)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64", "bool"])
def test_non_contiguous_input(dtype, rng):
    base = make_data("bits", rng, dtype, (33, 17))
    views = [base.T, base[::2, 1::3], base[:, 5], base[::-1], np.broadcast_to(base[0], (4, 17))]
    for view in views:
        assert not view.flags.c_contiguous or view.ndim == 1
        back = tz.decompress(tz.compress(view))
        assert back.flags.c_contiguous
        assert_bit_equal(back, np.ascontiguousarray(view))
    tensors = {f"v{i}": v for i, v in enumerate(views)}
    blob = io.BytesIO()
    with TzipWriter(blob) as writer:
        for name, view in tensors.items():
            writer.add(name, view)
    reader = TzipReader(blob.getvalue())
    for name, view in tensors.items():
        assert_bit_equal(reader.get_tensor(name), np.ascontiguousarray(view))


def test_fortran_order_input(rng):
    array = np.asfortranarray(random_bits(rng, "float64", (9, 13)))
    assert_bit_equal(tz.decompress(tz.compress(array)), np.ascontiguousarray(array))


def test_python_lists():
    back = tz.decompress(tz.compress(np.array([[1, 2], [3, 4]], dtype=np.int64)))
    assert_bit_equal(back, np.array([[1, 2], [3, 4]], dtype=np.int64))


def test_compress_is_deterministic_and_thread_independent(rng):
    array = (rng.standard_normal((300, 1000)) * 0.02).astype(np.float32)
    blobs = {tz.compress(array, threads=t) for t in (1, 2, 4)}
    assert len(blobs) == 1
    assert_bit_equal(tz.decompress(blobs.pop(), threads=1), array)


def test_decompress_accepts_bytes_like(rng):
    array = random_bits(rng, "float16", (100,))
    blob = tz.compress(array)
    for form in (blob, bytearray(blob), memoryview(blob), np.frombuffer(blob, np.uint8)):
        assert_bit_equal(tz.decompress(form), array)


def test_framework_argument(rng):
    torch = pytest.importorskip("torch")
    array = random_bits(rng, "int32", (5,))
    blob = tz.compress(array)
    as_torch = tz.decompress(blob, framework="pt")
    assert isinstance(as_torch, torch.Tensor)
    assert as_torch.numpy().tobytes() == array.tobytes()
    with pytest.raises(tz.TensorzipError, match="framework"):
        tz.decompress(blob, framework="jax")


# -- torch -------------------------------------------------------------------------


def test_torch_tensors_round_trip(rng):
    torch = pytest.importorskip("torch")
    f32 = torch.from_numpy(random_bits(rng, "float32", (17, 9)).copy())
    tensors = {
        "bf16": torch.from_numpy((rng.standard_normal((33, 8)) * 0.02).astype(np.float32)).to(torch.bfloat16),
        "f32": f32,
        "i64": torch.from_numpy(rng.integers(-(2**62), 2**62, size=(1001,), dtype=np.int64)),
        "bf16_bits": torch.from_numpy(random_bits(rng, "int16", (64,)).copy()).view(torch.bfloat16),
        "f16": torch.from_numpy(random_bits(rng, "float16", (3, 5)).copy()),
        "bool": torch.from_numpy(rng.random(50) < 0.5),
        "u8": torch.from_numpy(random_bits(rng, "uint8", (0,)).copy()),
        "scalar": torch.tensor(3.25, dtype=torch.float64),
        "f8": torch.from_numpy(random_bits(rng, "uint8", (40,)).copy()).view(torch.float8_e4m3fn),
        "f8e5": torch.from_numpy(random_bits(rng, "uint8", (40,)).copy()).view(torch.float8_e5m2),
        "transposed": f32.t(),
    }
    for tensor in tensors.values():
        back = tz.decompress(tz.compress(tensor))
        assert isinstance(back, torch.Tensor)
        assert_bit_equal(back, tensor.contiguous())
        as_numpy = tz.decompress(tz.compress(tensor), framework="np")
        assert isinstance(as_numpy, np.ndarray)
        assert as_numpy.shape == tuple(tensor.shape)
        assert as_numpy.tobytes() == to_bytes(tensor)

def test_torch_save_load(tmp_path, rng):
    torch = pytest.importorskip("torch")
    tensors = {
        "bf16": torch.from_numpy((rng.standard_normal((10, 10)) * 0.1).astype(np.float32)).to(torch.bfloat16),
        "f32": torch.from_numpy(random_bits(rng, "float32", (7,)).copy()),
        "i64": torch.arange(-50, 50, dtype=torch.int64),
    }
    path = tmp_path / "t.tzip"
    tz.save_file(tensors, path)
    loaded = tz.load_file(path, framework="pt")
    for name, tensor in tensors.items():
        assert isinstance(loaded[name], torch.Tensor)
        assert_bit_equal(loaded[name], tensor)
    with tz.safe_open(path, framework="pt") as f:
        assert_bit_equal(f.get_tensor("bf16"), tensors["bf16"])
    numpy_view = tz.load_file(path)["bf16"]
    assert numpy_view.dtype == np.dtype(ml_dtypes.bfloat16)
    assert numpy_view.view(np.int16).tobytes() == tensors["bf16"].view(torch.int16).numpy().tobytes()


def test_numpy_input_decompresses_to_numpy(rng):
    array = random_bits(rng, "bfloat16", (12,))
    back = tz.decompress(tz.compress(array))
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.dtype(ml_dtypes.bfloat16)


# -- property test -----------------------------------------------------------------


@st.composite
def arrays_from_bytes(draw):
    dtype = np_dtype(draw(st.sampled_from(ALL_DTYPES)))
    shape = draw(st.one_of(
        st.lists(st.integers(0, 8), max_size=3).map(tuple),  # 0-d .. 3-d, up to 512 elements
        st.tuples(st.integers(0, 300)),
    ))
    count = int(np.prod(shape, dtype=np.int64))
    size = count * dtype.itemsize
    mode = draw(st.sampled_from(["random", "repeat", "few"]))
    if mode == "random":
        raw = draw(st.binary(min_size=size, max_size=size))
    elif mode == "repeat":
        unit = draw(st.binary(min_size=1, max_size=8))
        raw = (unit * (size // len(unit) + 1))[:size]
    else:
        alphabet = draw(st.lists(st.integers(0, 255), min_size=1, max_size=3))
        picks = draw(st.binary(min_size=size, max_size=size))
        raw = bytes(alphabet[b % len(alphabet)] for b in picks)
    chunk = draw(st.one_of(st.none(), st.integers(1, 64)))
    rotate = draw(st.sampled_from([0, 1]))
    return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape), chunk, rotate


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays_from_bytes())
def test_property_round_trip(case):
    array, chunk, rotate = case
    assert_bit_equal(tz.decompress(tz.compress(array)), array)
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata={"k": "v"}) as writer:
        codec = None if chunk is None else BytePlanesCodec(rotate_bits=rotate, chunk_elements=chunk)
        writer.add("x", array, codec=codec)
    reader = TzipReader(buffer.getvalue())
    assert_bit_equal(reader.get_tensor("x"), array)
    assert reader.metadata() == {"k": "v"}
    _, _, header = split_tzip(buffer.getvalue())
    assert header["tensors"][0]["shape"] == list(array.shape)


def test_largest_constant_chunk_reads_back_with_default_limits():
    """The writer's most extreme expansion (a constant chunk of the largest size) stays readable."""
    from tensorzip import _native

    array = np.zeros(2 * _native.MAX_CHUNK_BYTES, dtype=np.uint8)
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("z", array, codec=BytePlanesCodec(rotate_bits=0, chunk_elements=_native.MAX_CHUNK_BYTES))
    assert_bit_equal(TzipReader(buffer.getvalue()).get_tensor("z"), array)


def test_chunks_over_the_limit_are_refused():
    from tensorzip import _native

    with pytest.raises(tz.TensorzipError, match="chunk limit"), TzipWriter(io.BytesIO()) as writer:
        writer.add("z", np.zeros(8, np.uint8), codec=BytePlanesCodec(0, _native.MAX_CHUNK_BYTES + 1))
