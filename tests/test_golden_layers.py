"""Files of every lossy layer format version (KV caches, embedding collections, lossy
weights) stay readable, to the byte, by the current code.

The golden files under ``tests/golden/<layer>_v<N>/`` were written once by the code of
their time (``kv_v2``, ``embeddings_v1`` and ``lossy_v1`` by git tag
``pre-redesign-15``; see each directory's ``make_golden.py``) and are never
regenerated. Everything here goes through the public API (``tz.kv``,
``tz.embeddings``, ``tz.lossy``) and reads each file's record from the .tzip
metadata, so the tests survive the layers' modules moving. Each generator rebuilds
its inputs from fixed seeds; the bounds and targets a file was made for are checked
again against them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.container import TzipReader
from tensorzip.kv.attention import attention_output

GOLDEN = Path(__file__).parent / "golden"
# Layer -> the metadata key of its record (docs/format.md); the golden directories are <layer>_v<format>.
LAYERS = {"kv": "tensorzip.kv", "embeddings": "tensorzip.embeddings", "lossy": "tensorzip.lossy"}


def _record(blob: bytes, layer: str) -> dict:
    with TzipReader(blob) as reader:
        return json.loads((reader.metadata() or {})[LAYERS[layer]])


def _generator(directory: str) -> ModuleType:
    """A golden directory's make_golden.py, under a name of its own (every directory's
    script is called make_golden)."""
    path = GOLDEN / directory / "make_golden.py"
    spec = importlib.util.spec_from_file_location(f"golden_{directory}_make_golden", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(directory: str) -> list[str]:
    return sorted(path.stem for path in (GOLDEN / directory).glob("*.tzip"))


def _golden_directories() -> list[tuple[str, int, Path]]:
    found = []
    for path in sorted(GOLDEN.iterdir()):
        match = re.fullmatch(r"([a-z]+)_v(\d+)", path.name)
        if path.is_dir() and match:
            found.append((match.group(1), int(match.group(2)), path))
    return found


# --- every layer format version has golden files -------------------------------------------------


def _written_versions(tmp_path: Path) -> dict[str, int]:
    """Each layer's format version as the current code writes it, read back from the
    record of a tiny file written through the public API (the highest over a few modes)."""
    rng = np.random.default_rng(0)
    keys, values = rng.standard_normal((2, 2, 1, 2, 5, 4)).astype(np.float32)
    kv = [tz.kv.compress(keys, values, step=0.5), tz.kv.compress(keys, values, levels=4, group_size=4)]
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    embeddings = [tz.embeddings.compress(vectors, mode="lossless"), tz.embeddings.compress(vectors, mode="int8")]
    source = tmp_path / "tiny.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [32, 32], "data_offsets": [0, 4096]}}).encode()
    header += b" " * (-len(header) % 8)
    source.write_bytes(struct.pack("<Q", len(header)) + header + rng.standard_normal((32, 32)).astype("<f4").tobytes())
    tz.lossy.compress_file(source, tmp_path / "tiny.tzip", budget=1.0)
    lossy = [(tmp_path / "tiny.tzip").read_bytes()]
    return {layer: max(_record(blob, layer)["format"] for blob in blobs)
            for layer, blobs in (("kv", kv), ("embeddings", embeddings), ("lossy", lossy))}


def test_every_layer_format_version_has_golden_files(tmp_path):
    """A new format version of a layer needs a golden directory written by the code that
    introduced it (a copy of the previous version's make_golden.py), before old versions'
    writers are gone; so do the versions before it."""
    written = _written_versions(tmp_path)
    assert set(written) == set(LAYERS)
    missing = [f"{layer}_v{version}" for layer, current in written.items() for version in range(1, current + 1)
               if not list((GOLDEN / f"{layer}_v{version}").glob("*.tzip"))]
    assert not missing, f"layer format versions without golden .tzip files: {missing}"
    beyond = [path.name for layer, version, path in _golden_directories() if version > written.get(layer, 0)]
    assert not beyond, f"golden directories for layers or versions the code does not write: {beyond}"


def test_no_layer_without_golden_files():
    """Every layer record key the format declares (container/records.py) is one the golden
    files cover: a fourth layer cannot ship without golden files."""
    from tensorzip.container.records import LAYER_KEYS

    missing = set(LAYER_KEYS) - set(LAYERS.values())
    assert set(LAYER_KEYS) == set(LAYERS.values()), f"layers without golden files: {missing}"


@pytest.mark.parametrize("layer,version,directory", _golden_directories(),
                         ids=[path.name for _, _, path in _golden_directories()])
def test_golden_files_record_their_format(layer, version, directory):
    names = sorted(directory.glob("*.tzip"))
    assert names and (directory / "make_golden.py").exists()
    for path in names:
        assert _record(path.read_bytes(), layer)["format"] == version, path.name


# --- KV record format 2 ---------------------------------------------------------------------------

KV2 = "kv_v2"
KV2_2 = "kv_v2_2"  # the same cases, written with headers stored compressed (session 5)


@pytest.mark.parametrize("directory", [KV2, KV2_2])
def test_kv_format_2_golden_files_are_all_there(directory):
    assert _names(directory) == sorted(_generator(directory).CASES)


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (KV2, KV2_2) for n in _names(d)])
def test_kv_format_2_files_decode_as_written(directory, name):
    blob = (GOLDEN / directory / f"{name}.tzip").read_bytes()
    decoded = tz.kv.decompress(blob)
    with np.load(GOLDEN / directory / "expected.npz") as expected:
        for part, array in zip(("keys", "values"), decoded, strict=True):
            want = expected[f"{name}.{part}"]
            assert array.dtype.name == str(expected[f"{name}.{part}.dtype"])
            assert array.shape == want.shape
            assert np.ascontiguousarray(array).tobytes() == want.tobytes()


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (KV2, KV2_2) for n in _names(d)])
def test_kv_format_2_files_meet_what_they_were_made_for(directory, name):
    generator = _generator(directory)
    keys, values, options = generator.arguments(name)
    blob = (GOLDEN / directory / f"{name}.tzip").read_bytes()
    record = _record(blob, "kv")
    decoded = tz.kv.decompress(blob)
    assert record["quantizer"] == ("groups" if "levels" in options else "grid")
    assert record["shape"] == list(keys.shape) and record["dtype"] == keys.dtype.name
    if "bits" in options:
        assert 8 * len(blob) <= options["bits"] * (keys.size + values.size)
    if "max_abs_error" in options:
        for original, restored in zip((keys, values), decoded, strict=True):
            error = np.abs(restored.astype(np.float32) - original.astype(np.float32)).max()
            assert error <= options["max_abs_error"]
    if "queries" in options:
        exact = attention_output(options["queries"], keys, values)
        error = float(np.linalg.norm(exact - attention_output(options["queries"], *decoded)) / np.linalg.norm(exact))
        assert error == pytest.approx(record["attention"]["relative_error"], rel=1e-5)
        if "max_rel_error" in options:
            assert error <= options["max_rel_error"]
    window = min(options.get("window", 0), keys.shape[3])
    for original, restored in zip((keys, values), decoded, strict=True):  # the exact window is exact
        cut = keys.shape[3] - window
        assert restored[:, :, :, cut:].tobytes() == original[:, :, :, cut:].tobytes()


# --- embedding collections format 1 ---------------------------------------------------------------

EMB1 = "embeddings_v1"
EMB1_2 = "embeddings_v1_2"  # the same cases, written by the solver that meets targets with confidence


@pytest.mark.parametrize("directory", [EMB1, EMB1_2])
def test_embeddings_format_1_golden_files_are_all_there(directory):
    assert _names(directory) == sorted(_generator(directory).CASES)


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (EMB1, EMB1_2) for n in _names(d)])
def test_embeddings_format_1_files_decode_as_written(directory, name):
    blob = (GOLDEN / directory / f"{name}.tzip").read_bytes()
    collection = tz.embeddings.open(blob)
    decoded = collection.decode()
    with np.load(GOLDEN / directory / "expected.npz") as expected:
        want = expected[name]
    assert decoded.dtype == want.dtype and decoded.shape == want.shape
    if np.ascontiguousarray(decoded).tobytes() != want.tobytes():
        # Collections coded in a rotated basis decode through a float32 matrix product, whose last bits
        # depend on the BLAS kernel the machine picks (measured: int4, 33% of elements 1 ulp apart,
        # 1.6e-7 at most, between two CPUs with the same numpy): the integers and steps decode exactly,
        # the product to within float32 rounding.
        assert _record(blob, "embeddings").get("rotation") and name != "lossless", name
        np.testing.assert_allclose(decoded, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max()))
    record = _record(blob, "embeddings")
    assert (collection.count, collection.dim) == want.shape == (record["count"], record["dim"])
    assert collection.recall == record["recall_at_k"]
    # Search goes block by block over the stored code: the same top-k as over the decoded vectors.
    queries = want[:4].astype(np.float32)
    _, rows = collection.search(queries, k=3)
    assert rows.tolist() == _top_k(queries, want.astype(np.float32), 3, record["metric"]).tolist()


def _top_k(queries: np.ndarray, vectors: np.ndarray, k: int, metric: str,
           exclude: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k best scores (ties to the lower row), float32 like the stored recall measurement."""
    dots = queries @ vectors.T
    if metric == "ip":
        scores = dots
    else:
        scores = (2.0 * dots - np.einsum("ij,ij->i", vectors, vectors)[None, :]
                  - np.einsum("ij,ij->i", queries, queries)[:, None])
    scores = scores.astype(np.float32)
    if exclude is not None:
        scores[np.arange(len(queries)), exclude] = -np.inf
    rows = np.broadcast_to(np.arange(len(vectors)), scores.shape)
    return np.lexsort((rows, -scores), axis=1)[:, :k]


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (EMB1, EMB1_2) for n in _names(d)])
def test_embeddings_format_1_files_meet_what_they_were_made_for(directory, name):
    generator = _generator(directory)
    vectors, options = generator.arguments(name)
    blob = (GOLDEN / directory / f"{name}.tzip").read_bytes()
    record = _record(blob, "embeddings")
    decoded = tz.embeddings.open(blob).decode()
    assert record["dtype"] == vectors.dtype.name and record["mode"] == options.get("mode", "transform")
    if record["mode"] == "lossless":
        assert decoded.tobytes() == vectors.tobytes()
        return
    if record["unit_norm"]:
        assert np.allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
    # recall@k of the decoded collection, measured as the writer did: on the given queries,
    # or with every row held out as a query (each excluded from its own results).
    x = vectors.astype(np.float32)
    k, metric = record["k"], record["metric"]
    if "queries" in options:
        assert record["recall_measured_on"] == "given queries"
        queries, exclude = options["queries"], None
    else:
        assert record["recall_measured_on"] == "held-out rows" and record["recall_queries"] == len(x)
        queries, exclude = x, np.arange(len(x))
    truth = _top_k(queries, x, k, metric, exclude)
    found = _top_k(queries, decoded.astype(np.float32), k, metric, exclude)
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    recall = hits / (len(queries) * k)
    assert recall == pytest.approx(record["recall_at_k"], abs=1e-12)
    if options.get("recall") is not None:
        assert recall >= options["recall"]


