"""Declared sizes are checked against the file and against ``ReadLimits`` before
anything they declare is allocated; a crafted bomb is refused with a clear error,
and memory stays small while it is refused.

Memory is watched two ways: ``tracemalloc`` (Python and numpy allocations, including
a large allocation that was only attempted), and, in a child process, the peak
resident set (``VmHWM``), which also sees the native core's allocations.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native
from tensorzip.codecs import BytePlanesCodec
from tensorzip.codecs.residual import Delta, digest
from tensorzip.container import ReadLimits, TzipReader, TzipWriter
from tensorzip.container.format import DEFAULT_MAX_HEADER_BYTES, PREAMBLE_SIZE, Preamble
from tensorzip.container.header import DEFAULT_MAX_EXPANSION, DEFAULT_MAX_TENSOR_BYTES
from tensorzip.kv.codec import KVConfig, encode, to_bytes

from .conftest import build_tzip, rewrite_header, split_tzip

CODEC = {"id": "tensorzip.byte_planes", "rotate_bits": 0, "chunk_elements": 1 << 20}
# What refusing a bomb may allocate: the reader's own bookkeeping, never what the file declares.
SMALL = 8 << 20


@contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """Yields a function returning the peak bytes allocated (tracemalloc) inside the block."""
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield lambda: peak[0]
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def read_all(source: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    with TzipReader(source, **kwargs) as reader:
        return dict(reader.iter_tensors())


def refused(error_type: type[BaseException], source: Any, *fragments: str, **kwargs: Any) -> int:
    """Reading ``source`` raises ``error_type`` naming each fragment; returns the peak allocation."""
    with peak_allocation() as peak, pytest.raises(error_type) as info:
        read_all(source, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return peak()


def single_tensor(shape: list[int], dtype: str = "uint8", chunks: list[tuple[int, int]] | None = None,
                  codec: dict[str, Any] = CODEC, **extra: Any) -> bytes:
    """A file of one tensor called 'bomb' whose chunks are zero bytes of the given (count, length)."""
    data = bytearray()
    refs = []
    for count, length in chunks if chunks is not None else [(1, 10)]:
        crc = _native.crc32c(bytes(length))
        for _ in range(count):
            refs.append([PREAMBLE_SIZE + len(data), length, crc])
            data += bytes(length)
    return build_tzip(bytes(data), {"tensors": [{"name": "bomb", "dtype": dtype, "shape": shape, "codec": codec,
                                                 "chunks": refs, **extra}]})


# -- the limits, their defaults, and where they are set ------------------------------------


def test_defaults():
    limits = tz.ReadLimits()
    assert limits.max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 100 << 20
    assert limits.max_tensor_bytes == DEFAULT_MAX_TENSOR_BYTES == 1 << 40
    assert limits.max_expansion == DEFAULT_MAX_EXPANSION == 1 << 20
    assert TzipReader(tz.compress(np.zeros(3, np.float32))).limits == limits


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A constant tensor (high expansion) and a noisy one, with their exact figures."""
    path = tmp_path / "model.tzip"
    tz.save_file({"constant": np.full((64, 64), 3, np.int32),
                  "noise": np.random.default_rng(3).integers(0, 255, 500, dtype=np.uint8)}, path)
    return path


def _figures(path: Path) -> dict[str, int]:
    with TzipReader(path) as reader:
        constant = reader.entry("constant")
        fields, _, _ = split_tzip(path.read_bytes())
        return {"header": fields["header_bytes"], "tensor": constant.nbytes,
                "expansion": math.ceil(constant.nbytes / constant.stored_bytes)}


@pytest.mark.parametrize(
    ("field", "figure", "error", "fragment"),
    [
        ("max_header_bytes", "header", tz.LimitExceededError, "ReadLimits.max_header_bytes"),
        ("max_tensor_bytes", "tensor", tz.LimitExceededError, "ReadLimits.max_tensor_bytes"),
        ("max_expansion", "expansion", tz.LimitExceededError, "expansion limit"),
    ],
)
@pytest.mark.parametrize("opener", ["TzipReader", "safe_open"])
def test_each_limit_is_configurable(model: Path, field: str, figure: str, error: type, fragment: str,
                                    opener: str) -> None:
    """At the file's exact figure the file reads; one below, it is refused when opened."""
    value = _figures(model)[figure]

    def open_with(limit: int) -> Any:
        limits = ReadLimits(**{field: limit})
        return TzipReader(model, limits=limits) if opener == "TzipReader" else tz.safe_open(model, limits=limits)

    with open_with(value) as f:
        assert f.get_tensor("constant").tobytes() == np.full((64, 64), 3, np.int32).tobytes()
    with pytest.raises(error) as info:
        open_with(value - 1)
    assert str(model) in str(info.value) and fragment in str(info.value)
    if field != "max_header_bytes":
        assert "'constant'" in str(info.value)


