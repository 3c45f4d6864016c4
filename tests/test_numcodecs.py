"""tensorzip through numcodecs' registry: found by id, lossless, and honours ``out``.

It is held to numcodecs' own conformance helpers (``numcodecs.tests.common``) on the
array set numcodecs checks its lossless codecs with (Zstd, Zlib, Blosc), plus the
layouts Zarr format 2 hands a compressor (big-endian, F-ordered, strided): a codec
that passes them behaves like Zstd wherever numcodecs or Zarr uses one.
"""

import io
from array import array as py_array

import ml_dtypes
import numcodecs
import numpy as np
import pytest
from numcodecs.tests import common
from numcodecs.tests.common import (
    check_config,
    check_encode_decode,
    check_encode_decode_array,
    check_err_decode_object_buffer,
    check_err_encode_object_buffer,
    check_repr,
)

import tensorzip as tz
from tensorzip.container import TzipWriter
from tensorzip.errors import FormatError, TensorzipError, UnsupportedDtypeError
from tensorzip.integrations.numcodecs_codec import DTYPE_KEY, ORDER_KEY, Tensorzip

_rng = np.random.default_rng(2024)

# numcodecs' array set for its lossless codecs (numcodecs/tests/test_zstd.py, test_zlib.py,
# test_blosc.py: ints, floats, bools in F order, |S3 strings, datetime64/timedelta64 in two
# units, NaT-heavy ones), drawn from a seeded generator instead of the global one
NUMCODECS_ARRAYS = [
    np.arange(1000, dtype="i4"),
    np.linspace(1000, 1001, 1000, dtype="f8"),
    _rng.normal(loc=1000, scale=1, size=(100, 10)),
    _rng.integers(0, 2, size=1000).astype(bool).reshape(100, 10, order="F"),
    _rng.choice([b"a", b"bb", b"ccc"], size=1000).reshape(10, 10, 10),
    _rng.integers(0, 2**60, size=1000, dtype="u8").view("M8[ns]"),
    _rng.integers(0, 2**60, size=1000, dtype="u8").view("m8[ns]"),
    _rng.integers(0, 2**25, size=1000, dtype="u8").view("M8[m]"),
    _rng.integers(0, 2**25, size=1000, dtype="u8").view("m8[m]"),
    _rng.integers(-(2**63), -(2**63) + 20, size=1000, dtype="i8").view("M8[ns]"),
    _rng.integers(-(2**63), -(2**63) + 20, size=1000, dtype="i8").view("m8[ns]"),
    _rng.integers(-(2**63), -(2**63) + 20, size=1000, dtype="i8").view("M8[m]"),
    _rng.integers(-(2**63), -(2**63) + 20, size=1000, dtype="i8").view("m8[m]"),
]
# what else a Zarr format 2 compressor is handed: big-endian dtypes (``">f8"`` arrays),
# F-ordered chunks of the float types tensorzip is for, and views that are not contiguous
LAYOUT_ARRAYS = [
    np.arange(1000, dtype=">i4"),
    np.linspace(1000, 1001, 1000, dtype=">f8"),
    np.asfortranarray(_rng.normal(size=(20, 30)).astype("f4")),
    np.arange(1000, dtype="i2").reshape(10, 10, 10).transpose(1, 0, 2),  # neither C nor F contiguous
]
ARRAYS = NUMCODECS_ARRAYS + LAYOUT_ARRAYS


def _array_id(arr):
    order = "C" if arr.flags.c_contiguous else "F" if arr.flags.f_contiguous else "strided"
    return f"{arr.dtype.str}-{'x'.join(map(str, arr.shape))}-{order}"


@pytest.fixture
def repr_namespace(monkeypatch):
    # check_repr evaluates its statement in numcodecs.tests.common, which imports numcodecs'
    # own codecs only; a third-party codec has to be made visible there
    monkeypatch.setattr(common, "Tensorzip", Tensorzip, raising=False)


@pytest.mark.parametrize("arr", ARRAYS, ids=_array_id)
def test_numcodecs_conformance_encode_decode(arr):
    check_encode_decode(arr, Tensorzip(threads=1))  # ndarray, bytes, bytearray, array.array in and out


@pytest.mark.parametrize("arr", ARRAYS, ids=_array_id)
def test_numcodecs_conformance_encode_decode_array(arr):
    check_encode_decode_array(arr, Tensorzip(threads=1))  # same dtype and items back, also into out=


@pytest.mark.parametrize("codec", [Tensorzip(), Tensorzip(threads=0), Tensorzip(threads=3)])
def test_numcodecs_conformance_config(codec):
    check_config(codec)


@pytest.mark.usefixtures("repr_namespace")
@pytest.mark.parametrize("stmt", ["Tensorzip(threads=None)", "Tensorzip(threads=2)"])
def test_numcodecs_conformance_repr(stmt):
    check_repr(stmt)


def test_numcodecs_conformance_object_buffers_refused_as_type_errors():
    check_err_encode_object_buffer(Tensorzip())
    check_err_decode_object_buffer(Tensorzip())
    with pytest.raises(UnsupportedDtypeError):  # and as TensorzipErrors
        Tensorzip().encode(np.array(["a", "b"], dtype=object))


