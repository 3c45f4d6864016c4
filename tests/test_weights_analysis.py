"""The checkpoint half of ``tensorzip analyze``, each measure checked against a separate
computation of the same definition on data whose answer is known: byte-plane
entropies, special-value counts, exponent histograms, hidden narrow floats, row
sampling, and achieved sizes that match what ``compress_file`` really writes."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip import dtypes
from tensorzip.analysis import entropy
from tensorzip.analysis.weights import (
    FLOAT_LAYOUTS,
    analyze_checkpoint,
    exponent_histogram,
    sample_rows,
    special_values,
    tensor_profile,
)
from tensorzip.container.format import PREAMBLE_SIZE
from tensorzip.errors import InputFileError
from tensorzip.files import compress_file
from tensorzip.inputs.safetensors import SafetensorsFile

from .conftest import split_tzip

safetensors_numpy = pytest.importorskip("safetensors.numpy")

FLOATS = ("float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "float8_e5m2")


def spec_of(array: np.ndarray) -> dtypes.DTypeSpec:
    return dtypes.by_numpy(array.dtype)


# ------------------------------------------------------------------ independent references


def reference_plane_bits(array: np.ndarray) -> list[float]:
    """Order-0 entropy (total bits) of each byte plane, most significant first, floats
    rotated left by one bit: bit matrices and np.unique, not words, shifts and bincount."""
    width = array.dtype.itemsize
    raw = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8).reshape(-1, width)
    bits = np.unpackbits(raw[:, ::-1], axis=1)  # (n, 8 * width), most significant bit first
    if array.dtype.name in FLOATS and width > 1:
        bits = np.roll(bits, -1, axis=1)  # rotate left: the sign moves to the last bit
    planes = np.packbits(bits, axis=1)  # (n, width) bytes, most significant first
    result = []
    for k in range(width):
        _, counts = np.unique(planes[:, k], return_counts=True)
        p = counts / counts.sum()
        result.append(float(-(counts * np.log2(p)).sum()))
    return result


def reference_specials(array: np.ndarray) -> dict[str, int]:
    """Counts from values (np.isnan, np.isinf, |x| < finfo.tiny), not from bit fields."""
    if array.dtype.name not in FLOATS:
        return {"zeros": int(np.count_nonzero(array == 0)), "denormals": 0, "nans": 0, "infs": 0}
    with np.errstate(invalid="ignore"):  # signalling NaNs are quieted, and stay NaNs
        wide = array.astype(np.float64)  # exact for every float dtype here
    tiny = float(ml_dtypes.finfo(array.dtype).tiny)
    finite = np.isfinite(wide)
    return {
        "zeros": int(np.count_nonzero(wide == 0)),
        "denormals": int(np.count_nonzero(finite & (wide != 0) & (np.abs(wide) < tiny))),
        "nans": int(np.count_nonzero(np.isnan(wide))),
        "infs": int(np.count_nonzero(np.isinf(wide))),
    }


def reference_exponents(array: np.ndarray) -> dict[int, int]:
    """IEEE unbiased exponents of normal numbers from np.frexp (whose exponent is one more)."""
    wide = array.astype(np.float64).reshape(-1)
    _, e = np.frexp(wide)
    return {int(k) - 1: int(c) for k, c in zip(*np.unique(e, return_counts=True), strict=True)}


# ------------------------------------------------------------------ byte-plane entropy


def test_plane_bits_of_uniform_bytes_are_eight(rng):
    data = rng.integers(0, 256, size=1 << 20, dtype=np.uint8)
    bits = entropy.plane_bits(data)
    assert len(bits) == 1 and abs(bits[0] / data.size - 8) < 0.01
    profile = tensor_profile("u8", data)
    assert abs(profile["plane_bits"][0] - 8) < 0.01
    assert abs(profile["order0_bits"] - 8) < 0.01  # per element = per byte here
    assert profile["context_bits"] <= profile["order0_bits"] + 1e-9


def test_plane_bits_of_uniform_float32_bits_are_eight(rng):
    data = rng.integers(0, 1 << 32, size=1 << 18, dtype=np.uint32).view(np.float32)  # 1M bytes
    profile = tensor_profile("f32", data)
    assert len(profile["plane_bits"]) == 4
    for plane in profile["plane_bits"]:
        assert abs(plane - 8) < 0.01, profile["plane_bits"]
    assert abs(profile["order0_bits"] / 4 - 8) < 0.01  # bits per byte
    assert profile["context_bits"] <= profile["order0_bits"] + 1e-9


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "uint8", "int64", "float8_e5m2"])
def test_constant_tensor_has_no_information(dtype):
    data = np.full((64, 32), 1.5 if dtype != "uint8" else 7, dtype=dtypes.by_name(dtype).numpy_dtype)
    profile = tensor_profile("c", data)
    assert profile["plane_bits"] == [0.0] * data.dtype.itemsize
    assert profile["order0_bits"] == 0.0 and profile["context_bits"] == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "float8_e4m3fn",
                                   "int16", "int64", "uint32", "bool"])
def test_plane_bits_match_an_independent_computation(rng, dtype):
    np_dtype = dtypes.by_name(dtype).numpy_dtype
    if dtype == "bool":
        data = rng.random((50, 40)) < 0.2
    elif np.dtype(np_dtype).kind in "iu":
        data = (rng.geometric(0.05, size=(50, 40)) - 10).astype(np_dtype)
    else:
        data = (rng.standard_normal((50, 40)) * 0.03).astype(np.float32).astype(np_dtype)
    got = entropy.plane_bits(data)
    want = reference_plane_bits(data)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    # and the per-element figures of the profile are the same numbers over the element count
    profile = tensor_profile("t", data)
    assert profile["plane_bits"] == pytest.approx([w / data.size for w in want], rel=1e-9, abs=1e-12)
    assert profile["order0_bits"] == pytest.approx(sum(want) / data.size, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------ special values


_DENORMAL_BITS = {"float64": [1, (1 << 63) | 12345], "float32": [1, 0x80000005, 0x007FFFFF],
                  "float16": [1, 0x8003, 0x03FF], "bfloat16": [1, 0x8003, 0x007F],
                  "float8_e4m3fn": [0x01, 0x83, 0x07], "float8_e5m2": [0x01, 0x82, 0x03]}
_NAN_BITS = {"float64": [0x7FF8000000000000, 0xFFF0000000000001], "float32": [0x7FC00000, 0xFFC00001, 0x7F800001],
             "float16": [0x7E00, 0xFC01], "bfloat16": [0x7FC0, 0xFF81], "float8_e4m3fn": [0x7F, 0xFF],
             "float8_e5m2": [0x7E, 0xFD, 0x7D]}
_INF_BITS = {"float64": [0x7FF0000000000000, 0xFFF0000000000000], "float32": [0x7F800000, 0xFF800000],
             "float16": [0x7C00, 0xFC00], "bfloat16": [0x7F80, 0xFF80], "float8_e4m3fn": [],
             "float8_e5m2": [0x7C, 0xFC]}


def _with_specials(rng, dtype: str, n: int, zeros: int, denormals: int, nans: int, infs: int) -> np.ndarray:
    """``n`` values: normal numbers plus the given counts of +/-0, denormals, NaNs and infinities."""
    np_dtype = dtypes.by_name(dtype).numpy_dtype
    width = np.dtype(np_dtype).itemsize
    carrier = np.dtype(f"<u{width}")
    normal = rng.uniform(0.5, 4.0, n) * rng.choice([-1.0, 1.0], n)
    words = normal.astype(np.float32).astype(np_dtype).view(carrier).copy()
    sign = 1 << (8 * width - 1)
    specials = ([0, sign] * zeros)[:zeros]
    specials += [_DENORMAL_BITS[dtype][i % 3 % len(_DENORMAL_BITS[dtype])] for i in range(denormals)]
    specials += [_NAN_BITS[dtype][i % len(_NAN_BITS[dtype])] for i in range(nans)]
    if _INF_BITS[dtype]:
        specials += [_INF_BITS[dtype][i % 2] for i in range(infs)]
    where = rng.permutation(n)[: len(specials)]
    words[where] = np.array(specials, dtype=np.uint64).astype(carrier)
    return words.view(np_dtype).reshape(n // 10, 10)


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_of_floats(rng, dtype):
    n = 5000
    data = _with_specials(rng, dtype, n, zeros=37, denormals=11, nans=5, infs=4)
    want = reference_specials(data)
    has_inf = bool(_INF_BITS[dtype])
    assert want == {"zeros": 37, "denormals": 11, "nans": 5, "infs": 4 if has_inf else 0}  # the data is as meant
    got = special_values(data, spec_of(data))
    assert set(got) == {"zeros", "denormals", "nans", "infs"}
    for key, count in want.items():
        assert got[key] == pytest.approx(count / n, abs=1e-12), key
    # and a profile reports the same fractions, from the whole tensor even when it samples
    profile = tensor_profile("t", data, exact_elements=1000)
    assert profile["sampled"]
    assert {k: round(profile[k] * n) for k in want} == want


def test_special_values_of_clean_data_are_zero(rng):
    data = rng.uniform(0.1, 1.0, (30, 30)).astype(np.float32)
    assert special_values(data, spec_of(data)) == {"zeros": 0.0, "denormals": 0.0, "nans": 0.0, "infs": 0.0}


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint16", "uint8", "bool"])
def test_special_values_of_integers_count_zeros_only(rng, dtype):
    np_dtype = dtypes.by_name(dtype).numpy_dtype
    n = 4000
    data = np.ones(n, np_dtype) if dtype == "bool" else rng.integers(1, 100, n).astype(np_dtype)
    data[rng.permutation(n)[:123]] = 0
    got = special_values(data, spec_of(data))
    assert got == {"zeros": pytest.approx(123 / n, abs=1e-12), "denormals": 0.0, "nans": 0.0, "infs": 0.0}
    assert round(got["zeros"] * n) == reference_specials(data)["zeros"]


# ------------------------------------------------------------------ exponent histograms


def _spread(rng, dtype: str, n: int, low: int, high: int) -> np.ndarray:
    """Normal numbers with exponents spread over [low, high]."""
    values = np.ldexp(rng.uniform(1.0, 2.0, n), rng.integers(low, high + 1, n)) * rng.choice([-1.0, 1.0], n)
    return values.astype(np.float32).astype(dtypes.by_name(dtype).numpy_dtype)


@pytest.mark.parametrize(("dtype", "low", "high"), [("float32", -100, 100), ("float16", -14, 14),
                                                    ("bfloat16", -120, 120), ("float8_e4m3fn", -6, 7),
                                                    ("float64", -100, 100)])
def test_exponent_histogram_matches_frexp(rng, dtype, low, high):
    data = _spread(rng, dtype, 20000, low, high)
    assert np.all(np.isfinite(data.astype(np.float64))) and reference_specials(data)["denormals"] == 0
    hist = exponent_histogram(data, spec_of(data))
    assert hist is not None
    assert hist["exponent"] == sorted(hist["exponent"])
    got = dict(zip(hist["exponent"], hist["count"], strict=True))
    want = reference_exponents(data)
    assert got == want
    assert min(want) <= low + 1 and max(want) >= high - 1  # the spread is real (rounding may carry one up)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_zeros_and_denormals_land_in_the_lowest_bin(rng, dtype):
    data = _spread(rng, dtype, 3000, -5, 5).reshape(-1)
    carrier = f"<u{data.dtype.itemsize}"
    words = data.view(carrier)
    words[:7] = 0  # +0
    words[7:9] = 1 << (8 * data.dtype.itemsize - 1)  # -0
    words[9:20] = _DENORMAL_BITS[dtype][0]
    hist = exponent_histogram(data, spec_of(data))
    bias = FLOAT_LAYOUTS[dtype].bias
    assert hist["exponent"][0] == -bias and hist["count"][0] == 20
    normal = dict(zip(hist["exponent"][1:], hist["count"][1:], strict=True))
    assert normal == reference_exponents(data[20:])


@pytest.mark.parametrize("dtype", ["int8", "int64", "uint8", "bool"])
def test_exponent_histogram_is_none_for_integers(dtype):
    data = np.zeros(10, dtypes.by_name(dtype).numpy_dtype)
    assert exponent_histogram(data, spec_of(data)) is None
    assert tensor_profile("i", data)["exponent_histogram"] is None


# ------------------------------------------------------------------ hidden narrow floats


def test_float32_holding_float16_values(rng):
    data = rng.standard_normal((64, 64)).astype(np.float16).astype(np.float32)
    assert tensor_profile("w", data)["hidden"] == "float16"


def test_float32_holding_bfloat16_values(rng):
    """Typical bf16 weights widened: some are below float16's range, so only bfloat16 fits."""
    data = (rng.standard_normal((64, 64)) * 0.02).astype(ml_dtypes.bfloat16).astype(np.float32)
    data[0, :3] = np.array([1e-7, -3e-9, 1e6], np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
    assert tensor_profile("w", data)["hidden"] == "bfloat16"


def test_float64_holding_float32_values(rng):
    data = rng.standard_normal(1000).astype(np.float32).astype(np.float64)
    assert tensor_profile("w", data)["hidden"] == "float32"


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16", "int32"])
def test_plain_tensors_hide_nothing(rng, dtype):
    data = (rng.standard_normal((32, 32)) * 100).astype(dtypes.by_name(dtype).numpy_dtype)
    assert tensor_profile("w", data)["hidden"] is None


# ------------------------------------------------------------------ sampling


def test_sample_rows_keeps_small_tensors_whole(rng):
    data = rng.standard_normal((10, 10)).astype(np.float32)
    assert sample_rows(data, 100) is data


def test_sample_rows_keeps_whole_rows_of_matrices(rng):
    data = np.arange(1000 * 37, dtype=np.int64).reshape(1000, 37)
    sample = sample_rows(data, 1000)
    assert sample.size <= 1000 and sample.shape == (1000 // 37, 37)
    rows = sample[:, 0] // 37
    assert np.all(np.diff(rows) > 0)  # distinct rows, in order
    assert np.array_equal(sample, data[rows])  # whole rows, untouched
    assert np.array_equal(sample_rows(data, 1000), sample)  # deterministic
    assert not np.array_equal(sample_rows(data, 1000, seed=1), sample)
    cube = np.arange(10 * 20 * 30).reshape(10, 20, 30)
    rows3 = sample_rows(cube, 900)
    assert rows3.shape == (30, 30) and np.array_equal(rows3, cube.reshape(-1, 30)[rows3[:, 0] // 30])


@pytest.mark.parametrize(("shape", "limit"), [((100_000,), 1000), ((100_000,), 1001), ((10, 5000), 1000),
                                              ((5000,), 10), ((5000,), 63)])
def test_sample_rows_of_vectors_takes_spread_runs(shape, limit):
    data = np.arange(np.prod(shape), dtype=np.int64).reshape(shape)
    sample = sample_rows(data, limit)
    assert 0 < sample.size <= limit, sample.size
    assert sample.ndim == 1
    assert np.all(np.diff(sample) > 0)  # in order, no element twice
    assert sample[0] == 0 and sample[-1] == data.size - 1  # from the start to the end
    assert np.array_equal(sample_rows(data, limit), sample)


# ------------------------------------------------------------------ whole checkpoints


def _tensors(rng) -> dict[str, np.ndarray]:
    embedding = (rng.standard_normal((200, 48)) * 0.05).astype(np.float32)
    with_zeros = (rng.standard_normal((40, 50)) * 0.02).astype(np.float32)
    with_zeros.reshape(-1)[rng.permutation(2000)[:300]] = 0
    return {
        "embed.weight": embedding,
        "layer.0.weight": (rng.standard_normal((64, 48)) * 0.02).astype(ml_dtypes.bfloat16),
        "layer.0.bias": (rng.standard_normal(64) * 0.01).astype(np.float16),
        "layer.1.weight": with_zeros,
        "layer.1.half": rng.standard_normal((16, 16)).astype(np.float16).astype(np.float32),
        "norm.weight": np.ones(48, np.float32),
        "position_ids": np.arange(128, dtype=np.int64)[None, :],
        "mask": rng.integers(0, 256, 300, dtype=np.uint8),
        "lm_head.weight": embedding.copy(),  # tied: stored once
    }


@pytest.fixture
def checkpoint(tmp_path, rng) -> Path:
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(_tensors(rng), str(path), metadata={"format": "pt"})
    return path


def test_checkpoint_sizes_match_a_real_compression(tmp_path, checkpoint):
    record = analyze_checkpoint(checkpoint)
    assert record["kind"] == "checkpoint" and record["notes"] == []
    tensors = {t["name"]: t for t in record["tensors"]}
    source = SafetensorsFile(checkpoint)
    assert list(tensors) == [e.name for e in source.entries]

    packed = tmp_path / "model.tzip"
    report = compress_file(checkpoint, packed)
    blob = packed.read_bytes()
    summary = record["summary"]
    assert summary["achieved_bytes"] == len(blob) == report.compressed_bytes  # the sink counts a real file
    assert summary["bytes"] == checkpoint.stat().st_size == report.original_bytes
    assert summary["ratio"] == pytest.approx(report.ratio)
    assert summary["tensors"] == len(tensors) and summary["parameters"] == sum(
        int(np.prod(t["shape"])) for t in tensors.values())

    # per tensor: what the file's header says each one takes; the tie takes nothing
    fields, data, header = split_tzip(blob)
    stored = {s.name: s.stored_bytes for s in report.tensors}
    assert tensors["lm_head.weight"]["stored_bytes"] == 0 and tensors["lm_head.weight"]["achieved_bits"] == 0
    for name, t in tensors.items():
        if name != "lm_head.weight":
            assert t["stored_bytes"] == stored[name] > 0, name
            assert t["achieved_bits"] == pytest.approx(8 * stored[name] / np.prod(t["shape"]))
    payload = sum(t["stored_bytes"] for t in tensors.values())
    assert payload == len(data)
    assert summary["achieved_bytes"] - payload == PREAMBLE_SIZE + fields["header_length"]
    assert summary["gap_to_order0"] == pytest.approx(payload / summary["order0_bytes"] - 1)

    # facts of single tensors
    assert tensors["layer.1.half"]["hidden"] == "float16"
    assert tensors["layer.1.weight"]["zeros"] == pytest.approx(300 / 2000)
    assert tensors["norm.weight"]["order0_bits"] == 0.0
    assert tensors["mask"]["exponent_histogram"] is None and tensors["mask"]["order0_bits"] > 7.0
    assert summary["dtypes"] == {"float32": 5, "bfloat16": 1, "float16": 1, "int64": 1, "uint8": 1}
    json.dumps(record, allow_nan=False)  # JSON-ready


def test_tzip_analysis_agrees_with_the_source(tmp_path, checkpoint):
    packed = tmp_path / "model.tzip"
    compress_file(checkpoint, packed)
    calls: list[tuple[int, int]] = []
    from_tzip = analyze_checkpoint(packed, progress=lambda done, total: calls.append((done, total)))
    from_source = analyze_checkpoint(checkpoint)
    assert [t["name"] for t in from_tzip["tensors"]] == [t["name"] for t in from_source["tensors"]]
    for a, b in zip(from_tzip["tensors"], from_source["tensors"], strict=True):
        assert a == b, a["name"]  # every measure, stored bytes included
    assert from_tzip["summary"]["achieved_bytes"] == packed.stat().st_size
    assert from_tzip["summary"] == from_source["summary"]
    assert calls and calls[-1][0] == calls[-1][1] == from_source["summary"]["tensor_bytes"]


def test_tzip_without_a_source_record(tmp_path, rng):
    """A .tzip written from arrays has no safetensors header: its size is its tensors'."""
    path = tmp_path / "arrays.tzip"
    arrays = {"a": (rng.standard_normal((30, 20)) * 0.1).astype(np.float32), "b": np.arange(10, dtype=np.int32)}
    tz.save_file(arrays, path)
    record = analyze_checkpoint(path)
    assert record["summary"]["bytes"] == sum(a.nbytes for a in arrays.values())
    assert record["summary"]["achieved_bytes"] == path.stat().st_size


def test_folder_of_shards(tmp_path, rng):
    folder = tmp_path / "model"
    folder.mkdir()
    tensors = _tensors(rng)
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:5]},
              "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[5:]}}
    for file, part in shards.items():
        safetensors_numpy.save_file(part, str(folder / file), metadata={"format": "pt"})
    weight_map = {n: file for file, part in shards.items() for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    calls: list[tuple[int, int]] = []
    record = analyze_checkpoint(folder, progress=lambda done, total: calls.append((done, total)))
    packed = tmp_path / "model.tzip"
    report = compress_file(folder, packed)
    summary = record["summary"]
    assert sorted(t["name"] for t in record["tensors"]) == sorted(names)
    assert summary["achieved_bytes"] == packed.stat().st_size
    assert summary["bytes"] == report.original_bytes == sum(p.stat().st_size for p in folder.iterdir())
    by_name = {t["name"]: t for t in record["tensors"]}
    assert by_name["lm_head.weight"]["stored_bytes"] == 0  # repeats a tensor of the other shard
    assert calls[-1][0] == calls[-1][1] == sum(a.nbytes for a in tensors.values())
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:], strict=False))
    # and its .tzip tells the same
    assert analyze_checkpoint(packed)["summary"] == summary