def test_the_default_expansion_admits_what_the_writer_makes_at_the_extreme(tmp_path: Path) -> None:
    """A constant 4 MiB chunk is the writer's most compressible case."""
    path = tmp_path / "zeros.tzip"
    with TzipWriter(path) as writer:  # 8 MiB in two chunks of 4 MiB, 7 bytes each
        writer.add("zeros", np.zeros(8 << 20, np.uint8), BytePlanesCodec(chunk_elements=_native.MAX_CHUNK_BYTES))
    with TzipReader(path) as reader:
        entry = reader.entry("zeros")
        assert entry.stored_bytes == 14 and entry.nbytes / entry.stored_bytes > 5e5
        assert not reader.get_tensor("zeros").any()


# -- bombs ------------------------------------------------------------------------------


def test_huge_header_length_is_refused_before_reading(small_tzip: Path) -> None:
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    for length in (1 << 62, DEFAULT_MAX_HEADER_BYTES + 1):
        small_tzip.write_bytes(Preamble(fields["header_offset"], length, fields["header_crc32c"]).pack()
                               + blob[PREAMBLE_SIZE:])
        assert refused(tz.LimitExceededError, small_tzip, str(small_tzip), "header declares") < SMALL


def test_header_longer_than_the_file_is_refused_before_reading(small_tzip: Path) -> None:
    """Within the limit, but past the end of the file: nothing is read or allocated for it."""
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    small_tzip.write_bytes(Preamble(fields["header_offset"], 90 << 20, fields["header_crc32c"]).pack()
                           + blob[PREAMBLE_SIZE:])
    assert refused(tz.TruncatedFileError, small_tzip, str(small_tzip), "truncated") < SMALL
    peak = refused(tz.TruncatedFileError, small_tzip.read_bytes(), "<bytes>", "truncated")
    assert peak < SMALL


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks", "error", "fragment"),
    [
        ([1 << 40], "uint8", [(1, 10)], tz.LimitExceededError, "expansion limit"),  # 1 TiB from 10 bytes
        ([1 << 30, 1 << 12], "float64", [(1, 10)], tz.LimitExceededError, "max_tensor_bytes"),  # 32 TiB
        ([1 << 62, 1 << 62], "bool", [(3, 10)], tz.HeaderError, "too large to exist"),
        # 8 GiB from 4000 chunks: within the expansion limit, refused on the chunk count at open
        ([1 << 33], "uint8", [(4000, 7)], tz.CorruptDataError, "4000 chunks, its shape [8589934592] needs 8192"),
        ([1 << 24], "int64", [(1, 0), (1, 100)], tz.LimitExceededError, "expansion limit"),
    ],
)
def test_huge_shape_from_tiny_chunks(tmp_path: Path, shape: list[int], dtype: str, chunks: list[tuple[int, int]],
                                     error: type, fragment: str) -> None:
    path = tmp_path / "bomb.tzip"
    path.write_bytes(single_tensor(shape, dtype, chunks))
    assert refused(error, path, str(path), "'bomb'", fragment) < SMALL


def test_expansion_limit_can_be_lowered_to_refuse_smaller_bombs() -> None:
    """4 MiB from one 10-byte chunk is within the default ratio (it is decoded, into 4 MiB,
    and refused); a stricter limit refuses it at open."""
    blob = single_tensor([4 << 20], codec={**CODEC, "chunk_elements": 4 << 20})
    assert refused(tz.CorruptDataError, blob, "'bomb'", "chunk 0", "planes") < 6 << 20
    peak = refused(tz.LimitExceededError, blob, "'bomb'", "expansion limit", limits=ReadLimits(max_expansion=1000))
    assert peak < SMALL


