"""Fuzz the .tzip container reader: bytes -> TzipReader -> every tensor decoded.

Any exception other than a TensorzipError subclass is a finding (atheris reports
it with the input), and so is any ASan/UBSan report from the native core.

Each input is read twice:
1. as it is, checksums verified (what a user's damaged or crafted file meets);
2. with the preamble's, the header's and every chunk's CRC-32C recomputed and
   chunk checksums off, so mutations reach the header parser, the codecs and the
   native chunk decoder instead of stopping at the first checksum.

A structure-aware mutator (``mutate``) keeps most inputs well-formed .tzip
images: it mutates one chunk's bytes (re-tiling the offsets behind it), the
header text, or one value of the header's JSON (interesting numbers, other
dtypes and codecs, same_as links, duplicated or dropped entries, values nested
thousands of lists deep),
then rebuilds the preamble. A quarter of the time it leaves the work to
libFuzzer's own byte-level mutations.

Tensors coded against a base get the golden base they name
(tests/golden/v1_1/base.safetensors or tuned.tzip), opened once.

Run through fuzz/run.sh (which sets up the sanitizers); by hand:
  fuzz/run.sh 60 reader
"""

from __future__ import annotations

import copy
import random
import re
import sys
from pathlib import Path
from typing import Any

import atheris
import numpy as np  # noqa: F401  (imported before instrumentation: numpy itself is not fuzzed)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tzip_image  # noqa: E402

with atheris.instrument_imports(include=["tensorzip"]):
    from tensorzip import _native
    from tensorzip.container import ReadLimits, TzipReader
    from tensorzip.container.bases import BaseCheckpoint
    from tensorzip.container.reader import open_base
    from tensorzip.errors import TensorzipError

tzip_image.checksum = _native.crc32c

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_BASES = ROOT / "tests" / "golden" / "v1_1"
# Small limits keep every input's memory bounded (a 32 KB input may legally
# declare gigabytes within the default expansion limit: that is not a finding).
LIMITS = ReadLimits(max_header_bytes=1 << 20, max_tensor_bytes=16 << 20)
DECODE_BUDGET = 256 << 20  # decoded bytes per input; beyond it the header is checked but nothing decoded

_bases: dict[str, BaseCheckpoint] = {}


def _base_for(name: str) -> BaseCheckpoint:
    if not _bases:
        for file in ("base.safetensors", "tuned.tzip"):
            _bases[file] = open_base(GOLDEN_BASES / file, threads=1)
    return _bases.get(name, _bases["base.safetensors"])


def read_all(data: bytes, verify_checksums: bool, threads: int) -> None:
    """Everything a reader offers on ``data``; only TensorzipError may come out."""
    try:
        reader = TzipReader(data, limits=LIMITS, threads=threads)
        if reader.base_name is not None:
            reader = TzipReader(data, limits=LIMITS, threads=threads, base=_base_for(reader.base_name))
        reader.keys()
        reader.metadata()
        if sum(entry.nbytes for entry in reader.header.tensors.values()) > DECODE_BUDGET:
            return
        for _name, array in reader.iter_tensors(verify_checksums=verify_checksums):
            assert array.flags.c_contiguous
    except TensorzipError:
        pass


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    read_all(data, verify_checksums=True, threads=1)
    fixed = tzip_image.with_fixed_checksums(data)
    read_all(fixed, verify_checksums=False, threads=2)


# -- structure-aware mutation -----------------------------------------------------------

INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 40, 63, 64, 127, 128, 255, 256, 4095, 4096, 4097,
                    8191, 8192, 8193, 65535, 65536, 1 << 20, (1 << 22) - 1, 1 << 22, (1 << 22) + 1, (1 << 31) - 1,
                    1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 53, (1 << 62), (1 << 63) - 1, 1 << 63, 1 << 64,
                    -1, -(1 << 31), -(1 << 63)]
STRINGS = ["bfloat16", "float16", "float32", "float64", "float8_e4m3fn", "float8_e5m2", "int8", "int16", "int32",
           "int64", "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "object", "",
           "tensorzip.byte_planes", "tensorzip.narrowed_float", "tensorzip.sparse", "tensorzip.unknown",
           "xor", "sub", "add", "sha256-128:" + "0" * 32, "base.safetensors", "tuned.tzip", "safetensors",
           "safetensors-folder", "torch", "\ud800", "\x00", "../x", "a" * 300]
