"""The http(s) range reader against a real local HTTP server (tests/range_server.py): exact
bytes, one request to open, kept-alive connections, redirects, and every way a server can
answer wrong named in a TensorzipError."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.container.reader import TzipReader
from tensorzip.errors import InputFileError, TensorzipError, TruncatedFileError
from tensorzip.inputs.http_ranges import PROBE_BYTES, HttpFile
from tensorzip.inputs.sources import open_remote

from .range_server import range_server


@pytest.fixture()
def served_file(tmp_path):
    data = np.random.default_rng(7).integers(0, 256, 3 * 1024 * 1024 + 17, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "tiny.bin").write_bytes(b"abc")
    return tmp_path, data


def test_ranges_are_exact_and_opening_is_one_request(served_file):
    root, data = served_file
    with range_server(root) as (url, served):
        remote = open_remote(f"{url}/blob.bin")
        assert isinstance(remote, HttpFile)
        assert remote.size == len(data)
        assert len(served.requests) == 1 and served.bytes_sent == PROBE_BYTES
        assert remote.read(0, 8) == data[:8]  # from the first answer, not a new request
        assert len(served.requests) == 1
        for offset, length in ((0, 1), (5, 1000), (len(data) - 1, 1), (123_457, 2_000_001), (0, len(data))):
            assert bytes(remote.read(offset, length)) == data[offset : offset + length]
        with pytest.raises(TruncatedFileError, match="blob.bin: needs bytes up to"):
            remote.read(len(data) - 4, 5)
        assert served.connections == 1  # every request went over the one kept-alive connection
        assert remote.bytes_read == served.bytes_sent
        remote.close()


def test_small_and_empty_files(served_file):
    root, _ = served_file
    with range_server(root) as (url, _):
        assert open_remote(f"{url}/empty.bin").size == 0
        tiny = open_remote(f"{url}/tiny.bin")
        assert tiny.size == 3 and tiny.read(0, 3) == b"abc"


def test_concurrent_reads_from_threads(served_file):
    root, data = served_file
    with range_server(root) as (url, served):
        remote = open_remote(f"{url}/blob.bin")
        pieces = [(i * 100_003, 300_001) for i in range(24)]
        results: dict[int, bytes] = {}

        def read(index: int) -> None:
            offset, length = pieces[index]
            results[index] = bytes(remote.read(offset, length))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(pieces))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(results[i] == data[o : o + n] for i, (o, n) in enumerate(pieces))
        assert served.connections <= len(pieces)


def test_redirects_are_followed_once(served_file):
    root, data = served_file
    with range_server(root, redirect_prefix="/moved") as (url, served):
        remote = open_remote(f"{url}/moved/blob.bin")
        assert remote.read(1_000_000, 10) == data[1_000_000:1_000_010]
        assert [path for _, path, _ in served.requests] == ["/moved/blob.bin", "/blob.bin", "/blob.bin"]


def test_wrong_answers_name_the_url_and_the_bytes(served_file):
    root, _ = served_file
    with range_server(root) as (url, _), pytest.raises(InputFileError, match=r"missing\.bin: not found \(404\)"):
        open_remote(f"{url}/missing.bin")
    with range_server(root, ignore_ranges=True) as (url, _), \
            pytest.raises(TruncatedFileError, match=r"blob\.bin: the server ignores byte ranges"):
        open_remote(f"{url}/blob.bin")
    with range_server(root, cut_after=100_000) as (url, _):
        remote = open_remote(f"{url}/blob.bin")
        with pytest.raises(TruncatedFileError, match=r"blob\.bin: asked for bytes 1000-1000999 .* got"):
            remote.read(1000, 1_000_000)
    with pytest.raises(InputFileError, match="127.0.0.1:9/x.tzip: cannot connect"):
        open_remote("http://127.0.0.1:9/x.tzip")


def test_a_tzip_reader_takes_an_open_remote_file(tmp_path):
    tensors = {"a": np.arange(100_000, dtype=np.float32), "b": np.ones((3, 4), dtype=np.int16)}
    tz.save_file(tensors, tmp_path / "t.tzip")
    with range_server(tmp_path) as (url, served):
        remote = open_remote(f"{url}/t.tzip")
        with TzipReader(remote) as reader:
            assert reader.where == f"{url}/t.tzip"
            assert all(np.array_equal(reader.get_tensor(k), v) for k, v in tensors.items())
        assert served.connections == 1
    with range_server(tmp_path, cut_after=1000) as (url, _), pytest.raises(TensorzipError, match="t.tzip"):
        TzipReader(f"{url}/t.tzip").get_tensor("a")


def test_other_schemes_go_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    from tensorzip.hf import safetensors as tzst
    from tensorzip.inputs.sources import FsspecFile

    tensors = {"w": np.linspace(-1, 1, 50_000, dtype=np.float32)}
    tz.save_file(tensors, tmp_path / "t.tzip")
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/t.tzip", (tmp_path / "t.tzip").read_bytes())
    try:
        remote = open_remote("memory://bucket/t.tzip")
        assert isinstance(remote, FsspecFile)
        loaded = tzst.load_file("memory://bucket/t.tzip", framework="np")
        assert np.array_equal(loaded["w"], tensors["w"])
        with pytest.raises(InputFileError, match="memory://bucket/gone.tzip: not found"):
            open_remote("memory://bucket/gone.tzip")
    finally:
        memory.rm("/bucket", recursive=True)


def test_streaming_a_url_keeps_a_few_requests_in_flight_and_stops_when_the_caller_does(tmp_path):
    """iter_tensors over a URL reads REMOTE_PREFETCH_DEPTH batches ahead (their round trips
    overlap); a caller that stops after the first tensor leaves no request running and the
    rest of the file unread."""
    from tensorzip.container.reader import REMOTE_PREFETCH_DEPTH

    rng = np.random.default_rng(3)
    tensors = {f"t{i:02d}": rng.standard_normal(64 * 1024).astype(np.float32) for i in range(24)}
    tz.save_file(tensors, tmp_path / "many.tzip")
    with range_server(tmp_path) as (url, served):
        with TzipReader(f"{url}/many.tzip") as reader:
            got = dict(reader.iter_tensors(batch_bytes=1))
            assert {n: a.tobytes() for n, a in got.items()} == {n: a.tobytes() for n, a in tensors.items()}
            served.reset()
            stream = reader.iter_tensors(batch_bytes=1)
            name, first = next(stream)
            stream.close()
            assert first.tobytes() == tensors[name].tobytes()
            data_requests = len(served.requests)
        assert data_requests <= 1 + REMOTE_PREFETCH_DEPTH, served.requests