def test_registry_finds_the_codec_by_id():
    codec = numcodecs.get_codec({"id": "tensorzip"})
    assert isinstance(codec, Tensorzip)
    assert numcodecs.get_codec(codec.get_config()) == codec
    assert codec.get_config() == {"id": "tensorzip", "threads": None}  # what Zarr v2 .zarray files hold


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2"])
def test_bad_threads_refused(threads):
    with pytest.raises(TensorzipError, match="threads"):
        Tensorzip(threads=threads)


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
    decoded = codec.decode(encoded)
    assert decoded.shape == array.shape and decoded.flags.f_contiguous and np.array_equal(decoded, array)
    assert decoded.tobytes(order="A") == array.tobytes(order="F")
    out = np.empty_like(array)  # Fortran-ordered, like the input
    codec.decode(encoded, out=out)
    assert np.array_equal(out, array) and out.tobytes(order="F") == array.tobytes(order="F")


RAW_DTYPE_ARRAYS = {
    "0-d S3": np.array(b"abc"),
    "0-d big-endian": np.array(7, dtype=">i4"),
    "empty S3": np.zeros((0, 3), "S3"),
    "unicode": np.array(["hello", "wörld"], dtype="<U5"),
    "big-endian unicode": np.array(["hello", "wörld"], dtype=">U5"),
    "complex": (_rng.standard_normal(10) + 1j).astype("c16"),
    "big-endian complex, F": np.asfortranarray((_rng.standard_normal((4, 5)) + 1j).astype(">c8")),
    "record": np.array([(1, 2.5, b"ab"), (3, 4.5, b"cd")], dtype=[("a", ">i4"), ("b", "<f8"), ("c", "S2")]),
    "void": np.frombuffer(_rng.bytes(70), dtype="V7"),
    "ml_dtypes int4": np.arange(-8, 8).astype(ml_dtypes.int4),
    "ml_dtypes fp8 fnuz": _rng.standard_normal(20).astype(ml_dtypes.float8_e4m3fnuz),
    "long double": _rng.standard_normal(9).astype(np.longdouble),
    "big-endian NaN payloads": np.array([0x7FF0000000000001, 0xFFF8000000000123], "<u8").view("<f8").astype(">f8"),
    "strided": np.arange(100, dtype="f4")[::3],
}


@pytest.mark.parametrize("name", RAW_DTYPE_ARRAYS)
def test_any_fixed_size_dtype_round_trips_dtype_shape_and_bytes(name):
    array = RAW_DTYPE_ARRAYS[name]
    codec = Tensorzip(threads=1)
    encoded = codec.encode(array)
    decoded = codec.decode(encoded)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tobytes(order="A") == array.tobytes(order="A") and decoded.tobytes() == array.tobytes()
    for out in (np.empty_like(array), bytearray(array.nbytes),
                np.empty(array.nbytes + 1, np.uint8)[1:],  # misaligned for the stored dtype
                np.empty(array.nbytes * 2, np.uint8)[::2]):  # not contiguous: bytes in C order
        assert codec.decode(encoded, out=out) is out
        got = np.asarray(out).view(np.uint8) if isinstance(out, bytearray) else out
        assert got.tobytes(order="A" if got.flags.forc else "C") == array.tobytes(order="A")


def test_floats_stay_coded_by_tensorzip_when_big_endian_or_f_ordered():
    weights = (np.random.default_rng(5).standard_normal((256, 64)) * 0.02).astype(np.float32)
    codec = Tensorzip(threads=1)
    native = len(codec.encode(weights))
    assert len(codec.encode(weights.astype(">f4"))) < native * 1.02  # byte-swapped to native, not raw bytes
    assert len(codec.encode(np.asfortranarray(weights))) < native * 1.3
    assert tz.decompress(codec.encode(weights.astype(">f4"))).dtype == np.float32


def test_plain_arrays_encode_to_the_bytes_of_tz_compress():
    # unchanged images: chunks written before and after this codec's layouts read the same everywhere
    codec = Tensorzip(threads=1)
    for array in (np.arange(12, dtype="f4").reshape(3, 4), np.ones(5, "i8"), np.zeros(3, bool),
                  np.arange(4, dtype="<i2"), np.zeros((3, 0), ml_dtypes.bfloat16)):
        assert codec.encode(array) == tz.compress(array, threads=1)


def test_images_from_the_earlier_codec_decode_as_they_did():
    # The earlier codec wrote tz.compress(array), or tz.compress(array.T) for an F-ordered
    # array, with no layout metadata; such chunks must decode exactly as before.
    rng = np.random.default_rng(11)
    c_array = rng.standard_normal((6, 5)).astype(np.float16)
    f_array = np.asfortranarray(rng.standard_normal((4, 6)).astype(np.float32))
    codec = Tensorzip(threads=1)
    decoded = codec.decode(tz.compress(c_array))
    assert decoded.dtype == c_array.dtype and decoded.shape == c_array.shape and decoded.tobytes() == c_array.tobytes()
    old_f = tz.compress(f_array.T)
    decoded = codec.decode(old_f)
    assert decoded.shape == (6, 4) and decoded.flags.c_contiguous  # as before: the C-ordered transpose
    assert decoded.tobytes() == f_array.tobytes(order="F")
    out = np.empty_like(f_array)
    codec.decode(old_f, out=out)
    assert np.array_equal(out, f_array)


