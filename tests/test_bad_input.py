"""Every bad input raises the documented TensorzipError subclass, naming the file
(and the tensor and offset where they apply); none is read silently wrong."""

from __future__ import annotations

import json
import math
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native
from tensorzip.container import ReadLimits, TzipReader
from tensorzip.container.format import PREAMBLE_SIZE, Preamble

from .conftest import assert_bit_equal, build_tzip, flip, rewrite_header, split_tzip

CODEC = {"id": "tensorzip.byte_planes", "rotate_bits": 0, "chunk_elements": 1 << 20}


def read_all(source, **kwargs):
    with TzipReader(source, **kwargs) as reader:
        return dict(reader.iter_tensors())


def expect(error_type, path, *fragments, **kwargs):
    """Reading ``path`` raises exactly ``error_type`` with a message naming the file and fragments."""
    with pytest.raises(error_type) as info:
        read_all(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# -- not a .tzip file ----------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tzip"
    expect(tz.InputFileError, path, "no such file")
    with pytest.raises(tz.InputFileError):
        tz.load_file(path)
    with pytest.raises(tz.InputFileError):
        tz.safe_open(path)


def test_directory_as_input(tmp_path):
    expect(tz.InputFileError, tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tzip"
    path.write_bytes(b"")
    expect(tz.FormatError, path, "0 bytes")


def test_wrong_magic(tmp_path, small_tzip):
    blob = small_tzip.read_bytes()
    for bad in (b"PK\x03\x04" + blob[4:], b"\x89TZIP\r\n\x0a" + blob[8:], b"hello", b"{}" * 100):
        small_tzip.write_bytes(bad)
        expect(tz.FormatError, small_tzip, "not a .tzip file")


def test_safetensors_file_given_as_tzip(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    safetensors.save_file({"x": np.zeros(30, np.float32)}, str(path))
    expect(tz.FormatError, path, "not a .tzip file")


def _repack_preamble(blob, **changes):
    fields, _, _ = split_tzip(blob)
    preamble = Preamble(fields["header_offset"], fields["header_length"], fields["header_crc32c"],
                        major=changes.get("major", 1), minor=changes.get("minor", 0),
                        flags=changes.get("flags", fields["flags"]))
    return preamble.pack() + blob[PREAMBLE_SIZE:]


def test_unsupported_major_version(small_tzip):
    blob = small_tzip.read_bytes()
    for major in (0, 2, 65535):
        small_tzip.write_bytes(_repack_preamble(blob, major=major))
        error = expect(tz.FormatError, small_tzip, f"version {major}.0", "upgrade")
        assert not isinstance(error, tz.HeaderError)


def test_newer_minor_version_is_read(small_tzip):
    blob = small_tzip.read_bytes()
    expected = tz.load_file(small_tzip)
    small_tzip.write_bytes(_repack_preamble(blob, minor=7))
    for name, array in tz.load_file(small_tzip).items():
        assert_bit_equal(array, expected[name])


def test_unknown_flags(small_tzip):
    small_tzip.write_bytes(_repack_preamble(small_tzip.read_bytes(), flags=4))
    expect(tz.FormatError, small_tzip, "flags")


def test_broken_preamble_checksum(small_tzip):
    blob = small_tzip.read_bytes()
    for index in (8, 20, 36, 39):
        small_tzip.write_bytes(flip(blob, index, 0x01))
        expect(tz.HeaderError, small_tzip, "preamble checksum", "offset 0")


def test_broken_header_checksum(small_tzip):
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    small_tzip.write_bytes(flip(blob, fields["header_offset"] + 3))
    expect(tz.HeaderError, small_tzip, "header checksum", f"offset {fields['header_offset']}")


def test_trailing_garbage(small_tzip):
    small_tzip.write_bytes(small_tzip.read_bytes() + b"\0")
    expect(tz.HeaderError, small_tzip, "unexpected bytes")


# -- truncation and bit flips --------------------------------------------------------


def test_truncated_at_every_offset(small_tzip):
    blob = small_tzip.read_bytes()
    for size in range(len(blob)):
        small_tzip.write_bytes(blob[:size])
        with pytest.raises(tz.TensorzipError) as info:
            read_all(small_tzip)
        assert str(small_tzip) in str(info.value)
        if size >= PREAMBLE_SIZE:
            assert isinstance(info.value, tz.TruncatedFileError), (size, info.value)


def test_truncated_bytes_blob(small_tzip):
    blob = small_tzip.read_bytes()
    for size in range(0, len(blob), 7):
        with pytest.raises(tz.TensorzipError):
            read_all(blob[:size])


def test_every_single_byte_flip_is_detected(small_tzip):
    """No flipped byte anywhere in the file may decode to different data."""
    blob = small_tzip.read_bytes()
    expected = read_all(blob)
    undetected = []
    for index in range(len(blob)):
        for mask in (0x01, 0xFF):
            damaged = flip(blob, index, mask)
            try:
                got = read_all(damaged)
            except tz.TensorzipError:
                continue
            # Only acceptable if the byte is not covered and the data is identical.
            assert got.keys() == expected.keys(), index
            for name in expected:
                assert_bit_equal(got[name], expected[name])
            undetected.append(index)
    assert undetected == [], f"flips at {undetected} were not detected (every byte is covered by a CRC)"


def test_flip_in_a_chunk_names_file_tensor_and_offset(small_tzip):
    blob = small_tzip.read_bytes()
    _, _, header = split_tzip(blob)
    for entry in header["tensors"]:
        offset, length, _ = entry["chunks"][0]
        small_tzip.write_bytes(flip(blob, offset + length - 1))
        error = expect(tz.CorruptDataError, small_tzip, repr(entry["name"]), f"offset {offset}", "checksum")
        assert error.chunk == 0


# -- limits and crafted headers --------------------------------------------------------


def test_header_over_the_limit(small_tzip):
    fields, _, _ = split_tzip(small_tzip.read_bytes())
    expect(tz.LimitExceededError, small_tzip, "max_header_bytes",
           limits=ReadLimits(max_header_bytes=fields["header_bytes"] - 1))
    read_all(small_tzip, limits=ReadLimits(max_header_bytes=fields["header_bytes"]))
    with pytest.raises(tz.LimitExceededError):
        tz.safe_open(small_tzip, limits=ReadLimits(max_header_bytes=10))


def test_huge_declared_header_length_is_refused_before_reading(small_tzip):
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    preamble = Preamble(fields["header_offset"], 1 << 60, fields["header_crc32c"]).pack()
    small_tzip.write_bytes(preamble + blob[PREAMBLE_SIZE:])
    expect(tz.LimitExceededError, small_tzip, "header declares")


def test_header_offset_inside_the_preamble(small_tzip):
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    preamble = Preamble(8, fields["header_length"], fields["header_crc32c"]).pack()
    small_tzip.write_bytes(preamble + blob[PREAMBLE_SIZE:])
    expect(tz.HeaderError, small_tzip, "inside the preamble")


def test_tensor_over_max_tensor_bytes(small_tzip):
    # "weight" is 8 x 16 float32 = 512 bytes
    expect(tz.LimitExceededError, small_tzip, "'weight'", "512 bytes",
           limits=ReadLimits(max_tensor_bytes=511))
    read_all(small_tzip, limits=ReadLimits(max_tensor_bytes=512))


def _bomb(shape, dtype="uint8", chunks=1, chunk_bytes=10, codec=CODEC):
    data = bytes(chunks * chunk_bytes)
    crc = _native.crc32c(bytes(chunk_bytes))
    refs = [[PREAMBLE_SIZE + i * chunk_bytes, chunk_bytes, crc] for i in range(chunks)]
    return build_tzip(data, {"tensors": [{"name": "bomb", "dtype": dtype, "shape": shape, "codec": codec,
                                          "chunks": refs}]})


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks"),
    [
        ([1 << 40], "uint8", 1),  # 1 TiB from 10 bytes: the expansion limit
        ([1 << 20, 1 << 20, 1 << 20], "float64", 1),  # over max_tensor_bytes
        ([1 << 62, 1 << 62, 1 << 62], "bool", 3),  # an astronomically large count
        ([1 << 34], "uint8", 1000),  # 16 GiB from 1000 tiny chunks
        ([1 << 31, 4], "int64", 100),
    ],
)
def test_decompression_bomb_is_refused_without_allocating(tmp_path, shape, dtype, chunks):
    path = tmp_path / "bomb.tzip"
    path.write_bytes(_bomb(shape, dtype, chunks))
    tracemalloc.start()
    try:
        with pytest.raises((tz.LimitExceededError, tz.HeaderError)) as info:
            read_all(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes allocated while refusing a bomb"
    assert str(path) in str(info.value)
    assert "'bomb'" in str(info.value)


def test_bomb_within_the_limits_is_caught_by_the_chunk_count(tmp_path):
    """8 MiB declared from a 10-byte chunk passes the expansion limit; decoding must still refuse it."""
    path = tmp_path / "small-bomb.tzip"
    path.write_bytes(_bomb([8 << 20], "uint8", 1, codec={**CODEC, "chunk_elements": 1024}))
    expect(tz.CorruptDataError, path, "'bomb'", "chunks")


BAD_HEADERS = [
    ("not json", b"{not json", "not valid UTF-8 JSON"),
    ("not utf-8", b'{"tensors":[]}\xff', "not valid UTF-8 JSON"),
    ("a list", b"[]", "'tensors' list"),
    ("no tensors", b"{}", "'tensors' list"),
    ("unknown key", b'{"tensors":[],"extra":1}', "unknown keys"),
    ("metadata not str", b'{"tensors":[],"metadata":{"a":1}}', "metadata"),
    ("metadata a list", b'{"tensors":[],"metadata":["a"]}', "metadata"),
    ("source not a dict", b'{"tensors":[],"source":3}', "source"),
]


@pytest.mark.parametrize(("label", "header", "fragment"), BAD_HEADERS, ids=[h[0] for h in BAD_HEADERS])
def test_malformed_header_documents(tmp_path, label, header, fragment):
    path = tmp_path / "h.tzip"
    path.write_bytes(build_tzip(b"", header))
    expect(tz.HeaderError, path, fragment)


def _entry_edits():
    def set_key(key, value):
        return lambda t: t.__setitem__(key, value)

    return [
        ("extra key", lambda t: t.__setitem__("extra", 1), "must have the keys"),
        ("missing chunks", lambda t: t.pop("chunks"), "must have the keys"),
        ("name not str", set_key("name", 5), "name must be a string"),
        ("negative dim", set_key("shape", [-1, 4]), "shape"),
        ("float dim", set_key("shape", [8.0, 16]), "shape"),
        ("bool dim", set_key("shape", [True, 16]), "shape"),
        ("shape not list", set_key("shape", "8,16"), "shape"),
        ("codec not dict", set_key("codec", "planes"), "codec must be an object"),
        ("chunks not list", set_key("chunks", {}), "chunks must be a list"),
        ("chunk of 2", lambda t: t["chunks"][0].pop(), "[offset, length, crc32c]"),
        ("negative length", lambda t: t["chunks"][0].__setitem__(1, -1), "[offset, length, crc32c]"),
        ("crc too big", lambda t: t["chunks"][0].__setitem__(2, 1 << 32), "32 bits"),
        ("hole", lambda t: t["chunks"][0].__setitem__(0, t["chunks"][0][0] + 1), "tile"),
    ]


@pytest.mark.parametrize(("label", "edit", "fragment"), _entry_edits(), ids=[e[0] for e in _entry_edits()])
def test_malformed_tensor_entries(small_tzip, label, edit, fragment):
    def apply(header):
        edit(header["tensors"][0])

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), apply))
    message = str(expect(tz.HeaderError, small_tzip, fragment))
    assert "tensor #0" in message or "'weight'" in message


