"""Write the seed corpora (run once with any tensorzip install; the outputs are committed).

    python fuzz/make_corpus.py

fuzz/corpus/reader/: the golden files (tests/golden/*.tzip, v1_1/*.tzip,
kv_v1/*.tzip, tensor_reference_v1/*.tzip: in-file references) and small generated files
of every codec and feature: byte_planes
(rANS, raw and constant planes, many chunks), narrowed_float (fp32 -> fp16,
fp64 -> fp32), sparse, deltas xor and sub against tests/golden/v1_1/base.safetensors
(the base fuzz_reader.py hands them), same_as, metadata and empty / 0-d tensors.

fuzz/corpus/native/: a few inputs for fuzz_native.py, one or more per operation
(the first byte picks it), the rest random or taken from real encoded chunks.

Existing files are overwritten (the writer is deterministic); nothing is deleted.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import ml_dtypes
import numpy as np

import tensorzip as tz
from tensorzip import _native, dtypes
from tensorzip.codecs import BytePlanesCodec, NarrowedFloatCodec, SparseCodec
from tensorzip.codecs.residual import Delta, codec_for, digest, residual
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.container.reader import open_base

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
GOLDEN = ROOT / "tests" / "golden"
READER = FUZZ / "corpus" / "reader"
NATIVE = FUZZ / "corpus" / "native"


def _image(tensors, *, metadata=None, base=None, shared=()) -> bytes:
    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=metadata, base=base) as writer:
        for name, array, codec, delta in tensors:
            writer.add(name, array, codec, delta)
        for name, target in shared:
            writer.add_shared(name, target)
    return buffer.getvalue()


def reader_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(20261124)
    weights = (rng.standard_normal(600) * 0.02).astype(np.float32)
    seeds = {
        "gen_planes_f32.tzip": _image([("w", weights, None, None)]),
        "gen_planes_bf16_chunks.tzip": _image(
            [("w", weights.astype(ml_dtypes.bfloat16), BytePlanesCodec(rotate_bits=1, chunk_elements=64), None)]),
        "gen_planes_mixed.tzip": _image([
            ("ids", np.arange(300, dtype=np.int64), None, None),
            ("noise", rng.integers(0, 256, 257, dtype=np.uint8), None, None),
            ("zeros", np.zeros(100, np.float16), None, None),
            ("mask", rng.random(70) < 0.2, None, None),
            ("scalar", np.array(3.5, np.float64), None, None),
            ("empty", np.zeros((0, 4), np.int32), None, None),
            ("f8", rng.integers(0, 256, 50, dtype=np.uint8).view(ml_dtypes.float8_e5m2), None, None),
        ], metadata={"format": "pt", "note": "fuzz"}),
        "gen_narrowed.tzip": _image([
            ("f32_as_f16", weights.astype(np.float16).astype(np.float32), NarrowedFloatCodec("float16", 1, 128),
             None),
            ("f64_as_f32", weights[:100].astype(np.float64), NarrowedFloatCodec("float32", 1, 512), None),
        ]),
        "gen_sparse.tzip": _image([
            ("pruned", np.where(rng.random(500) < 0.7, 0, weights[:500]).astype(np.float32),
             SparseCodec(rotate_bits=1, chunk_elements=128), None),
            ("all_zero", np.zeros(40, np.int16), SparseCodec(chunk_elements=16), None),
        ]),
        "gen_same_as.tzip": _image([("a", weights[:64], None, None)], shared=[("b", "a"), ("c", "a")]),
        "gen_single_array.tzip": tz.compress(np.arange(24, dtype=np.uint16).reshape(2, 3, 4)),
    }
    # Deltas against the golden base, which the reader harness passes to every file.
    base_path = GOLDEN / "v1_1" / "base.safetensors"
    with open_base(base_path) as base:
        tensors = []
        for name, mode in (("w.f32", "sub"), ("w.bf16", "xor"), ("ids.i64", "sub"), ("w.f32", "xor")):
            other = base.tensor(name)
            spec = dtypes.by_numpy(other.dtype)
            changed = other.copy()
            changed.reshape(-1).view(np.uint8)[::7] ^= 1
            stored = residual(changed, other, mode, spec)
            tensors.append((f"{name}.{mode}", stored, codec_for(mode, stored, spec), Delta(mode, name, digest(other))))
        seeds["gen_delta.tzip"] = _image(tensors, base={"file": base_path.name}, shared=[("tied", "w.f32.sub")])
    return seeds


def native_seeds() -> dict[str, bytes]:
    """fuzz_native.py reads its first byte as the operation (modulo the count)."""
    rng = np.random.default_rng(7)
    floats = (rng.standard_normal(512) * 0.02).astype(np.float32)
    (chunks, _, _, _), = _native.encode_tensors([(floats.view(np.uint8), 4, 1, 128)], 1)
    chunk = bytes(chunks[0])
    seeds = {}
    for op in range(8):
        seeds[f"op{op}_random"] = bytes([op]) + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        seeds[f"op{op}_chunk"] = bytes([op]) + bytes(range(16)) + chunk[:1500]
        seeds[f"op{op}_low_entropy"] = bytes([op]) + (rng.geometric(0.4, 400) % 7).astype(np.uint8).tobytes()
    return seeds


def _check_reads(blob: bytes) -> None:
    """A seed must decode completely with the base the reader harness gives it."""
    with open_base(GOLDEN / "v1_1" / "base.safetensors") as base, TzipReader(blob, base=base) as reader:
        for _ in reader.iter_tensors():
            pass


def main() -> int:
    READER.mkdir(parents=True, exist_ok=True)
    NATIVE.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.tzip", "v1_1/*.tzip", "kv_v1/*.tzip", "tensor_reference_v1/*.tzip"):
        for path in sorted(GOLDEN.glob(pattern)):
            prefix = "golden_" + (path.parent.name + "_" if path.parent != GOLDEN else "")
            shutil.copyfile(path, READER / f"{prefix}{path.name}")
    for name, blob in reader_seeds().items():
        (READER / name).write_bytes(blob)
        _check_reads(blob)
    for name, blob in native_seeds().items():
        (NATIVE / name).write_bytes(blob)
    files = [p for p in (FUZZ / "corpus").rglob("*") if p.is_file()]
    sys.stdout.write(f"corpus: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