def test_layout_metadata_is_written_only_when_needed():
    codec = Tensorzip(threads=1)

    def metadata(array):
        with tz.safe_open(codec.encode(array)) as f:
            return f.metadata()

    assert DTYPE_KEY not in metadata(np.arange(3, dtype="i4")) and ORDER_KEY not in metadata(np.arange(3))
    assert metadata(np.arange(3).astype("M8[s]"))[DTYPE_KEY] == "<M8[s]"
    assert metadata(np.arange(3, dtype=">i4"))[DTYPE_KEY] == ">i4"
    assert metadata(np.asfortranarray(np.ones((2, 3), "f4")))[ORDER_KEY] == "F"


def test_out_is_checked_before_anything_is_decoded():
    codec = Tensorzip(threads=1)
    array = np.arange(1000, dtype=np.float32)
    encoded = codec.encode(array)
    damaged = bytearray(encoded)
    damaged[100] ^= 0xFF  # inside the data: only decoding would notice
    with pytest.raises(TensorzipError):
        codec.decode(bytes(damaged))
    for out in (np.zeros(999, np.float32), bytearray(4001), np.zeros(1000, np.float64)):
        with pytest.raises(TensorzipError, match="out holds") as caught:
            codec.decode(bytes(damaged), out=out)
        assert type(caught.value) is TensorzipError  # the size error, not a checksum failure
        assert not np.asarray(out).any()  # nothing written
    with pytest.raises(TensorzipError, match="read-only"):
        codec.decode(encoded, out=bytes(4000))
    with pytest.raises(TensorzipError, match="read-only"):
        codec.decode(encoded, out=np.frombuffer(bytes(4000), np.float32))


@pytest.mark.parametrize("buf", [[1, 2, 3], 12, py_array("u", "abc")])
def test_what_is_not_a_buffer_is_refused_as_a_tensorzip_error(buf):
    with pytest.raises(UnsupportedDtypeError, match="buffer protocol"):
        Tensorzip().encode(buf)


def test_refused_dtypes_and_images_are_tensorzip_errors():
    codec = Tensorzip()
    with pytest.raises(UnsupportedDtypeError, match="fixed-size"):
        codec.encode(np.array(["a", "b"], dtype=np.dtypes.StringDType()))
    with pytest.raises(FormatError):
        codec.decode(b"not a tzip image")
    with pytest.raises(FormatError, match="single-array"):
        buffer = io.BytesIO()
        with TzipWriter(buffer) as writer:
            writer.add("a", np.zeros(2, "f4"))
            writer.add("b", np.zeros(2, "f4"))
        codec.decode(buffer.getvalue())


@pytest.mark.parametrize("tag, match", [("O", "fixed-size"), ("not a dtype", "not a dtype"), ("<i8", "cannot hold"),
                                        ("ml_dtypes:nothing", "not a dtype"), ("[('a', <i4')]", "not a dtype")])
def test_bad_layout_metadata_is_a_format_error(tag, match):
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata={DTYPE_KEY: tag}) as writer:
        writer.add("", np.zeros((2, 3), "u1"))
    with pytest.raises(FormatError, match=match):
        Tensorzip().decode(buffer.getvalue())
    with pytest.raises(FormatError, match=match):
        Tensorzip().decode(buffer.getvalue(), out=bytearray(6))


def test_f_ordered_array_round_trips_through_zarr_v2(tmp_path):
    zarr = pytest.importorskip("zarr", minversion="3.1", reason="zarr 3 (Python 3.11+) is in the test extras")
    import warnings

    rng = np.random.default_rng(13)
    for name, data in {
        "float32": np.asfortranarray((rng.standard_normal((150, 100)) * 0.02).astype(np.float32)),
        "datetime64": np.asfortranarray(rng.integers(0, 2**40, size=(150, 100)).astype("M8[s]")),
        "big-endian": np.asfortranarray(rng.integers(-1000, 1000, size=(150, 100)).astype(">i4")),
    }.items():
        path = tmp_path / f"{name}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns that format 2 is the older format
            z = zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape, chunks=(64, 48), dtype=data.dtype,
                                  zarr_format=2, compressors=Tensorzip(threads=1), order="F")
            z[:] = data
            reopened = zarr.open_array(zarr.storage.LocalStore(path, read_only=True))
            assert reopened.metadata.order == "F"
            got = reopened[:]
        assert got.dtype == data.dtype and np.array_equal(got, data) and got.tobytes() == data.tobytes(), name
        assert np.array_equal(reopened[100:150, 90:100], data[100:150, 90:100])  # a partial corner chunk