def test_duplicate_tensor_names(small_tzip):
    def edit(header):
        header["tensors"][1]["name"] = header["tensors"][0]["name"]

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    expect(tz.HeaderError, small_tzip, "appears twice")


def test_chunks_not_reaching_the_header(small_tzip):
    def edit(header):
        header["tensors"][1]["chunks"].pop()

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    expect(tz.HeaderError, small_tzip, "chunks end at offset")


def test_chunk_count_not_matching_the_shape(small_tzip):
    def edit(header):
        header["tensors"][0]["shape"] = [8, 16 * 100_000]  # needs more chunks than stored

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    expect(tz.CorruptDataError, small_tzip, "'weight'", "chunks")


def test_shape_not_matching_the_stored_elements(small_tzip):
    def edit(header):
        header["tensors"][0]["shape"] = [8, 15]  # same chunk count, one element row fewer

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    expect(tz.CorruptDataError, small_tzip, "'weight'")


def test_unknown_codec_id(small_tzip):
    blob = small_tzip.read_bytes()
    expected = read_all(blob)

    def edit(header):
        header["tensors"][0]["codec"] = {"id": "someone.else", "level": 3}

    small_tzip.write_bytes(rewrite_header(blob, edit))
    with tz.safe_open(small_tzip) as f:  # opening is fine: only that tensor is unreadable
        assert_bit_equal(f.get_tensor("noise"), expected["noise"])
        with pytest.raises(tz.UnknownCodecError, match="someone.else"):
            f.get_tensor("weight")
        assert_bit_equal(f.get_tensor("noise"), expected["noise"])


