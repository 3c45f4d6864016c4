"""Every instruction-set path of the native kernels (rANS: AVX-512, AVX2, scalar;
CRC-32C: SSE4.2, portable; embedding scores: AVX2, portable) must read and write the same
bytes. The machine running the tests usually has only some of them natively in use, so
each path runs in a subprocess with TENSORZIP_SIMD capping what the core may use."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

# Encodes a mix of dtypes and sizes (multi-chunk, odd tails, pairs of chunks),
# decodes it, checks every byte, and prints a digest of the encoded bytes.
SCRIPT = textwrap.dedent(
    """
    import hashlib, io
    import ml_dtypes, numpy as np
    from tensorzip.codecs import BytePlanesCodec
    from tensorzip.container import TzipReader, TzipWriter

    rng = np.random.default_rng(11)
    arrays = {
        "bf16": (rng.standard_normal(70_001) * 0.02).astype(ml_dtypes.bfloat16),
        "f16": (rng.standard_normal((333, 77)) * 0.1).astype(np.float16),
        "f32": (rng.standard_normal(50_000) * 3).astype(np.float32),
        "i64": rng.integers(0, 1000, 9_999).astype(np.int64),
        "bytes": rng.integers(0, 256, 30_000).astype(np.uint8),
    }
    buffer = io.BytesIO()
    with TzipWriter(buffer) as writer:
        for name, array in arrays.items():
            spec_rotate = 1 if array.dtype.kind in "fV" else 0
            writer.add(name, array, codec=BytePlanesCodec(spec_rotate, chunk_elements=4_099))
    blob = buffer.getvalue()
    reader = TzipReader(blob, threads=2)
    for name, array in arrays.items():
        assert reader.get_tensor(name).tobytes() == array.tobytes(), name
    # Embedding scores from stored integers: every path must give the same floats.
    from tensorzip import _native
    scores = hashlib.sha256()
    for width, dims, count in ((1, 37, 5_001), (2, 9, 4_099)):
        symbols = rng.integers(0, 256 ** width - 1, (dims, count)).astype(np.uint8 if width == 1 else np.uint16)
        weights = rng.standard_normal((3, dims)).astype(np.float32)
        out = np.empty((3, count - 10), np.float32)
        _native.symbol_scores(symbols, width, dims, count, 3, count - 7, weights, 3, out, 2)
        scores.update(out.tobytes())
    # The packed rows of an open collection (every width 0-16): the same symbols and scores.
    from tensorzip.embeddings.packed_symbols import PackedSymbols
    limits = np.array([0, *[(1 << w) - 1 for w in range(1, 17)]] * 2)
    symbols = (rng.random((34, 3_001)) * (limits[:, None] + 1)).astype(np.uint16)
    packed = PackedSymbols(symbols)
    assert np.array_equal(packed.rows(0, 3_001), symbols)
    assert np.array_equal(packed.rows(13, 2_999), symbols[:, 13:2_999])
    weights = rng.standard_normal((2, 34)).astype(np.float32)
    out = np.empty((2, 2_990), np.float32)
    packed.scores(8, 2_998, weights, out, 2)
    plain = np.empty_like(out)
    _native.symbol_scores(symbols, 2, 34, 3_001, 8, 2_998, weights, 2, plain, 2)
    assert out.tobytes() == plain.tobytes()
    scores.update(out.tobytes())
    # The embedding solver's quantizer: the same codes on every path (blocks of 8 x 8 and edges).
    from tensorzip.quantization import quantize_columns
    coordinates = (rng.standard_normal((1_003, 45)) * 7).astype(np.float32)
    scores.update(quantize_columns(coordinates, rng.uniform(0.01, 1.0, 29).astype(np.float32)).tobytes())
    print(hashlib.sha256(blob).hexdigest() + scores.hexdigest())
    """
)


def run_with(cap: str | None) -> str:
    env = dict(os.environ)
    env.pop("TENSORZIP_SIMD", None)
    if cap is not None:
        env["TENSORZIP_SIMD"] = cap
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_simd_path_round_trips_and_encodes_identically():
    digests = {cap: run_with(cap) for cap in (None, "avx2", "scalar")}
    assert len(set(digests.values())) == 1, digests
    assert len(hashlib.sha256().hexdigest()) * 2 == len(digests[None])


@pytest.mark.parametrize("cap", ["avx2", "scalar"])
def test_golden_files_decode_on_every_path(cap):
    env = dict(os.environ, TENSORZIP_SIMD=cap)
    tests = os.path.dirname(__file__)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(tests, "test_golden.py")],
        env=env, capture_output=True, text=True, check=False, cwd=os.path.dirname(tests),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def native_paths(cap: str | None) -> dict[str, str]:
    """_native.simd_paths() in a fresh process (TENSORZIP_SIMD is read once per process)."""
    env = dict(os.environ)
    env.pop("TENSORZIP_SIMD", None)
    if cap is not None:
        env["TENSORZIP_SIMD"] = cap
    script = "import json; from tensorzip import _native; print(json.dumps(_native.simd_paths()))"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_scalar_switch_puts_every_kernel_on_its_portable_path():
    # CRC-32C included: without this, its table path never ran on x86 CI machines.
    assert native_paths("scalar") == {"rans_encode": "scalar", "rans_decode": "scalar", "crc32c": "portable",
                                      "symbol_scores": "portable", "grid_columns": "portable"}


def test_avx2_switch_caps_only_what_is_above_avx2():
    default, avx2 = native_paths(None), native_paths("avx2")
    assert set(default) == {"rans_encode", "rans_decode", "crc32c", "symbol_scores", "grid_columns"}
    assert default["rans_encode"] in {"avx2", "scalar"}
    assert default["rans_decode"] in {"avx512", "avx2", "scalar"}
    assert default["crc32c"] in {"avx512-clmul", "sse4.2", "portable"}
    # avx2 rules out AVX-512 only: the encoder (AVX2 at best) keeps its path, CRC its SSE4.2 one.
    assert avx2["rans_encode"] == default["rans_encode"]
    assert avx2["crc32c"] == ("sse4.2" if default["crc32c"] == "avx512-clmul" else default["crc32c"])
    assert avx2["symbol_scores"] == default["symbol_scores"] in {"avx2", "portable"}
    assert avx2["grid_columns"] == default["grid_columns"] in {"avx2", "portable"}
    assert avx2["rans_decode"] == ("avx2" if default["rans_decode"] == "avx512" else default["rans_decode"])
