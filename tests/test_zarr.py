"""tensorzip inside Zarr arrays on disk (zarr-python 3): format 3 through the
``numcodecs.tensorzip`` array→bytes codec found by entry point, format 2 through the
numcodecs codec as compressor. Written, reopened, read back bit-exact; damage raises."""

import json
import subprocess
import sys
import textwrap
import warnings
from importlib.metadata import entry_points

import numcodecs
import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3.1", reason="zarr 3 (Python 3.11+) is in the test extras")

from tensorzip.errors import CorruptDataError, TensorzipError  # noqa: E402
from tensorzip.integrations.numcodecs_codec import Tensorzip  # noqa: E402
from tensorzip.integrations.zarr_codec import TensorzipCodec  # noqa: E402

SHAPE = (150, 100)
CHUNKS = (64, 48)  # 3 x 3 chunks; the last row and column of chunks are partial (22 rows, 4 columns)
N_CHUNKS = 9


def weights(dtype, seed=0):
    """Real-looking tensor contents: N(0, 0.02) weights, or int8-quantized ones."""
    w = np.random.default_rng(seed).standard_normal(SHAPE) * 0.02
    if np.dtype(dtype).kind in "iu":
        return np.clip(np.round(w / 0.02 * 16), -127, 127).astype(dtype)  # ~6 bits of entropy
    if np.dtype(dtype) == np.bool_:
        return w > 0.03
    return w.astype(np.float32).astype(dtype)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def chunk_files(path):
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json")))


def write_v3(path, data, **kwargs):
    array = zarr.create_array(
        zarr.storage.LocalStore(path), shape=data.shape, chunks=CHUNKS, dtype=data.dtype,
        serializer={"name": "numcodecs.tensorzip"}, compressors=None, **kwargs,
    )
    array[:] = data
    return array


def test_entry_points_register_the_codec_under_both_names():
    names = {e.name: e.value for e in entry_points(group="zarr.codecs")}
    assert names["numcodecs.tensorzip"] == names["tensorzip"] == "tensorzip.integrations.zarr_codec:TensorzipCodec"
    assert zarr.registry.get_codec_class("numcodecs.tensorzip") is TensorzipCodec
    assert zarr.registry.get_codec_class("tensorzip") is TensorzipCodec


def test_codec_metadata_round_trip_and_refusals():
    assert TensorzipCodec().to_dict() == {"name": "numcodecs.tensorzip"}
    codec = TensorzipCodec(threads=2)
    assert codec.to_dict() == {"name": "numcodecs.tensorzip", "configuration": {"threads": 2}}
    assert TensorzipCodec.from_dict(codec.to_dict()) == codec
    assert TensorzipCodec.from_dict({"name": "tensorzip"}) == TensorzipCodec()
    # the configuration is the numcodecs codec's config less its id
    assert numcodecs.get_codec({"id": "tensorzip", **codec.to_dict()["configuration"]}) == Tensorzip(threads=2)
    with pytest.raises(ValueError, match="numcodecs.tensorzip"):
        TensorzipCodec.from_dict({"name": "zstd"})
    with pytest.raises(ValueError, match="effort"):
        TensorzipCodec.from_dict({"name": "numcodecs.tensorzip", "configuration": {"effort": 3}})
    with pytest.raises(TensorzipError, match="level must be one of default, max"):
        TensorzipCodec.from_dict({"name": "numcodecs.tensorzip", "configuration": {"level": 3}})
    best = TensorzipCodec(level="max")  # issue 22: recorded only when not the default
    assert best.to_dict() == {"name": "numcodecs.tensorzip", "configuration": {"level": "max"}}
    assert TensorzipCodec.from_dict(best.to_dict()) == best
    assert TensorzipCodec(level="default") == TensorzipCodec()
    assert numcodecs.get_codec({"id": "tensorzip", **best.to_dict()["configuration"]}) == Tensorzip(level="max")
    with pytest.raises(TensorzipError, match="threads"):
        TensorzipCodec(threads=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int32, np.uint16, np.bool_])
def test_v3_array_on_disk_round_trips_bit_exact(tmp_path, dtype):
    data = weights(dtype)
    path = tmp_path / "w.zarr"
    write_v3(path, data)

    codecs = json.loads((path / "zarr.json").read_text())["codecs"]
    assert codecs == [{"name": "numcodecs.tensorzip"}]  # tensorzip replaces the `bytes` serializer

    files = chunk_files(path)
    assert len(files) == N_CHUNKS
    raw_chunk = np.prod(CHUNKS) * data.itemsize  # zarr stores edge chunks at full chunk shape
    assert all(f.stat().st_size < raw_chunk for f in files), [f.stat().st_size for f in files]

    reopened = zarr.open_array(zarr.storage.LocalStore(path, read_only=True))
    assert reopened.metadata.codecs == (TensorzipCodec(),)
    assert same_bits(reopened[:], data)
    assert same_bits(reopened[100:150, 90:100], data[100:150, 90:100])  # the corner (partial) chunk
    assert same_bits(reopened[5:140:7, 3], data[5:140:7, 3])