def test_unknown_codec_id_message_names_file_and_tensor(small_tzip):
    def edit(header):
        header["tensors"][0]["codec"] = {"id": "someone.else"}

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    with tz.safe_open(small_tzip) as f, pytest.raises(tz.UnknownCodecError) as info:
        f.get_tensor("weight")
    assert str(small_tzip) in str(info.value)
    assert "'weight'" in str(info.value)


@pytest.mark.parametrize(
    ("codec", "fragment"),
    [
        ({"rotate_bits": 0}, "string 'id'"),
        ({"id": 5}, "string 'id'"),
        ({"id": "tensorzip.byte_planes", "rotate_bits": 2, "chunk_elements": 100}, "rotate_bits"),
        ({"id": "tensorzip.byte_planes", "chunk_elements": 0}, "chunk_elements"),
        ({"id": "tensorzip.byte_planes", "chunk_elements": "100"}, "chunk_elements"),
        ({"id": "tensorzip.byte_planes", "turbo": True}, "turbo"),
    ],
)
def test_bad_codec_config(small_tzip, codec, fragment):
    def edit(header):
        header["tensors"][0]["codec"] = codec

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    with tz.safe_open(small_tzip) as f:
        with pytest.raises(tz.HeaderError) as info:
            f.get_tensor("weight")
        f.get_tensor("noise")
    assert str(small_tzip) in str(info.value)
    assert "'weight'" in str(info.value)
    assert fragment in str(info.value)