def test_huge_chunk_count_costs_memory_in_proportion_to_the_header_only() -> None:
    """20,000 empty chunks: a header of ~180 KB. Parsing it costs a bounded multiple of
    its size (the header limit bounds it all), the chunk table is refused before any
    tensor memory is touched, and a lower header limit refuses it before parsing."""
    count = 20_000
    codec = {**CODEC, "chunk_elements": 1}
    blob = single_tensor([count], chunks=[(count, 0)], codec=codec)
    header_length = split_tzip(blob)[0]["header_length"]
    peak = refused(tz.CorruptDataError, blob, "'bomb'", "chunk 0", "shorter than its plane directory")
    assert peak < 64 * header_length, (peak, header_length)
    # More chunks than the shape needs: refused on the count, before any chunk is looked at.
    blob = single_tensor([10], chunks=[(count, 0)], codec=codec)
    assert refused(tz.CorruptDataError, blob, "'bomb'", f"{count} chunks, its shape [10] needs 10") < 64 * header_length
    peak = refused(tz.LimitExceededError, blob, "header declares",
                   limits=ReadLimits(max_header_bytes=split_tzip(blob)[0]["header_length"] - 1))
    assert peak < SMALL


def _base_with_a_big_tensor(tmp_path: Path) -> tuple[Path, np.ndarray]:
    base = tmp_path / "base.tzip"
    big = np.zeros(48 << 20, np.uint8)  # 48 MiB stored in a few hundred bytes
    tz.save_file({"big": big, "small": np.arange(16, dtype=np.uint8)}, base)
    return base, big


def test_delta_naming_a_huge_base_tensor_is_refused_before_decoding_it(tmp_path: Path) -> None:
    base, big = _base_with_a_big_tensor(tmp_path)
    path = tmp_path / "fine.tzip"
    with TzipWriter(path, base={"file": base.name}) as writer:  # a 16-byte tensor coded against 48 MiB
        writer.add("small", np.arange(16, dtype=np.uint8), BytePlanesCodec(), Delta("xor", "big", digest(big)))
    del big
    with peak_allocation() as peak, pytest.raises(tz.BaseMismatchError) as info:
        read_all(path)
    assert peak() < SMALL
    message = str(info.value)
    assert str(path) in message and "'small'" in message and "'big'" in message and "50331648 x uint8" in message
    # The same through an explicit base, and by every entry point that decodes.
    with pytest.raises(tz.BaseMismatchError):
        tz.load_file(path, base=base)
    with pytest.raises(tz.BaseMismatchError):
        tz.decompress_file(path, io.BytesIO())


def test_kv_record_declaring_a_huge_group_allocates_nothing_for_it() -> None:
    """Min-max group parameters expand by index: a group of 2^31 elements over an axis of 8
    means one group, not 2^31 copies of each parameter."""
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((1, 1, 2, 8, 4)).astype(np.float32)
    tensors, record = encode(keys, keys, KVConfig(levels=8, group=8))
    expected = tz.kv.decompress(to_bytes(tensors, record))
    record["config"]["group"] = 1 << 31  # every group still covers the whole axis of 8
    with peak_allocation() as peak:
        got = tz.kv.decompress(to_bytes(tensors, record))
    assert peak() < SMALL
    for a, b in zip(got, expected, strict=True):
        assert a.tobytes() == b.tobytes()


def test_kv_record_declaring_a_huge_shape_without_tensors_is_refused() -> None:
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((1, 1, 1, 8, 4)).astype(np.float32)
    _, record = encode(keys, keys, KVConfig(step=0.1))
    record = {**record, "shape": [64, 8, 32, 1 << 24, 128], "values_shape": [64, 8, 32, 1 << 24, 128]}
    blob = to_bytes({}, record)
    with peak_allocation() as peak, pytest.raises(tz.FormatError) as info:
        tz.kv.decompress(blob)
    assert peak() < SMALL
    assert "holds no tensors" in str(info.value)
    # With tensors, a record shape that disagrees with them is refused too.
    tensors, record = encode(keys, keys, KVConfig(step=0.1))
    record["shape"] = [1, 1, 1, 1 << 40, 4]
    with pytest.raises(tz.FormatError, match="the record says"):
        tz.kv.decompress(to_bytes(tensors, record))


