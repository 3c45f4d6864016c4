"""The .tzip container: preamble, header, chunk layout, random access, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native
from tensorzip.codecs import BytePlanesCodec
from tensorzip.codecs.byte_planes import DEFAULT_CHUNK_BYTES
from tensorzip.container import FORMAT_MAJOR, FORMAT_MINOR, MAGIC, TzipReader, TzipWriter
from tensorzip.container.format import FLAG_HEADER_ZLIB, PREAMBLE_SIZE

from .conftest import assert_bit_equal, flip, low_entropy, random_bits, split_tzip


@pytest.fixture
def three(rng):
    return {
        "a.weight": low_entropy(rng, "bfloat16", (64, 48)),
        "b.bias": random_bits(rng, "float32", (300,)),
        "c.steps": np.arange(1000, dtype=np.int64),
    }


def write(path, tensors, **kwargs):
    """Each tensor coded alone, as TzipWriter.add does (save_file would code these small
    tensors together: tests/test_packed.py)."""
    with TzipWriter(path, **kwargs) as writer:
        for name, array in tensors.items():
            writer.add(name, array)
    return path.read_bytes()


def test_magic_and_preamble(tmp_path, three):
    blob = write(tmp_path / "m.tzip", three)
    assert MAGIC == b"\x89TZIP\r\n\x1a"
    assert blob.startswith(MAGIC)
    assert PREAMBLE_SIZE == 40
    magic, major, minor, flags, offset, length, header_crc, crc = struct.unpack("<8sHHIQQII", blob[:40])
    # A file without bases or shared tensors is written as 1.0; its header is stored
    # zlib-compressed (flag bit 0) where that is shorter, as it is for any JSON of some length.
    assert (major, minor) == (FORMAT_MAJOR, 0) == (1, 0)
    assert flags == FLAG_HEADER_ZLIB == 1
    assert FORMAT_MINOR == 1
    assert offset + length == len(blob)  # the header is last
    assert _native.crc32c(blob[offset:]) == header_crc
    assert _native.crc32c(blob[:36]) == crc


def test_header_fields(tmp_path, three):
    blob = write(tmp_path / "m.tzip", three, metadata={"format": "pt", "step": "3"})
    fields, data, header = split_tzip(blob)
    assert set(header) == {"tensors", "metadata"}
    assert header["metadata"] == {"format": "pt", "step": "3"}
    assert [t["name"] for t in header["tensors"]] == list(three)
    for entry, (name, array) in zip(header["tensors"], three.items(), strict=True):
        assert set(entry) == {"name", "dtype", "shape", "codec", "chunks"}
        assert entry["name"] == name
        assert entry["dtype"] == array.dtype.name  # numpy's names are tensorzip's for these three
        assert entry["shape"] == list(array.shape)
        expected_rotate = 0 if array.dtype.kind in "iub" else 1
        assert entry["codec"] == {
            "id": "tensorzip.byte_planes",
            "rotate_bits": expected_rotate,
            "chunk_elements": DEFAULT_CHUNK_BYTES // array.dtype.itemsize,
        }
        for offset, length, crc in entry["chunks"]:
            assert _native.crc32c(blob[offset : offset + length]) == crc


def test_chunks_tile_the_data_area(tmp_path, rng):
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        writer.add("x", low_entropy(rng, "float16", (1234,)), codec=BytePlanesCodec(1, 100))
        writer.add("empty", np.zeros((0, 5), np.float32))
        writer.add("y", random_bits(rng, "uint8", (999,)), codec=BytePlanesCodec(0, 250))
    blob = buffer.getvalue()
    fields, data, header = split_tzip(blob)
    position = PREAMBLE_SIZE
    for entry in header["tensors"]:
        for offset, length, _ in entry["chunks"]:
            assert offset == position
            position += length
    assert position == fields["header_offset"]
    counts = [len(t["chunks"]) for t in header["tensors"]]
    assert counts == [13, 0, 4]


def test_random_access_survives_damage_elsewhere(tmp_path, three):
    path = tmp_path / "m.tzip"
    blob = write(path, three)
    _, _, header = split_tzip(blob)
    damaged_entry = header["tensors"][1]
    offset, length, _ = damaged_entry["chunks"][0]
    path.write_bytes(flip(blob, offset + length // 2))
    with tz.safe_open(path) as f:
        assert_bit_equal(f.get_tensor("a.weight"), three["a.weight"])
        assert_bit_equal(f.get_tensor("c.steps"), three["c.steps"])
        with pytest.raises(tz.CorruptDataError) as info:
            f.get_tensor("b.bias")
    message = str(info.value)
    assert str(path) in message
    assert "'b.bias'" in message
    assert f"offset {offset}" in message
    with pytest.raises(tz.CorruptDataError):
        tz.load_file(path)


def test_get_tensor_reads_only_its_own_chunks(tmp_path, three):
    """Only the asked tensor's byte range is touched (recorded through read_range)."""
    path = tmp_path / "m.tzip"
    blob = write(path, three)
    _, _, header = split_tzip(blob)
    reader = TzipReader(path)
    ranges = []
    original = reader.read_range

    def spy(offset, length):
        ranges.append((offset, length))
        return original(offset, length)

    reader.read_range = spy
    reader.get_tensor("c.steps")
    entry = header["tensors"][2]
    start = entry["chunks"][0][0]
    assert ranges == [(start, sum(c[1] for c in entry["chunks"]))]
    reader.close()