def test_codec_config_disagreeing_with_the_data(small_tzip):
    """A valid codec config other than the one used must not decode silently."""
    blob = small_tzip.read_bytes()
    _, _, header = split_tzip(blob)
    original = header["tensors"][0]["codec"]

    def edit(h):
        h["tensors"][0]["codec"] = {**original, "rotate_bits": 1 - original["rotate_bits"]}

    small_tzip.write_bytes(rewrite_header(blob, edit))
    # the chunks decode (rotation is a bijection), so the bytes differ: the header CRC is what protects this
    got = read_all(small_tzip)["weight"]
    assert got.tobytes() != read_all(blob)["weight"].tobytes()


@pytest.mark.parametrize("dtype", ["complex64", "float128", "C64", "", None, 3, ["float32"], "F32"])
def test_unsupported_dtype_in_header(small_tzip, dtype):
    def edit(header):
        header["tensors"][0]["dtype"] = dtype

    small_tzip.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    error = expect(tz.UnsupportedDtypeError, small_tzip, "'weight'", "unsupported dtype")
    assert isinstance(error, TypeError)


@pytest.mark.parametrize("shape", [[1] * 65, [0, 1 << 70]])
def test_shape_numpy_cannot_allocate(tmp_path, shape):
    path = tmp_path / "shape.tzip"
    chunks = 1 if math.prod(shape) else 0
    data = b"\x01\x01\x01\x00\x00\x00\x07" if chunks else b""  # one constant plane of byte 7
    refs = [[PREAMBLE_SIZE, len(data), _native.crc32c(data)]] if chunks else []
    path.write_bytes(build_tzip(data, {"tensors": [
        {"name": "odd", "dtype": "uint8", "shape": shape, "codec": CODEC, "chunks": refs}]}))
    with pytest.raises(tz.TensorzipError):
        read_all(path)


