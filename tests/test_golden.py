"""Golden .tzip files of format 1.0: this release must decode them bit for bit, and
its encoder must still write exactly the same bytes for the same input and codec
configuration. The files were written once by tests/golden/make_golden.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import dtypes
from tensorzip.codecs import codec_from_config
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.container.format import FLAG_HEADER_ZLIB

from .conftest import assert_bit_equal, chunk_modes, plain_header, split_tzip

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
FILES = sorted(MANIFEST["files"])

NEVER_EDIT = (
    "Golden files are a compatibility promise: do not edit or regenerate them. If the encoder's output "
    "must change on purpose, add NEW golden files (a copy of make_golden.py writing to a new directory, "
    "e.g. tests/golden/v1_1/) and keep these, which every release must still decode."
)


@pytest.fixture(scope="module")
def expected_arrays():
    with np.load(GOLDEN / "expected.npz") as archive:
        raw = {key: archive[key] for key in archive.files}
    arrays = {}
    for file_name, info in MANIFEST["files"].items():
        for entry in info["tensors"]:
            dtype = dtypes.by_name(entry["dtype"]).numpy_dtype
            data = raw[entry["key"]]
            assert data.dtype == np.uint8
            arrays[file_name, entry["name"]] = data.view(dtype).reshape(entry["shape"])
    return arrays


def test_manifest_lists_every_golden_file():
    on_disk = sorted(p.name for p in GOLDEN.glob("*.tzip"))
    assert on_disk == FILES
    assert MANIFEST["format"] == "1.0"
    total = sum(p.stat().st_size for p in GOLDEN.iterdir() if p.is_file())
    assert total < 200_000


@pytest.mark.parametrize("file_name", FILES)
def test_golden_file_decodes(file_name, expected_arrays):
    info = MANIFEST["files"][file_name]
    path = GOLDEN / file_name
    blob = path.read_bytes()
    fields, _, _ = split_tzip(blob)
    assert (fields["major"], fields["minor"]) == (1, 0)
    for source in (path, blob):
        with TzipReader(source) as reader:
            assert reader.keys() == [t["name"] for t in info["tensors"]]
            assert reader.metadata() == info["metadata"]
            decoded = dict(reader.iter_tensors())
            for entry in info["tensors"]:
                name = entry["name"]
                assert decoded[name].dtype == dtypes.by_name(entry["dtype"]).numpy_dtype
                assert list(decoded[name].shape) == entry["shape"]
                assert_bit_equal(decoded[name], expected_arrays[file_name, name])
                assert_bit_equal(reader.get_tensor(name), expected_arrays[file_name, name])
    loaded = tz.load_file(path)
    for entry in info["tensors"]:
        assert_bit_equal(loaded[entry["name"]], expected_arrays[file_name, entry["name"]])


def test_single_array_golden_file_through_decompress(expected_arrays):
    back = tz.decompress((GOLDEN / "single_array.tzip").read_bytes())
    assert_bit_equal(back, expected_arrays["single_array.tzip", ""])


def test_golden_files_cover_every_plane_mode_and_layout():
    modes, rotations, multi_chunk = set(), set(), False
    for file_name in FILES:
        blob = (GOLDEN / file_name).read_bytes()
        _, _, header = split_tzip(blob)
        for entry in header["tensors"]:
            if entry["codec"]["id"] == "tensorzip.sparse":
                continue  # its chunks frame byte-plane chunks behind a mask length
            rotations.add(entry["codec"]["rotate_bits"])
            multi_chunk |= len(entry["chunks"]) > 1
            for offset, length, _ in entry["chunks"]:
                modes.update(chunk_modes(blob[offset : offset + length]))
    assert modes == {0, 1, 2}  # raw, constant, rANS
    assert rotations == {0, 1}
    assert multi_chunk


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("file_name", FILES)
def test_encoder_reproduces_golden_bytes(file_name, threads, expected_arrays):
    """Same arrays + same codec configs + same metadata -> the same file, byte for byte."""
    golden = (GOLDEN / file_name).read_bytes()
    _, _, header = split_tzip(golden)
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=header.get("metadata"), threads=threads) as writer:
        for entry in header["tensors"]:
            writer.add(entry["name"], expected_arrays[file_name, entry["name"]],
                       codec=codec_from_config(entry["codec"]))
    produced = plain_header(buffer.getvalue())  # headers are stored zlib-compressed since session 5
    if produced != golden:
        common = min(len(produced), len(golden))
        first = next((i for i in range(common) if produced[i] != golden[i]), common)
        pytest.fail(
            f"re-encoding {file_name} gives different bytes (first difference at offset {first}; "
            f"{len(produced)} vs {len(golden)} bytes). The encoder is no longer deterministic or its output "
            f"changed. {NEVER_EDIT}"
        )


def test_the_writer_compresses_the_header_and_changes_nothing_else(expected_arrays):
    """The one difference the writer of session 5 makes to these files: the header stored as
    a zlib stream (preamble flag bit 0), its JSON and every chunk byte unchanged."""
    golden = (GOLDEN / "metadata.tzip").read_bytes()
    _, _, header = split_tzip(golden)
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=header.get("metadata")) as writer:
        for entry in header["tensors"]:
            writer.add(entry["name"], expected_arrays["metadata.tzip", entry["name"]],
                       codec=codec_from_config(entry["codec"]))
    produced = buffer.getvalue()
    fields, data, _ = split_tzip(produced)
    golden_fields, golden_data, _ = split_tzip(golden)
    assert fields["flags"] == FLAG_HEADER_ZLIB and golden_fields["flags"] == 0
    assert fields["header_length"] < golden_fields["header_length"] == fields["header_bytes"]
    assert data == golden_data


def test_golden_files_cover_every_codec():
    from tensorzip.codecs import BUILTIN_CODECS

    codec_ids = set()
    later = [GOLDEN / "bounded_codec_v1" / name for name in ("rows_f32.tzip", "half_f16.tzip")]  # codecs added later
    for path in [GOLDEN / file_name for file_name in FILES] + later:
        _, _, header = split_tzip(path.read_bytes())
        codec_ids.update(entry["codec"]["id"] for entry in header["tensors"])
    assert codec_ids == set(BUILTIN_CODECS), "add a golden file for every new codec"