def test_metadata_round_trip(tmp_path):
    metadata = {"format": "pt", "ünïcode": "✓ \"quoted\" \n newline", "": ""}
    path = tmp_path / "m.tzip"
    tz.save_file({"x": np.zeros(3, np.float32)}, path, metadata=metadata)
    with tz.safe_open(path) as f:
        assert f.metadata() == metadata
    tz.save_file({"x": np.zeros(3, np.float32)}, path)
    with tz.safe_open(path) as f:
        assert f.metadata() is None
    tz.save_file({}, path, metadata={})
    with tz.safe_open(path) as f:
        assert f.metadata() == {}
        assert f.keys() == []


def test_safe_open_keys_and_get_tensor(tmp_path, three):
    path = tmp_path / "m.tzip"
    write(path, three)
    with tz.safe_open(path) as f:
        assert f.keys() == list(three)
        for name in ("c.steps", "a.weight", "b.bias", "a.weight"):
            assert_bit_equal(f.get_tensor(name), three[name])
        with pytest.raises(tz.TensorNotFoundError) as info:
            f.get_tensor("missing")
    assert "'missing'" in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, KeyError)


def test_unusual_tensor_names(tmp_path, rng):
    names = ["", " ", "a/b.c", "ünï", "x" * 1000, "\n\"\\"]
    tensors = {name: random_bits(rng, "int16", (3,)) for name in names}
    path = tmp_path / "n.tzip"
    tz.save_file(tensors, path)
    loaded = tz.load_file(path)
    assert list(loaded) == list(tensors)
    for name, array in tensors.items():
        assert_bit_equal(loaded[name], array)


def test_concurrent_get_tensor(tmp_path, rng):
    tensors = {f"t{i}": low_entropy(rng, "float32", (100 + 37 * i, 50)) for i in range(8)}
    path = tmp_path / "c.tzip"
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        for name, array in tensors.items():
            writer.add(name, array, codec=BytePlanesCodec(1, 1000))
    path.write_bytes(buffer.getvalue())
    barrier = threading.Barrier(8)
    with tz.safe_open(path) as f:

        def work(index):
            barrier.wait()
            results = []
            for round_ in range(5):
                name = f"t{(index + round_) % 8}"
                results.append((name, f.get_tensor(name)))
            return results

        with ThreadPoolExecutor(8) as pool:
            for results in pool.map(work, range(8)):
                for name, array in results:
                    assert_bit_equal(array, tensors[name])


def test_write_to_bytesio(rng):
    array = low_entropy(rng, "bfloat16", (100, 7))
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata={"k": "v"}) as writer:
        writer.add("w", array)
    assert not buffer.closed
    blob = buffer.getvalue()
    assert blob.startswith(MAGIC)
    reader = TzipReader(blob)
    assert reader.metadata() == {"k": "v"}
    assert_bit_equal(reader.get_tensor("w"), array)


def test_writer_reports_sizes(tmp_path, rng):
    seen = []
    array = low_entropy(rng, "float32", (10_000,))
    path = tmp_path / "s.tzip"
    with TzipWriter(path, on_tensor=seen.append) as writer:
        writer.add("w", array)
    size = path.stat().st_size
    (stats,) = seen
    assert stats.name == "w" and stats.dtype == "float32" and stats.shape == (10_000,)
    assert stats.original_bytes == array.nbytes
    assert 0 < stats.order0_bound_bytes <= stats.stored_bytes < size


def test_small_batches_write_the_same_file(tmp_path, rng):
    tensors = {f"t{i}": low_entropy(rng, "float16", (500 + i,)) for i in range(10)}
    blobs = []
    for batch_bytes in (1, 1 << 30):
        buffer = io.BytesIO()
        with TzipWriter(buffer, batch_bytes=batch_bytes) as writer:
            for name, array in tensors.items():
                writer.add(name, array)
        blobs.append(buffer.getvalue())
    assert blobs[0] == blobs[1]


def _listing(directory):
    return sorted(os.listdir(directory))