def _embeddings_with_record(edit: Callable[[dict[str, Any]], None], mode: str = "lossless") -> bytes:
    vectors = np.random.default_rng(1).standard_normal((30, 6)).astype(np.float32)
    blob = tz.embeddings.compress(vectors, mode=mode, **({} if mode == "lossless" else {"level": 0.01}))

    def rewrite(header: dict[str, Any]) -> None:
        record = json.loads(header["metadata"]["tensorzip.embeddings"])
        edit(record)
        header["metadata"]["tensorzip.embeddings"] = json.dumps(record)

    return rewrite_header(blob, rewrite)


@pytest.mark.parametrize("mode", ["lossless", "transform"])
@pytest.mark.parametrize("field", ["count", "dim"])
def test_embeddings_record_declaring_huge_sizes_is_refused(mode: str, field: str) -> None:
    """The record's count and dim must be those of the stored tensors: nothing is sized from
    the record alone, and search cannot be handed queries of a size the data does not have."""
    blob = _embeddings_with_record(lambda record: record.__setitem__(field, 1 << 40), mode)
    with peak_allocation() as peak, pytest.raises(tz.FormatError) as info:
        tz.embeddings.open(blob)
    assert peak() < SMALL
    assert field in str(info.value) and "<bytes>" in str(info.value)


def test_embeddings_lossless_vectors_must_be_a_matrix() -> None:
    vectors = np.random.default_rng(1).standard_normal((30, 6)).astype(np.float32)
    blob = tz.embeddings.compress(vectors, mode="lossless")
    _, _, header = split_tzip(blob)
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=header["metadata"]) as writer:
        writer.add("vectors", vectors.reshape(-1))
    with pytest.raises(tz.FormatError, match="vectors"):
        tz.embeddings.open(buffer.getvalue())


# -- peak resident memory of a process refusing every bomb --------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorzip as tz

    def hwm():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    paths = json.loads(sys.argv[1])
    tz.load_file(paths.pop("good"))  # warm: imports, native pools, a real decode
    before = hwm()
    outcomes = {}
    for name, path in paths.items():
        try:
            if name.startswith("kv"):
                tz.kv.decompress(open(path, "rb").read())
            else:
                tz.load_file(path)
            outcomes[name] = "read"
        except tz.TensorzipError as error:
            outcomes[name] = type(error).__name__
    print(json.dumps({"growth": hwm() - before, "outcomes": outcomes}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (VmHWM)")
def test_peak_resident_memory_while_refusing_bombs(tmp_path: Path, small_tzip: Path) -> None:
    bombs: dict[str, bytes] = {
        "expansion": single_tensor([1 << 40]),
        "tensor_bytes": single_tensor([1 << 30, 1 << 12], "float64"),
        "chunk_count": single_tensor([1 << 33], chunks=[(4000, 7)]),
    }
    blob = small_tzip.read_bytes()
    fields, _, _ = split_tzip(blob)
    bombs["header_length"] = Preamble(fields["header_offset"], 1 << 62, fields["header_crc32c"]).pack() + blob[40:]
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((1, 1, 2, 8, 4)).astype(np.float32)
    tensors, record = encode(keys, keys, KVConfig(levels=8, group=8))
    record["config"]["group"] = 1 << 31
    bombs["kv_group"] = to_bytes(tensors, record)
    _, record = encode(keys, keys, KVConfig(step=0.1))
    bombs["kv_shape"] = to_bytes({}, {**record, "shape": [64, 8, 32, 1 << 24, 128]})
    paths = {"good": str(small_tzip)}
    for name, content in bombs.items():
        paths[name] = str(tmp_path / f"{name}.tzip")
        Path(paths[name]).write_bytes(content)
    base, big = _base_with_a_big_tensor(tmp_path)
    with TzipWriter(tmp_path / "delta.tzip", base={"file": base.name}) as writer:
        writer.add("small", np.arange(16, dtype=np.uint8), BytePlanesCodec(), Delta("xor", "big", digest(big)))
    paths["delta_base"] = str(tmp_path / "delta.tzip")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths)], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcomes"] == {
        "expansion": "LimitExceededError", "tensor_bytes": "LimitExceededError", "chunk_count": "CorruptDataError",
        "header_length": "LimitExceededError", "kv_group": "read", "kv_shape": "FormatError",
        "delta_base": "BaseMismatchError",
    }
    assert report["growth"] < 32 << 20, f"peak resident memory grew by {report['growth']} bytes"