DEEP_MARKER = "__tzfuzz_deep_"
DEEP = re.compile(rb'"__tzfuzz_deep_(\d+)__"')
KEYS = ["name", "dtype", "shape", "codec", "chunks", "delta", "same_as", "id", "rotate_bits", "chunk_elements",
        "stored_dtype", "mode", "base_tensor", "base_digest", "metadata", "source", "base", "file", "tensors"]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside ``node`` (dict keys and list indices)."""
    out = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return out
    for key, value in items:
        out.append((*path, key))
        out.extend(_leaves(value, (*path, key)))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _new_value(rng: random.Random, old: Any, doc: dict[str, Any]) -> Any:
    names = [t.get("name") for t in doc["tensors"] if isinstance(t, dict)]
    choice = rng.randrange(10)
    if isinstance(old, int) and not isinstance(old, bool) and choice < 5:
        return rng.choice([old + 1, old - 1, old * 2, old // 2, -old, old ^ (1 << rng.randrange(64)),
                           rng.choice(INTERESTING_INTS)])
    if isinstance(old, str) and choice < 4:
        return rng.choice(STRINGS + [n for n in names if isinstance(n, str)])
    if isinstance(old, list) and choice < 5 and old:
        edited = list(old)
        action = rng.randrange(4)
        if action == 0:
            del edited[rng.randrange(len(edited))]
        elif action == 1:
            edited.insert(rng.randrange(len(edited) + 1), copy.deepcopy(rng.choice(edited)))
        elif action == 2:
            rng.shuffle(edited)
        else:
            edited.append(rng.choice(INTERESTING_INTS))
        return edited
    if choice == 9:  # deep nesting: json.dumps cannot write it, so a marker is replaced in the text
        return f"{DEEP_MARKER}{rng.choice([2, 10, 100, 1000, 3000])}__"
    return rng.choice([rng.choice(INTERESTING_INTS), rng.choice(STRINGS), None, True, False, 0.5, float("nan"),
                       [], {}, [0], [1, 2, 3], {"id": "tensorzip.byte_planes"}])


def _mutate_document(rng: random.Random, doc: dict[str, Any]) -> None:
    tensors = doc["tensors"]
    stored = [t for t in tensors if isinstance(t, dict) and "chunks" in t]
    action = rng.randrange(8)
    if action == 0 and tensors:  # duplicate an entry (same or new name)
        entry = copy.deepcopy(rng.choice(tensors))
        if isinstance(entry, dict) and rng.random() < 0.7:
            entry["name"] = f"{entry.get('name')}#{rng.randrange(100)}"
        tensors.insert(rng.randrange(len(tensors) + 1), entry)
    elif action == 1 and stored:  # a same_as link to some tensor
        target = rng.choice(stored)
        link = {"name": f"alias{rng.randrange(100)}", "dtype": target.get("dtype"), "shape": target.get("shape"),
                "same_as": target.get("name") if rng.random() < 0.8 else rng.choice(STRINGS)}
        for _ in range(rng.choice([1, 1, 2, 50])):
            tensors.insert(rng.randrange(len(tensors) + 1), dict(link, name=f"alias{rng.randrange(10**6)}"))
    elif action == 2 and tensors:  # drop an entry or a key
        entry = rng.choice(tensors)
        if isinstance(entry, dict) and entry and rng.random() < 0.5:
            del entry[rng.choice(list(entry))]
        else:
            tensors.remove(entry)
    elif action == 3 and tensors:  # add a key
        entry = rng.choice(tensors)
        if isinstance(entry, dict):
            entry[rng.choice(KEYS)] = _new_value(rng, None, doc)
    elif action == 4 and stored:  # reshape keeping or not keeping the element count
        entry = rng.choice(stored)
        shape = entry.get("shape")
        if isinstance(shape, list) and all(type(d) is int for d in shape):
            count = 1
            for d in shape:
                count *= d
            entry["shape"] = rng.choice([[count], [1, count], [count, 1], [count + 1], [max(0, count - 1)], [],
                                         [0], [count, 0], shape[::-1]])
    else:  # one value anywhere
        paths = _leaves(doc)
        if paths:
            path = rng.choice(paths)
            parent = _get(doc, path[:-1])
            parent[path[-1]] = _new_value(rng, parent[path[-1]], doc)


def _retile(image: tzip_image.Image, doc: dict[str, Any]) -> None:
    """Chunk offsets back to back from 40 in header order (lengths kept)."""
    offset = tzip_image.PREAMBLE_SIZE
    if not isinstance(doc.get("tensors"), list):
        return
    for entry in doc["tensors"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list):
            continue
        for chunk in entry["chunks"]:
            if isinstance(chunk, list) and len(chunk) == 3 and type(chunk[1]) is int:
                chunk[0] = offset
                offset += max(0, chunk[1])


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    try:
        return _mutate(data, max_size, seed)
    except Exception:  # a bug of the mutator is not a finding: libFuzzer's mutation instead
        return atheris.Mutate(data, max_size)


def _mutate(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    image = tzip_image.Image.split(data)
    doc = image.document() if image is not None else None
    if image is None or doc is None or rng.random() < 0.25:
        return atheris.Mutate(data, max_size)
    action = rng.randrange(10)
    spans = image.chunk_spans(doc)
    if action < 4 and spans:  # one chunk's bytes
        entry, index, start, end = rng.choice(spans)
        old = image.chunk_area[start:end]
        room = max(0, max_size - (len(data) - len(old)) - 64)
        new = atheris.Mutate(old, min(room, max(len(old) * 2, len(old) + 64)))
        image.chunk_area = image.chunk_area[:start] + new + image.chunk_area[end:]
        entry["chunks"][index][1] = len(new)
        _retile(image, doc)
    elif action < 6:  # the header text, as bytes
        image.header = atheris.Mutate(image.header, max(0, max_size - len(image.chunk_area) - 40))
        return image.join()[:max_size]
    else:
        _mutate_document(rng, doc)
        if rng.random() < 0.5:
            _retile(image, doc)
    try:
        image.header = tzip_image.dump_header(doc)
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return atheris.Mutate(data, max_size)
    image.header = DEEP.sub(lambda m: b"[" * int(m[1]) + b"0" + b"]" * int(m[1]), image.header)
    return tzip_image.with_fixed_checksums(image.join())[:max_size]


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
