"""Shared helpers for the tensorzip test suite.

Everything compares bytes, never values: a lossless codec must give back every
NaN payload, every -0.0 and every padding bit exactly.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import _native, dtypes
from tensorzip.container import TzipWriter
from tensorzip.container.format import FLAG_HEADER_ZLIB, PREAMBLE_SIZE, Preamble

ALL_DTYPES: tuple[str, ...] = tuple(tz.SUPPORTED_DTYPES)


def np_dtype(name: str) -> np.dtype:
    """The numpy dtype of a tensorzip dtype name."""
    return dtypes.by_name(name).numpy_dtype


def random_bits(rng: np.random.Generator, dtype: np.dtype | str, shape: tuple[int, ...]) -> np.ndarray:
    """Uniformly random bit patterns (NaN payloads, -0.0, inf, denormals, bools that are not 0/1)."""
    dtype = np_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def low_entropy(rng: np.random.Generator, dtype: np.dtype | str, shape: tuple[int, ...]) -> np.ndarray:
    """Data shaped like trained weights: small normal floats, small integers, sparse bools."""
    dtype = np_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.1
    if dtype.kind in "iu":
        return (rng.geometric(0.3, size=shape) % 100).astype(dtype)
    # floats, including bfloat16 / float8 (ml_dtypes types report kind "V" or "f")
    return (rng.standard_normal(shape) * 0.02).astype(np.float32).astype(dtype)


def make_data(kind: str, rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "bits":
        return random_bits(rng, dtype, shape)
    if kind == "zeros":
        return np.zeros(shape, dtype=np_dtype(dtype))
    if kind == "low_entropy":
        return low_entropy(rng, dtype, shape)
    raise ValueError(kind)


DATA_KINDS = ("bits", "zeros", "low_entropy")


def to_bytes(array: Any) -> bytes:
    """Raw bytes of a numpy array or a torch tensor (any dtype, bf16 included)."""
    if type(array).__module__.startswith("torch"):
        import torch

        tensor = array.detach().cpu().contiguous()
        width = tensor.element_size()
        carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width]
        if tensor.dtype == torch.bool:
            return tensor.numpy().tobytes()
        return tensor.view(carrier).numpy().tobytes()
    return np.asarray(array).tobytes()


def assert_bit_equal(actual: Any, expected: Any) -> None:
    """Same dtype, same shape, same bytes."""
    assert type(actual).__module__.split(".")[0] == type(expected).__module__.split(".")[0], (
        f"{type(actual)} is not of the kind of {type(expected)}"
    )
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    shapes = tuple(actual.shape), tuple(expected.shape)
    assert shapes[0] == shapes[1], f"shape {shapes[0]} != {shapes[1]}"
    got, want = to_bytes(actual), to_bytes(expected)
    assert len(got) == len(want)
    if got != want:
        first = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise AssertionError(f"bytes differ, first at byte {first}: {got[first]:#04x} != {want[first]:#04x}")


# -- crafting .tzip images ----------------------------------------------------------

_PREAMBLE = struct.Struct("<8sHHIQQII")


def split_tzip(blob: bytes) -> tuple[dict[str, int], bytes, dict[str, Any]]:
    """(preamble fields, data area, header document) of a well-formed .tzip image."""
    magic, major, minor, flags, offset, length, header_crc, crc = _PREAMBLE.unpack(blob[:PREAMBLE_SIZE])
    fields = dict(major=major, minor=minor, flags=flags, header_offset=offset, header_length=length,
                  header_crc32c=header_crc, preamble_crc32c=crc)
    stored = blob[offset : offset + length]
    text = zlib.decompress(stored) if flags & FLAG_HEADER_ZLIB else stored
    fields["header_bytes"] = len(text)  # what ReadLimits.max_header_bytes bounds (inflated)
    header = json.loads(text.decode("utf-8"))
    return fields, blob[PREAMBLE_SIZE:offset], header


def build_tzip(data: bytes, header: dict[str, Any] | bytes, *, major: int = 1, minor: int = 0,
               flags: int = 0) -> bytes:
    """A .tzip image from a data area and a header, with every checksum correct."""
    raw = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode("utf-8")
    offset = PREAMBLE_SIZE + len(data)
    preamble = Preamble(offset, len(raw), _native.crc32c(raw), major=major, minor=minor, flags=flags).pack()
    return preamble + data + raw


def plain_header(blob: bytes) -> bytes:
    """``blob`` with its header stored as plain JSON (compact, as the writer dumps it;
    preamble flag 0), every other byte as it was."""
    fields, data, header = split_tzip(blob)
    if not fields["flags"] & FLAG_HEADER_ZLIB:
        return blob
    raw = zlib.decompress(blob[fields["header_offset"]:])
    preamble = Preamble(fields["header_offset"], len(raw), _native.crc32c(raw), major=fields["major"],
                        minor=fields["minor"], flags=fields["flags"] & ~FLAG_HEADER_ZLIB).pack()
    return preamble + data + raw


def rewrite_header(blob: bytes, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    """Apply ``edit`` to the parsed header (in place or by returning a new one), re-checksum."""
    fields, data, header = split_tzip(blob)
    result = edit(header)
    return build_tzip(data, header if result is None else result, major=fields["major"], minor=fields["minor"])


def flip(blob: bytes, index: int, mask: int = 0xFF) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= mask
    return bytes(changed)


def chunk_modes(chunk: bytes) -> list[int]:
    """Plane modes from a chunk's directory (0 raw, 1 constant, 2 rANS)."""
    width = chunk[0]
    return [chunk[1 + 5 * k] for k in range(width)]