# --- lossy weights format 1 -----------------------------------------------------------------------

LOSSY1 = "lossy_v1"
LOSSY1_2 = "lossy_v1_2"  # the same cases, written with headers stored compressed (session 5)


def _safetensors(raw: bytes) -> tuple[bytes, dict[str, tuple[str, list[int], bytes]]]:
    """(header text, name -> (dtype, shape, data bytes)) of a .safetensors file."""
    (length,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + length]
    data = raw[8 + length :]
    tensors = {}
    for name, info in json.loads(header).items():
        if name != "__metadata__":
            begin, end = info["data_offsets"]
            tensors[name] = (info["dtype"], info["shape"], data[begin:end])
    return header, tensors


@pytest.mark.parametrize("directory", [LOSSY1, LOSSY1_2])
def test_lossy_format_1_golden_files_are_all_there(directory):
    names = _names(directory)
    assert names == sorted(_generator(directory).CASES)
    assert sorted(path.stem for path in (GOLDEN / directory).glob("*.safetensors")) == names


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (LOSSY1, LOSSY1_2) for n in _names(d)])
def test_lossy_format_1_files_decode_as_written(directory, name, tmp_path):
    path = GOLDEN / directory / f"{name}.tzip"
    expected = (GOLDEN / directory / f"{name}.safetensors").read_bytes()
    written = tz.lossy.decompress_file(path, tmp_path / "decoded.safetensors")
    assert (tmp_path / "decoded.safetensors").read_bytes() == expected
    assert written.output_bytes == len(expected)
    _, want = _safetensors(expected)
    loaded = tz.lossy.load_file(path)
    assert sorted(loaded) == sorted(want)
    dtypes = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "BOOL": "bool"}
    for tensor, (dtype, shape, data) in want.items():
        assert loaded[tensor].dtype.name == dtypes[dtype] and list(loaded[tensor].shape) == shape
        assert np.ascontiguousarray(loaded[tensor]).tobytes() == data
    assert tz.lossy.load_file(path.read_bytes()).keys() == loaded.keys()


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d in (LOSSY1, LOSSY1_2) for n in _names(d)])
def test_lossy_format_1_files_meet_what_they_were_made_for(directory, name):
    generator = _generator(directory)
    options = generator.arguments(name)
    tensors = generator.checkpoint()
    source = generator.safetensors_bytes(tensors)
    path = GOLDEN / directory / f"{name}.tzip"
    size = path.stat().st_size
    record = _record(path.read_bytes(), "lossy")
    if "budget" in options:
        assert size <= options["budget"] * len(source)
    else:
        assert 8 * size <= options["bits_per_weight"] * sum(a.size for a in tensors.values())
    header, _ = _safetensors(source)
    assert record["source"]["header"] == header.decode()  # the header goes back verbatim
    loaded = tz.lossy.load_file(path)
    for tensor, original in tensors.items():
        info, restored = record["tensors"][tensor], loaded[tensor]
        quantized = original.ndim == 2 and min(original.shape) >= 16
        assert info["mode"] == ("grid" if quantized else "exact")
        if not quantized:
            assert restored.tobytes() == original.tobytes()
            continue
        a, b = original.astype(np.float64), restored.astype(np.float64)
        assert info["relative_rms_error"] == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(a), rel=1e-9)
        assert info["max_abs_error"] == pytest.approx(np.abs(a - b).max(), rel=1e-9)
        assert 0 < info["relative_rms_error"] < 1
    assert math.isfinite(record["delta"]) and record["delta"] > 0

