"""What the fuzzers (fuzz/, fuzz/README.md) found, kept as regression tests: each
input that once crashed or misbehaved now gets a clean, documented exception."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native
from tensorzip.container import MAGIC, TzipReader
from tensorzip.container.format import PREAMBLE_SIZE


@pytest.mark.parametrize("width", [0, -1, 3, 16])
def test_plane_histograms_refuses_a_bad_width(width):
    # fuzz_native.py, op plane_histograms: width 0 divided the byte length by zero
    # (UBSan: division by zero; SIGFPE, killing the interpreter, in a release build).
    with pytest.raises(ValueError, match="element width"):
        _native.plane_histograms(b"abcdefgh", width, 0)


def test_plane_histograms_refuses_a_bad_rotation():
    with pytest.raises(ValueError, match="rotation"):
        _native.plane_histograms(b"abcdefgh", 4, 2)


@pytest.mark.parametrize("table", [[(-1, 0, 0)], [(0, 1 << 64, 0)], [(0, 0, 1 << 32)], [(0, 1)], ["chunk"]])
def test_decode_job_that_does_not_fit_is_a_type_error(table):
    # fuzz_native.py, op buffers: a chunk offset of -1 (or any number its C++ field cannot
    # hold) raised RuntimeError from pybind11's cast, not the TypeError of a bad argument.
    with pytest.raises(TypeError, match="each job must be"):
        _native.decode_tensors([(b"x" * 8, table, bytearray(8), 4, 0, 2)], 1, False)


@pytest.mark.parametrize("job", [(b"", 1, 0), (b"", 1, 0, 1 << 63), (b"", "1", 0, 1), 7])
def test_encode_job_that_does_not_fit_is_a_type_error(job):
    with pytest.raises(TypeError, match="each job must be"):
        _native.encode_tensors([job], 1)


def test_decode_still_works_after_the_checks():
    data = (np.arange(1000, dtype=np.float32) * 0.01).view(np.uint8)
    ((chunks, crcs, _, _),) = _native.encode_tensors([(data, 4, 1, 300)], 1)
    source = b"".join(bytes(c) for c in chunks)
    table, offset = [], 0
    for chunk, crc in zip(chunks, crcs, strict=True):
        table.append((offset, len(chunk), crc))
        offset += len(chunk)
    out = np.empty_like(data)
    _native.decode_tensors([(source, table, out, 4, 1, 300)], 1, True)
    assert np.array_equal(out, data)
    assert (_native.plane_histograms(data, 4, 1).sum(axis=1) == 1000).all()


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_header_nested_too_deeply_is_a_header_error(depth, tmp_path):
    # fuzz_reader.py (structure-aware mutator, within ~1000 executions): a header whose
    # JSON nests ~1000 lists deep made json.loads raise RecursionError, which escaped
    # `except TensorzipError` instead of the HeaderError of any other malformed header.
    header = b'{"tensors":[],"metadata":' + b"[" * depth + b"0" + b"]" * depth + b"}"
    head = struct.pack("<8sHHIQQI", MAGIC, 1, 1, 0, PREAMBLE_SIZE, len(header), _native.crc32c(header))
    image = head + struct.pack("<I", _native.crc32c(head)) + header
    with pytest.raises(tz.HeaderError, match="nested too deeply"):
        TzipReader(image)
    path = tmp_path / "deep.tzip"
    path.write_bytes(image)
    with pytest.raises(tz.HeaderError, match="nested too deeply"):
        tz.load_file(path)


def test_faces_kv_record_without_dtype_is_a_format_error(tmp_path, capsys):
    # fuzz_faces.py (issue 17): a KV cache whose record lost its "dtype" gave tensorzip info a
    # KeyError. Layer records' fields are now checked when the file is opened.
    from pathlib import Path

    from tensorzip.cli import main

    found = Path(__file__).parent / "fuzz_inputs" / "faces-kv-record-without-dtype.tzip"
    path = tmp_path / "input.tzip"
    path.write_bytes(found.read_bytes())
    assert main(["info", str(path)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    for call in (lambda: tz.info(path), lambda: tz.kv.load_file(path), lambda: tz.contents(path)):
        with pytest.raises(tz.TensorzipError):
            call()