def golden_arrays(folder: Path, file_name: str) -> dict[str, np.ndarray]:
    """The decoded bytes (uint8) of each tensor of golden file ``file_name``, as its folder's
    ``expected.npz`` holds them under ``FILE/TENSOR``."""
    with np.load(folder / "expected.npz") as arrays:
        return {key.split("/", 1)[1]: arrays[key] for key in arrays.files if key.startswith(f"{file_name}/")}


def assert_decodes_to_golden(back: dict[str, Any], folder: Path, file_name: str) -> None:
    """``back`` (tensors decoded from golden ``file_name``) is exactly what was recorded, every byte."""
    expected = golden_arrays(folder, file_name)
    assert set(back) == set(expected)
    for name, array in back.items():
        assert np.array_equal(np.ascontiguousarray(array).reshape(-1).view(np.uint8), expected[name]), name


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id, so every test is reproducible on its own."""
    seed = _native.crc32c(request.node.nodeid.encode("utf-8"))
    return np.random.default_rng(seed)


def write_alone(path: Path, tensors: dict[str, np.ndarray], **options: Any) -> Path:
    """A .tzip with each tensor coded alone (``TzipWriter.add``), where ``tz.save_file`` would
    code tensors of 64 KiB or less together in groups: for tests that edit a tensor's own
    codec or chunks."""
    with TzipWriter(path, **options) as writer:
        for name, array in tensors.items():
            writer.add(name, array)
    return path


@pytest.fixture
def small_tzip(tmp_path: Path) -> Path:
    """A small two-tensor file (one rANS-coded, one raw) with metadata, each tensor coded
    alone (``TzipWriter.add``; ``save_file`` codes tensors this small together in a group,
    see ``packed_tzip``)."""
    generator = np.random.default_rng(1234)
    path = tmp_path / "small.tzip"
    with TzipWriter(path, metadata={"step": "7"}) as writer:
        writer.add("weight", low_entropy(generator, "float32", (8, 16)))
        writer.add("noise", random_bits(generator, "uint8", (40,)))
    return path


@pytest.fixture
def packed_tzip(tmp_path: Path) -> Path:
    """Small tensors as save_file writes them: coded together in groups (one per dtype and
    magnitude band), with one tensor large enough to be coded alone."""
    generator = np.random.default_rng(4321)
    path = tmp_path / "packed.tzip"
    tensors = {f"layer{i}.bias": (generator.standard_normal(64) * 0.02).astype(np.float32) for i in range(6)}
    tensors.update({f"layer{i}.norm": (1 + generator.standard_normal(64) * 0.01).astype(np.float32) for i in range(6)})
    tensors["embed"] = low_entropy(generator, "float32", (160, 128))
    tensors["mask"] = random_bits(generator, "uint8", (40,))
    tz.save_file(tensors, path, metadata={"step": "8"})
    return path


@pytest.fixture(autouse=True, scope="session")
def pin_cache_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Remembered base pins go to a folder of this run, not the user's cache."""
    from tensorzip.container import pin_cache

    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pin_cache, "default_cache_dir", lambda: folder)
        yield folder