# -- bad arguments on the writing side ---------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, np.complex64),
        np.array([object(), 1], dtype=object),
        np.zeros(3, ">f4"),
        np.zeros(3, ">i8"),
        np.zeros(3, "U5"),
        np.zeros(3, "datetime64[s]"),
        np.zeros(3, [("a", "<f4"), ("b", "<i4")]),
    ],
    ids=["complex64", "object", "big-endian f4", "big-endian i8", "unicode", "datetime", "structured"],
)
def test_unsupported_numpy_dtypes(tmp_path, array):
    with pytest.raises(tz.UnsupportedDtypeError) as info:
        tz.save_file({"x": array}, tmp_path / "x.tzip")
    assert isinstance(info.value, TypeError)
    with pytest.raises(tz.UnsupportedDtypeError):
        tz.compress(array)
    assert not list(tmp_path.iterdir())


def test_little_endian_explicit_byte_order_is_fine():
    array = np.arange(5, dtype="<f4")
    assert_bit_equal(tz.decompress(tz.compress(array)), array.astype(np.float32))


@pytest.mark.parametrize("metadata", [{"a": 1}, {1: "a"}, {"a": None}, ["a"], "a=b", {"a": b"b"}])
def test_metadata_not_str_to_str(tmp_path, metadata):
    with pytest.raises(tz.TensorzipError, match="metadata"):
        tz.save_file({"x": np.zeros(1, np.uint8)}, tmp_path / "m.tzip", metadata=metadata)
    assert not list(tmp_path.iterdir())


def test_save_file_needs_a_mapping(tmp_path):
    with pytest.raises(tz.TensorzipError, match="mapping"):
        tz.save_file([np.zeros(1)], tmp_path / "m.tzip")


def test_torch_dtype_without_codec():
    torch = pytest.importorskip("torch")
    with pytest.raises(tz.UnsupportedDtypeError):
        tz.compress(torch.zeros(3, dtype=torch.complex64))


@pytest.mark.parametrize(
    "where",
    ["missing-dir/out.tzip", "a-file/out.tzip", "directory-target"],
)
def test_unwritable_output(tmp_path, where):
    (tmp_path / "a-file").write_bytes(b"x")
    (tmp_path / "directory-target").mkdir()
    target = tmp_path / where
    with pytest.raises(tz.OutputFileError) as info:
        tz.save_file({"x": np.zeros(3, np.float32)}, target)
    assert str(target) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "directory-target"]


def test_output_under_proc():
    with pytest.raises(tz.OutputFileError):
        tz.save_file({"x": np.zeros(3, np.float32)}, Path("/proc/tensorzip-test/out.tzip"))


# -- safetensors input for compress_file -----------------------------------------------


def _safetensors_bytes(header: dict, data: bytes, pad: bool = True) -> bytes:
    raw = json.dumps(header).encode("utf-8")
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _good_header():
    return {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}


def compress_error(tmp_path, content, error_type, *fragments):
    source = tmp_path / "in.safetensors"
    source.write_bytes(content)
    target = tmp_path / "out.tzip"
    with pytest.raises(error_type) as info:
        tz.compress_file(source, target)
    message = str(info.value)
    assert str(source) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors"]
    return info.value