def test_small_exact_elements_samples_and_says_so(checkpoint):
    arrays = safetensors_numpy.load_file(str(checkpoint))
    full = analyze_checkpoint(checkpoint)
    calls: list[tuple[int, int]] = []
    sampled = analyze_checkpoint(checkpoint, exact_elements=500, progress=lambda d, t: calls.append((d, t)))
    big = [t["name"] for t in full["tensors"] if np.prod(t["shape"]) > 500]
    assert big and [t["name"] for t in sampled["tensors"] if t["sampled"]] == big
    assert not any(t["sampled"] for t in full["tensors"])
    assert len(sampled["notes"]) == 1 and f"{len(big)} tensors over 500 elements" in sampled["notes"][0]
    for a, b in zip(sampled["tensors"], full["tensors"], strict=True):
        # achieved sizes and special values are exact either way; bounds are estimates
        for key in ("stored_bytes", "zeros", "denormals", "nans", "infs", "hidden", "bytes", "shape"):
            assert a[key] == b[key], (a["name"], key)
        if a["sampled"]:  # measured on the seeded sample of whole rows
            sample = sample_rows(arrays[a["name"]], 500)
            assert 0 < sample.size <= 500
            want = [bits / sample.size for bits in reference_plane_bits(sample)]
            assert a["plane_bits"] == pytest.approx(want, rel=1e-9, abs=1e-12)
            if a["exponent_histogram"] is not None:
                assert sum(a["exponent_histogram"]["count"]) == sample.size
    assert sampled["summary"]["achieved_bytes"] == full["summary"]["achieved_bytes"]
    assert calls[-1][0] == calls[-1][1] == full["summary"]["tensor_bytes"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        analyze_checkpoint(tmp_path / "absent.safetensors")