def test_exception_inside_writer_leaves_no_file(tmp_path, rng):
    target = tmp_path / "out.tzip"
    with pytest.raises(RuntimeError, match="boom"), TzipWriter(target) as writer:
        writer.add("w", random_bits(rng, "float32", (100_000,)))
        writer.flush()  # bytes are already in the temporary file
        raise RuntimeError("boom")
    assert _listing(tmp_path) == []


def test_exception_inside_writer_keeps_an_existing_target(tmp_path, rng):
    target = tmp_path / "out.tzip"
    target.write_bytes(b"precious")
    with pytest.raises(KeyError), TzipWriter(target) as writer:
        writer.add("w", random_bits(rng, "float32", (1000,)))
        raise KeyError("boom")
    assert target.read_bytes() == b"precious"
    assert _listing(tmp_path) == ["out.tzip"]


def test_failed_save_file_leaves_no_file(tmp_path, rng):
    target = tmp_path / "out.tzip"
    with pytest.raises(tz.UnsupportedDtypeError):
        tz.save_file({"ok": np.zeros(3, np.float32), "bad": np.zeros(3, np.complex64)}, target)
    assert _listing(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(tz.UnsupportedDtypeError):
        tz.save_file({"ok": np.zeros(3, np.float32), "bad": np.zeros(3, np.complex64)}, target)
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.tzip"]


def test_writer_rejects_duplicate_and_non_string_names(tmp_path):
    with pytest.raises(tz.TensorzipError, match="twice"), TzipWriter(tmp_path / "d.tzip") as writer:
        writer.add("x", np.zeros(1, np.uint8))
        writer.add("x", np.zeros(1, np.uint8))
    with pytest.raises(tz.TensorzipError, match="string"), TzipWriter(tmp_path / "d.tzip") as writer:
        writer.add(3, np.zeros(1, np.uint8))
    assert _listing(tmp_path) == []


def test_closed_writer_refuses_more(tmp_path):
    writer = TzipWriter(tmp_path / "w.tzip")
    writer.add("x", np.zeros(2, np.uint8))
    size = writer.close()
    assert size == (tmp_path / "w.tzip").stat().st_size
    assert writer.close() == size
    with pytest.raises(tz.TensorzipError, match="closed"):
        writer.add("y", np.zeros(2, np.uint8))


def test_overwrite_false_refuses_existing_target(tmp_path):
    target = tmp_path / "x.tzip"
    target.write_bytes(b"keep")
    with pytest.raises(tz.OutputFileError, match="exists"):
        TzipWriter(target, overwrite=False)
    assert target.read_bytes() == b"keep"


def test_output_file_permissions(tmp_path):
    target = tmp_path / "p.tzip"
    tz.save_file({"x": np.zeros(1, np.uint8)}, target)
    assert target.stat().st_mode & 0o777 == 0o644


def test_reader_is_closed_by_context(tmp_path, three):
    path = tmp_path / "m.tzip"
    write(path, three)
    with TzipReader(path) as reader:
        assert len(reader) == 3
        assert "a.weight" in reader
    with pytest.raises(tz.InputFileError, match="closed"):
        reader.get_tensor("a.weight")


def test_decompress_refuses_multi_tensor_files(tmp_path, three):
    blob = write(tmp_path / "m.tzip", three)
    with pytest.raises(tz.FormatError, match="3 tensors"):
        tz.decompress(blob)


def test_read_ahead_reuses_buffers_without_mixing_batches(tmp_path, rng):
    """More batches than read buffers: each batch's stored bytes are its own chunks' bytes
    when it is taken (the buffer it lies in is reused only after the caller moved on), and
    every tensor decodes bit-exact."""
    path = tmp_path / "many.tzip"
    tensors = {f"t{i}": rng.standard_normal(3000 + 100 * i).astype(np.float32) for i in range(12)}
    tz.save_file(tensors, path)
    raw = path.read_bytes()
    with TzipReader(path) as reader:
        entries = [reader.entry(name) for name in tensors]
        batches = [[entry] for entry in entries]
        taken = 0
        for batch, stored in reader.read_ahead(batches):
            (entry,), (data,) = batch, stored
            start = entry.chunks[0].offset
            assert bytes(data) == raw[start : start + entry.stored_bytes], entry.name
            taken += 1
        assert taken == len(batches)
        for name, array in reader.iter_tensors(batch_bytes=1):
            assert_bit_equal(array, tensors[name])


def test_writeback_advice_is_harmless_on_pipes_and_memory(tmp_path, rng):
    """Streamed decompression to a pipe and to memory gets no write-back advice and the
    same bytes as the file written to disk."""
    from tensorzip.outputs.atomic import WriteBack

    array = {"w": rng.standard_normal(50_000).astype(np.float32)}
    path = tmp_path / "w.tzip"
    tz.save_file(array, path)
    on_disk = tmp_path / "w.safetensors"
    tz.decompress_file(path, on_disk)
    memory = io.BytesIO()
    WriteBack(memory).written(10)  # no descriptor: nothing to advise
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe_file:
        WriteBack(pipe_file).written(10)  # a pipe: not a regular file, no advice
    os.close(read_end)
    tz.decompress_file(path, memory)
    assert memory.getvalue() == on_disk.read_bytes()


def _add_a_batch_each(writer: TzipWriter, seed: int) -> None:
    """Twelve tensors, each its own batch (the writer's batch_bytes=1), then a flush."""
    rng = np.random.default_rng(seed)
    for i in range(12):
        writer.add(f"t{i}", (rng.standard_normal(2000) * 0.1).astype(np.float32))
    writer.flush()


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("tensorzip-encode", "tensorzip-write"))]