def test_v3_float32_weights_smaller_than_zarrs_default_zstd(tmp_path):
    # 48 KiB full chunks: a .tzip image carries a few hundred bytes of header and
    # checksums, so tiny (or mostly padding) chunks are no place to compare codecs.
    data = (np.random.default_rng(1).standard_normal((256, 192)) * 0.02).astype(np.float32)
    sizes = {}
    for name, coding in {"tensorzip": {"serializer": TensorzipCodec(), "compressors": None},
                         "zstd": {}}.items():  # zarr's default: bytes + zstd
        array = zarr.create_array(zarr.storage.LocalStore(tmp_path / name), shape=data.shape, chunks=(128, 96),
                                  dtype=data.dtype, **coding)
        array[:] = data
        sizes[name] = sum(f.stat().st_size for f in chunk_files(tmp_path / name))
    assert sizes["tensorzip"] < 0.95 * sizes["zstd"] < data.nbytes, sizes


def test_v3_array_at_level_max_round_trips_and_reopens_from_its_metadata(tmp_path):
    data = (np.random.default_rng(2).standard_normal((512, 512)) * 0.02).astype(np.float32)
    store = zarr.storage.LocalStore(tmp_path / "max")
    array = zarr.create_array(store, shape=data.shape, chunks=(512, 512), dtype=data.dtype,
                              serializer={"name": "numcodecs.tensorzip", "configuration": {"level": "max"}},
                              compressors=None)
    array[:] = data
    again = zarr.open_array(zarr.storage.LocalStore(tmp_path / "max"), mode="r")
    assert np.array_equal(again[:].view(np.uint32), data.view(np.uint32))
    meta = json.loads((tmp_path / "max" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"] == {"level": "max"}


def test_v3_sharded_array_round_trips(tmp_path):
    data = weights(np.float32)
    path = tmp_path / "sharded.zarr"
    array = zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape, chunks=(32, 24), shards=CHUNKS,
                              dtype=data.dtype, serializer=TensorzipCodec(), compressors=None)
    array[:] = data
    (sharding,) = json.loads((path / "zarr.json").read_text())["codecs"]
    assert sharding["configuration"]["codecs"] == [{"name": "numcodecs.tensorzip"}]
    assert same_bits(zarr.open_array(zarr.storage.LocalStore(path))[:], data)


def test_fresh_interpreter_reads_without_importing_tensorzip(tmp_path):
    data = weights(np.float16)
    path = tmp_path / "w.zarr"
    write_v3(path, data)
    np.save(tmp_path / "expected.npy", data)
    script = textwrap.dedent(f"""
        import sys, numpy as np, zarr
        got = zarr.open_array({str(path)!r}, mode="r")[:]
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
        assert type(zarr.open_array({str(path)!r}, mode="r").metadata.codecs[0]).__name__ == "TensorzipCodec"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_v2_array_with_numcodecs_compressor_round_trips(tmp_path, order, dtype):
    data = weights(dtype)
    path = tmp_path / "v2.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns that format 2 is the older format
        array = zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape, chunks=CHUNKS, dtype=data.dtype,
                                  zarr_format=2, compressors=numcodecs.get_codec({"id": "tensorzip"}), order=order)
        array[:] = data
    meta = json.loads((path / ".zarray").read_text())
    assert meta["compressor"] == {"id": "tensorzip", "threads": None} and meta["order"] == order
    files = chunk_files(path)
    assert len(files) == N_CHUNKS
    assert all(f.stat().st_size < np.prod(CHUNKS) * data.itemsize for f in files)
    reopened = zarr.open_array(zarr.storage.LocalStore(path, read_only=True))
    assert isinstance(reopened.compressors[0], Tensorzip)
    assert same_bits(reopened[:], data)


def _corrupt_middle_byte(file):
    blob = bytearray(file.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    file.write_bytes(bytes(blob))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_chunk_raises_instead_of_returning_wrong_data(tmp_path, zarr_format, damage):
    data = weights(np.float32)
    path = tmp_path / "w.zarr"
    if zarr_format == 3:
        write_v3(path, data)
        chunk = path / "c" / "1" / "1"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape, chunks=CHUNKS,
                                      dtype=data.dtype, zarr_format=2, compressors=Tensorzip())
            array[:] = data
        chunk = path / "1.1"
    if damage == "flip":
        _corrupt_middle_byte(chunk)
    else:
        chunk.write_bytes(chunk.read_bytes()[:-100])
    reopened = zarr.open_array(zarr.storage.LocalStore(path, read_only=True))
    assert same_bits(reopened[:64, :48], data[:64, :48])  # undamaged chunks still read
    with pytest.raises(CorruptDataError):  # a TensorzipError: checksum mismatch or truncated image
        reopened[64:128, 48:96]
    with pytest.raises(CorruptDataError):
        reopened[:]


def test_chunk_from_another_array_is_refused(tmp_path):
    write_v3(tmp_path / "a.zarr", weights(np.float32))
    write_v3(tmp_path / "b.zarr", weights(np.float16))
    (tmp_path / "a.zarr" / "c" / "0" / "0").write_bytes((tmp_path / "b.zarr" / "c" / "0" / "0").read_bytes())
    reopened = zarr.open_array(zarr.storage.LocalStore(tmp_path / "a.zarr", read_only=True))
    with pytest.raises(CorruptDataError, match="another array"):
        reopened[:10, :10]