def test_compress_file_accepts_the_good_file(tmp_path):
    source = tmp_path / "in.safetensors"
    source.write_bytes(_safetensors_bytes(_good_header(), bytes(range(24))))
    report = tz.compress_file(source, tmp_path / "out.tzip")
    assert report.original_bytes == source.stat().st_size
    back = tmp_path / "back.safetensors"
    tz.decompress_file(tmp_path / "out.tzip", back)
    assert back.read_bytes() == source.read_bytes()


def test_compress_file_truncated_data(tmp_path):
    content = _safetensors_bytes(_good_header(), bytes(24))
    compress_error(tmp_path, content[:-5], tz.InputFileError, "truncated")


def test_compress_file_truncated_prefix(tmp_path):
    compress_error(tmp_path, b"\x10\x00\x00", tz.InputFileError)
    compress_error(tmp_path, b"", tz.InputFileError)


def test_compress_file_header_longer_than_the_file(tmp_path):
    content = _safetensors_bytes(_good_header(), bytes(24))
    bad = struct.pack("<Q", len(content) + 100) + content[8:]
    compress_error(tmp_path, bad, tz.InputFileError, "past the end")


def test_compress_file_absurd_header_length(tmp_path):
    compress_error(tmp_path, struct.pack("<Q", 1 << 62) + b"{}", tz.LimitExceededError)


def test_compress_file_overlapping_offsets(tmp_path):
    header = _good_header()
    header["b"]["data_offsets"] = [8, 16]
    header["b"]["dtype"] = "I64"
    compress_error(tmp_path, _safetensors_bytes(header, bytes(16)), tz.InputFileError, "'b'", "overlapping")


def test_compress_file_hole_between_tensors(tmp_path):
    header = _good_header()
    header["b"]["data_offsets"] = [24, 32]
    compress_error(tmp_path, _safetensors_bytes(header, bytes(32)), tz.InputFileError, "'b'")


def test_compress_file_offsets_disagreeing_with_shape(tmp_path):
    header = _good_header()
    header["a"]["shape"] = [2, 3]
    compress_error(tmp_path, _safetensors_bytes(header, bytes(24)), tz.InputFileError, "'a'")


def test_compress_file_unknown_dtype(tmp_path):
    header = _good_header()
    header["a"]["dtype"] = "C64"
    compress_error(tmp_path, _safetensors_bytes(header, bytes(24)), tz.UnsupportedDtypeError, "'a'", "C64")


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"[1, 2]",
        b'{"a": {"dtype": "F32"}}',
        b'{"a": {"dtype": "F32", "shape": "x", "data_offsets": [0, 0]}}',
        b'{"__metadata__": {"a": 1}}',
    ],
)
def test_compress_file_malformed_header(tmp_path, header):
    content = struct.pack("<Q", len(header)) + header
    compress_error(tmp_path, content, tz.InputFileError)


def test_compress_file_missing_input_and_directory(tmp_path):
    with pytest.raises(tz.InputFileError, match="no such file"):
        tz.compress_file(tmp_path / "missing.safetensors", tmp_path / "out.tzip")
    (tmp_path / "dir.safetensors").mkdir()  # a folder is a sharded checkpoint, here an empty one
    with pytest.raises(tz.InputFileError, match="no .safetensors files"):
        tz.compress_file(tmp_path / "dir.safetensors", tmp_path / "out.tzip")
    assert not (tmp_path / "out.tzip").exists()


def test_decompress_file_of_damaged_input_leaves_no_output(tmp_path, small_tzip):
    blob = small_tzip.read_bytes()
    _, _, header = split_tzip(blob)
    offset, length, _ = header["tensors"][1]["chunks"][0]
    small_tzip.write_bytes(flip(blob, offset + 1))
    target = tmp_path / "out.safetensors"
    with pytest.raises(tz.CorruptDataError):
        tz.decompress_file(small_tzip, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tzip"]