@pytest.mark.parametrize("failing_write", [2, 4, 9])
def test_a_batch_that_fails_to_write_fails_the_file_even_if_the_caller_closes_it(tmp_path, monkeypatch,
                                                                                    failing_write):
    """Batches of a file are written on a thread while later ones code: a write that fails
    there is raised by a later call, and the writer is then dropped. A caller that catches
    that and calls close() gets an error, not a file whose header counts a batch never
    written; nothing is left behind and no thread keeps running."""
    import contextlib
    import errno

    from tensorzip.container import writer as writer_module

    real_output = writer_module.atomic_output

    class FullAfter:
        def __init__(self, handle):
            self.handle, self.calls = handle, 0

        def write(self, data):
            self.calls += 1
            if self.calls == failing_write:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    @contextlib.contextmanager
    def full_after(path, overwrite=True):
        with real_output(path, overwrite=overwrite) as handle:
            yield FullAfter(handle)

    monkeypatch.setattr(writer_module, "atomic_output", full_after)
    writer = TzipWriter(tmp_path / "x.tzip", batch_bytes=1, threads=1)
    with pytest.raises(tz.OutputFileError, match="No space left on device"):
        _add_a_batch_each(writer, seed=0)
    with pytest.raises(tz.OutputFileError, match="not written"):
        writer.close()
    assert os.listdir(tmp_path) == []
    assert _pipeline_threads() == []


def test_a_batch_that_fails_to_code_fails_the_file_even_if_the_caller_closes_it(tmp_path, monkeypatch):
    """The same for a batch whose coding fails on the encode thread: no tensor that was added
    is silently missing from a committed file."""
    calls = {"n": 0}
    real = BytePlanesCodec.batch_encoder

    def failing_encoder(cls, threads):
        encode = real.__func__(cls, threads)

        def run(jobs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("coding failed")
            return encode(jobs)
        return run

    monkeypatch.setattr(BytePlanesCodec, "batch_encoder", classmethod(failing_encoder))
    writer = TzipWriter(tmp_path / "x.tzip", batch_bytes=1, threads=1)
    with pytest.raises(RuntimeError, match="coding failed"):
        _add_a_batch_each(writer, seed=1)
    with pytest.raises(tz.OutputFileError, match="not written"):
        writer.close()
    assert os.listdir(tmp_path) == []
    assert _pipeline_threads() == []


def test_a_file_written_in_many_batches_equals_the_same_file_written_in_memory(tmp_path):
    """The pipelined path (a file: coding and writing on threads, encoders taking turns) and the
    in-place path (a stream) write the same bytes, with packed, shared and empty tensors."""
    rng = np.random.default_rng(2)
    tensors = {f"w{i}": (rng.standard_normal((64, 50 + i)) * 0.05).astype(np.float32) for i in range(9)}
    tensors["small"] = rng.standard_normal(7).astype(np.float16)
    tensors["empty"] = np.zeros((0, 3), np.float32)
    tensors["bytes"] = rng.integers(0, 255, 5000).astype(np.uint8)

    def write(target):
        with TzipWriter(target, batch_bytes=3000, threads=2) as writer:
            for name, array in tensors.items():
                writer.add(name, array, pack=array.nbytes <= 64)
            writer.add_shared("w0.again", "w0")

    write(tmp_path / "f.tzip")
    memory = io.BytesIO()
    write(memory)
    assert (tmp_path / "f.tzip").read_bytes() == memory.getvalue()
    with TzipReader(tmp_path / "f.tzip") as reader:
        for name, array in tensors.items():
            assert reader.get_tensor(name).tobytes() == array.tobytes(), name
        assert reader.get_tensor("w0.again").tobytes() == tensors["w0"].tobytes()
