"""Corruption sweep: small files of every kind tensorzip writes, damaged at every byte.

For each file (byte planes of fp32 / bf16 / fp16 / int8 / bool, narrowed_float,
sparse, xor and sub deltas against a base, same_as, a two-shard folder archive, KV
caches of both quantizers, embedding collections lossless and lossy):

- every single-byte flip (xor 0xFF everywhere, xor 0x01 on a sample) and every
  truncation must raise a ``TensorzipError`` whose message names the input and the
  problem, or decode to exactly the original. Every byte of a .tzip is under a
  CRC-32C (preamble, header, chunks), so in practice every flip is refused;
- the same flips with every checksum recomputed (damage a CRC cannot see: a bad
  writer, a deliberate edit), so that the damage reaches the header parser, the
  codecs' native parsers, the delta, KV and embeddings layers: each must end in a
  ``TensorzipError`` or a decoded result, never another exception, a crash or a hang.
  Bytes a decoder does not use (or uses without being able to check) may decode to
  different data here; that is what the checksums are for.

Hangs: a watchdog (``faulthandler``) ends the run with every thread's stack if one
sweep takes minutes, and each decode must finish in well under a second or two
(a few-KB file). These are correctness checks, not timings.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native, dtypes
from tensorzip.codecs import BytePlanesCodec, NarrowedFloatCodec, SparseCodec
from tensorzip.codecs.residual import Delta, codec_for, digest, residual
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.container.format import FLAG_HEADER_ZLIB, PREAMBLE_SIZE

from .conftest import split_tzip

# A single decode of a few-KB file takes well under a millisecond; a decode
# taking this long means a loop that should not be there.
MAX_SECONDS_PER_DECODE = 2.0
# A whole sweep of one file that has not ended after this long is hung: dump
# every thread's stack and end the process, so CI shows where.
WATCHDOG_SECONDS = 300
# xor 0x01 on every SAMPLE_STEP-th byte (xor 0xFF goes everywhere).
SAMPLE_STEP = 3

PREAMBLE = struct.Struct("<8sHHIQQII")


@dataclass
class Case:
    """A file and how to decode it fully into a comparable value."""

    name: str
    blob: bytes
    decode: Callable[[bytes], Any]  # raises TensorzipError on damage
    expected: Any = None
    where: str = "<bytes>"  # how error messages name the input


def canonical(arrays: Iterator[tuple[str, np.ndarray]]) -> tuple:
    """Names, dtypes, shapes and bytes: equal only when bit-identical."""
    return tuple((name, a.dtype.str, a.shape, a.tobytes()) for name, a in arrays)


def read_tensors(blob: bytes, **kwargs: Any) -> tuple:
    with TzipReader(blob, threads=1, **kwargs) as reader:
        return canonical(reader.iter_tensors())


def write(tensors: dict[str, tuple[np.ndarray, Any]], **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    with TzipWriter(buffer, threads=1, **kwargs) as writer:
        for name, (array, codec) in tensors.items():
            writer.add(name, array, codec)
    return buffer.getvalue()


def planes(dtype: Any, chunk_elements: int) -> BytePlanesCodec:
    return BytePlanesCodec(rotate_bits=dtypes.by_numpy(np.dtype(dtype)).rotate_bits, chunk_elements=chunk_elements)


def chunk_plane_modes(blob: bytes) -> set[int]:
    """Plane modes (0 raw, 1 constant, 2 rANS) used by the byte-plane chunks of a file."""
    _, _, header = split_tzip(blob)
    modes = set()
    for entry in header["tensors"]:
        if entry.get("codec", {}).get("id") in ("tensorzip.byte_planes", "tensorzip.narrowed_float"):
            for offset, _length, _ in entry["chunks"]:
                width = blob[offset]
                modes.update(blob[offset + 1 + 5 * k] for k in range(width))
    return modes


# -- the files ---------------------------------------------------------------------------


def _weights(rng: np.random.Generator, n: int, dtype: Any) -> np.ndarray:
    return (rng.standard_normal(n) * 0.02).astype(np.float32).astype(dtype)


def _levels(rng: np.random.Generator, n: int, dtype: Any) -> np.ndarray:
    """Values from a few levels: low-entropy planes that rANS codes."""
    return (rng.integers(-6, 7, n) * 0.125).astype(dtype)


def byte_plane_cases(rng: np.random.Generator, tmp: Path) -> list[Case]:
    cases = []
    # fp32 holding bf16 values from a real .safetensors: planes rANS, raw, constant, rANS;
    # decoded both as tensors and as the restored .safetensors file (its header kept verbatim).
    st = pytest.importorskip("safetensors.numpy")
    source = tmp / "fp32.safetensors"
    st.save_file({"w": _weights(rng, 640, ml_dtypes.bfloat16).astype(np.float32).reshape(20, 32),
                  "b": np.full(8, 0.5, np.float32)}, str(source), metadata={"step": "3"})
    compressed = tmp / "fp32.tzip"
    tz.compress_file(source, compressed, threads=1)
    original = source.read_bytes()

    def fp32_decode(blob: bytes) -> tuple:
        out = io.BytesIO()
        tz.decompress_file(blob, out, threads=1)
        return read_tensors(blob), out.getvalue()

    cases.append(Case("byte_planes-fp32", compressed.read_bytes(), fp32_decode,
                      (canonical(st.load_file(str(source)).items()), original)))
    tensors = {
        "bf16": {"w": (_weights(rng, 640, ml_dtypes.bfloat16), planes(ml_dtypes.bfloat16, 384))},
        "fp16": {"w": (_levels(rng, 640, np.float16), planes(np.float16, 384)),
                 "n": (_weights(rng, 64, np.float16), planes(np.float16, 64))},
        "int8": {"w": (rng.geometric(0.6, 700).astype(np.int8) - 1, planes(np.int8, 400)),
                 "r": (rng.integers(-128, 128, 60).astype(np.int8), planes(np.int8, 400)),
                 "c": (np.full(30, 7, np.int8), planes(np.int8, 400))},
        "bool": {"m": (rng.random(700) < 0.1, planes(np.bool_, 400)),
                 "e": (np.zeros((0, 3), np.bool_), planes(np.bool_, 400))},
    }
    for label, content in tensors.items():
        cases.append(Case(f"byte_planes-{label}", write(content), read_tensors))
    cases.append(Case("narrowed_float", write({"w": (
        _levels(rng, 700, np.float16).astype(np.float32), NarrowedFloatCodec("float16", 1, 400))}), read_tensors))
    sparse = np.zeros(900, np.float32)
    sparse[rng.choice(500, 40, replace=False)] = _weights(rng, 40, np.float32)  # the last chunk is all zeros
    cases.append(Case("sparse", write({"s": (sparse, SparseCodec(rotate_bits=1, chunk_elements=400))}), read_tensors))
    return cases


def delta_cases(rng: np.random.Generator, tmp: Path) -> list[Case]:
    base_values = _weights(rng, 500, np.float32)
    base_path = tmp / "base.tzip"
    tz.save_file({"w": base_values, "k": np.arange(40, dtype=np.int16)}, base_path, threads=1)
    spec = dtypes.by_name("float32")
    fine_tuned = (base_values + _weights(rng, 500, np.float32) * 1e-4).astype(np.float32)
    cases = []
    for mode in ("xor", "sub"):
        stored = residual(fine_tuned, base_values, mode, spec)
        codec = codec_for(mode, stored, spec)
        codec = BytePlanesCodec(rotate_bits=codec.rotate_bits, chunk_elements=300)
        buffer = io.BytesIO()
        with TzipWriter(buffer, threads=1, base={"file": base_path.name}) as writer:
            writer.add("w", stored, codec, Delta(mode, "w", digest(base_values)))
            writer.add("k", np.arange(40, dtype=np.int16) + 1)
        expected = canonical([("w", fine_tuned), ("k", np.arange(40, dtype=np.int16) + 1)])
        if mode == "xor":  # read from bytes, the base given
            cases.append(Case("delta-xor", buffer.getvalue(), lambda blob: read_tensors(blob, base=base_path),
                              expected))
        else:  # read from a file (preadv), the base found beside it by the name its header records
            path = tmp / "fine-tuned.tzip"

            def from_file(blob: bytes, path: Path = path) -> tuple:
                path.write_bytes(blob)
                return read_tensors(path)

            cases.append(Case("delta-sub", buffer.getvalue(), from_file, expected, where=str(path)))
    return cases


def same_as_case(rng: np.random.Generator, tmp: Path) -> Case:
    tensors = {"embed": _weights(rng, 300, ml_dtypes.bfloat16).reshape(10, 30),
               "bias": _weights(rng, 30, np.float32)}
    tensors["lm_head"] = tensors["embed"].copy()
    path = tmp / "tied.tzip"
    tz.save_file(tensors, path, threads=1)
    blob = path.read_bytes()
    assert any(t.get("same_as") == "embed" for t in split_tzip(blob)[2]["tensors"])
    return Case("same_as", blob, read_tensors, canonical(tensors.items()))


def packed_case(rng: np.random.Generator, tmp: Path) -> Case:
    """Small tensors coded together: two float32 groups (biases, norms), a bfloat16 one."""
    tensors = {}
    for layer in range(2):
        tensors[f"l{layer}.bias"] = (rng.standard_normal(24) * 0.02).astype(np.float32)
        tensors[f"l{layer}.norm"] = (1 + rng.standard_normal(24) * 0.02).astype(np.float32)
        tensors[f"l{layer}.half"] = _weights(rng, 20, ml_dtypes.bfloat16)
    path = tmp / "packed.tzip"
    tz.save_file(tensors, path, threads=1)
    blob = path.read_bytes()
    assert split_tzip(blob)[2]["groups"]
    return Case("packed", blob, read_tensors, canonical(tensors.items()))


def folder_case(rng: np.random.Generator, tmp: Path) -> Case:
    st = pytest.importorskip("safetensors.numpy")
    folder = tmp / "model"
    folder.mkdir()
    st.save_file({"a": _weights(rng, 200, np.float32), "b": np.arange(12, dtype=np.int64)},
                 str(folder / "model-00001-of-00002.safetensors"))
    st.save_file({"c": _weights(rng, 300, np.float16), "tied": np.arange(12, dtype=np.int64)},
                 str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors", "tied": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    archive = tmp / "model.tzip"
    tz.compress_file(folder, archive, threads=1)
    outputs = tmp / "restored"
    outputs.mkdir()
    counter = iter(range(1 << 30))

    def decode(blob: bytes) -> dict[str, bytes]:
        target = outputs / f"out{next(counter)}"
        try:
            tz.decompress_file(blob, target, threads=1)
            if target.is_file():  # a header that no longer records a folder (checksums recomputed)
                return {"": target.read_bytes()}
            return {p.name: p.read_bytes() for p in sorted(target.iterdir())}
        finally:
            if target.is_file():
                target.unlink()
            shutil.rmtree(target, ignore_errors=True)

    expected = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    return Case("folder-archive", archive.read_bytes(), decode, expected)


def kv_decode(blob: bytes) -> tuple:
    return canonical(zip(("keys", "values"), tz.kv.decompress(blob, threads=1), strict=True))


def kv_cases(rng: np.random.Generator) -> list[Case]:
    shape = (1, 1, 2, 10, 8)
    keys = rng.standard_normal(shape).astype(np.float32)
    values = rng.standard_normal(shape).astype(np.float16)
    cases = []
    for label, options in (("grid", {"step": 0.25, "window": 2}),
                           ("groups", {"levels": 6, "group_size": 4, "outliers": 1, "rank": 1})):
        k, v = (keys, values.astype(np.float32)) if label == "grid" else (keys.astype(np.float16), values)
        cases.append(Case(f"kv-{label}", tz.kv.compress(k, v, threads=1, **options), kv_decode))
    return cases


def embeddings_cases(rng: np.random.Generator) -> list[Case]:
    vectors = (rng.standard_normal((40, 8)) * np.linspace(1, 0.2, 8)).astype(np.float32)

    def decode(blob: bytes) -> tuple:
        collection = tz.embeddings.open(blob, threads=1)
        return canonical([("vectors", collection.decode())])

    return [
        Case("embeddings-lossless", tz.embeddings.compress(vectors.astype(np.float16), mode="lossless"), decode,
             canonical([("vectors", vectors.astype(np.float16))])),
        Case("embeddings-transform", tz.embeddings.compress(vectors, mode="transform", level=0.01, seed=1), decode),
        Case("embeddings-int8", tz.embeddings.compress(vectors, mode="int8", rotation=False), decode),
    ]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Case]]:
    # Thousands of decodes write and remove files and folders: on a RAM disk where there
    # is one (creating and removing a folder costs ~1 ms on a journalling disk, µs there).
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        tmp = Path(tempfile.mkdtemp(prefix="tensorzip-sweep-", dir=shm))
    else:
        tmp = tmp_path_factory.mktemp("sweep")
    try:
        rng = np.random.default_rng(20261209)
        built = [*byte_plane_cases(rng, tmp), *delta_cases(rng, tmp), same_as_case(rng, tmp),
                 folder_case(rng, tmp), *kv_cases(rng), *embeddings_cases(rng), packed_case(rng, tmp)]
        # The writer stores headers zlib-compressed; the sweep works on the same files with
        # their headers stored as plain JSON (which every reader accepts), so damage reaches
        # the JSON parser. One case keeps the compressed header as written.
        compressed = next(c for c in built if c.name == "same_as")
        built.append(Case("header-zlib", compressed.blob, compressed.decode, compressed.expected, compressed.where))
        for case in built:
            if case.name != "header-zlib":
                case.blob = _plain_header(case.blob)
        for case in built:
            got = case.decode(case.blob)
            if case.expected is not None:
                assert got == case.expected, f"{case.name}: the undamaged file does not decode to the original"
            case.expected = got
        yield {case.name: case for case in built}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


CASE_NAMES = ["byte_planes-fp32", "byte_planes-bf16", "byte_planes-fp16", "byte_planes-int8", "byte_planes-bool",
              "narrowed_float", "sparse", "delta-xor", "delta-sub", "same_as", "folder-archive", "kv-grid",
              "kv-groups", "embeddings-lossless", "embeddings-transform", "embeddings-int8", "header-zlib",
              "packed"]


# -- running a sweep -------------------------------------------------------------------------


@dataclass
class Outcome:
    error: BaseException | None
    identical: bool


class Sweep:
    """Decodes damaged copies of one file, with a hang guard around each and the whole."""

    def __init__(self, case: Case):
        self.case = case
        self.slowest = 0.0

    def __enter__(self) -> Sweep:
        faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
        # Forged grid steps and group parameters decode to inf or NaN: numpy may say so.
        self._quiet = np.errstate(all="ignore")
        self._quiet.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._quiet.__exit__(*exc)
        faulthandler.cancel_dump_traceback_later()

    def run(self, damaged: bytes, what: str) -> Outcome:
        started = time.monotonic()
        try:
            got = self.case.decode(damaged)
        except tz.TensorzipError as error:
            outcome = Outcome(error, False)
        except Exception as error:  # noqa: BLE001 - anything else is the finding
            raise AssertionError(f"{self.case.name}, {what}: {type(error).__name__} is not a TensorzipError: "
                                 f"{error}") from error
        else:
            outcome = Outcome(None, got == self.case.expected)
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        assert elapsed < MAX_SECONDS_PER_DECODE, f"{self.case.name}, {what}: one decode took {elapsed:.1f} s"
        return outcome


def flip(blob: bytes, index: int, mask: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= mask
    return bytes(changed)


USEFUL = ("checksum", "truncated", "not a .tzip file", "shorter than", "offset")


def assert_names_the_problem(error: BaseException, case: Case, what: str) -> None:
    message = str(error)
    assert case.where in message, f"{case.name}, {what}: message does not name the input: {message}"
    assert any(word in message for word in USEFUL), f"{case.name}, {what}: message names no problem: {message}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_flip_is_refused_or_harmless(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    undetected = []
    with Sweep(case) as sweep:
        for index in range(len(case.blob)):
            for mask in (0xFF, 0x01) if index % SAMPLE_STEP == 0 else (0xFF,):
                what = f"byte {index} xor {mask:#04x}"
                outcome = sweep.run(flip(case.blob, index, mask), what)
                if outcome.error is not None:
                    assert_names_the_problem(outcome.error, case, what)
                    continue
                assert outcome.identical, f"{name}, {what}: decoded to different data without an error"
                undetected.append(index)
    # Every byte of a .tzip is under a checksum, so none can go unnoticed.
    assert undetected == [], f"{name}: flips at {undetected} were not detected"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_truncation_is_refused(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    with Sweep(case) as sweep:
        for size in range(len(case.blob)):
            outcome = sweep.run(case.blob[:size], f"truncated to {size} bytes")
            assert outcome.error is not None, f"{name}: a file cut to {size} bytes decoded"
            assert_names_the_problem(outcome.error, case, f"truncated to {size} bytes")
            if size >= PREAMBLE_SIZE:
                assert isinstance(outcome.error, tz.TruncatedFileError), (size, outcome.error)


# -- the same damage behind valid checksums --------------------------------------------------


def resigned(blob: bytes, index: int, mask: int) -> bytes | None:
    """``blob`` with byte ``index`` flipped and every checksum made to match again
    (None for a byte of the preamble's own checksum, which cannot be re-signed)."""
    magic, major, minor, flags, offset, length, header_crc, _ = PREAMBLE.unpack_from(blob)
    if index >= PREAMBLE_SIZE - 4 and index < PREAMBLE_SIZE:
        return None
    damaged = bytearray(flip(blob, index, mask))
    if index < PREAMBLE_SIZE:
        return _with_preamble(bytes(damaged[:PREAMBLE_SIZE - 4]), bytes(damaged[PREAMBLE_SIZE:]))
    header = bytes(damaged[offset:])
    if index >= offset:  # in the header
        head = PREAMBLE.pack(magic, major, minor, flags, offset, length, _native.crc32c(header), 0)
        return _with_preamble(head[:-4], bytes(damaged[PREAMBLE_SIZE:]))
    doc = json.loads(zlib.decompress(header) if flags & FLAG_HEADER_ZLIB else header)  # in a chunk: new checksum
    for entry in [*doc["tensors"], *doc.get("groups", [])]:
        for chunk in entry.get("chunks", []):
            if chunk[0] <= index < chunk[0] + chunk[1]:
                chunk[2] = _native.crc32c(bytes(damaged[chunk[0] : chunk[0] + chunk[1]]))
    raw = _dump_header(doc)
    if flags & FLAG_HEADER_ZLIB:
        raw = zlib.compress(raw, 9)
    head = PREAMBLE.pack(magic, major, minor, flags, offset, len(raw), _native.crc32c(raw), 0)
    return _with_preamble(head[:-4], bytes(damaged[PREAMBLE_SIZE:offset]) + raw)


def _plain_header(blob: bytes) -> bytes:
    """``blob`` with its header stored as plain JSON (preamble flag 0)."""
    magic, major, minor, flags, offset, _, _, _ = PREAMBLE.unpack_from(blob)
    raw = _dump_header(split_tzip(blob)[2])
    head = PREAMBLE.pack(magic, major, minor, flags & ~FLAG_HEADER_ZLIB, offset, len(raw), _native.crc32c(raw), 0)
    return _with_preamble(head[:-4], blob[PREAMBLE_SIZE:offset] + raw)


def _dump_header(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _with_preamble(head: bytes, rest: bytes) -> bytes:
    return head + struct.pack("<I", _native.crc32c(head)) + rest


def test_resigning_changes_nothing_but_the_flipped_byte(cases: dict[str, Case]) -> None:
    for case in cases.values():
        fields, _, header = split_tzip(case.blob)
        if not fields["flags"] & FLAG_HEADER_ZLIB:
            assert _dump_header(header) == case.blob[fields["header_offset"]:], case.name
        for index in (0, 12, PREAMBLE_SIZE, fields["header_offset"] - 1, fields["header_offset"] + 5):
            again = resigned(resigned(case.blob, index, 0x01), index, 0x01)  # type: ignore[arg-type]
            assert again == case.blob, (case.name, index)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_damage_behind_valid_checksums_never_escapes(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    counts = {"refused": 0, "identical": 0, "different": 0}
    with Sweep(case) as sweep:
        for index in range(len(case.blob)):
            for mask in (0x01, 0xFF):
                damaged = resigned(case.blob, index, mask)
                if damaged is None:
                    continue
                outcome = sweep.run(damaged, f"byte {index} xor {mask:#04x}, checksums recomputed")
                if outcome.error is not None:
                    assert str(outcome.error), f"{name}: empty error message"
                    counts["refused"] += 1
                else:
                    counts["identical" if outcome.identical else "different"] += 1
    # Most damage is refused (plane directories, tables, rANS final states, shapes, records);
    # raw planes and numbers in the header decode to other values, as they must.
    assert counts["refused"] > counts["identical"], counts
