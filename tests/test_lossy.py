"""Lossy weights on a byte budget: the budget is met, the recorded errors are the
decoded tensors' errors, every float dtype works, and the file decodes to an
ordinary checkpoint with the original layout."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import tensorzip as tz
from tensorzip.cli.main import main
from tensorzip.errors import FormatError, InputFileError, TensorzipError
from tensorzip.lossy.grid import grid_steps, quantize_matrix


def checkpoint(path, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {
        "embed.weight": rng.standard_normal((300, 64)) * 0.05,
        "layer.0.dense.weight": rng.standard_normal((128, 64)) * 0.02 + 0.01,  # an offset, like real rows
        "layer.0.dense.bias": rng.standard_normal(128) * 0.01,
        "layer.0.norm.weight": 1 + rng.standard_normal(64) * 0.1,
        "small.weight": rng.standard_normal((8, 8)),  # too small to quantize: kept exact
    }
    out = {name: np.asarray(a).astype(dtype) for name, a in tensors.items()}
    out["position_ids"] = np.arange(64, dtype=np.int64)[None]
    save_file(out, str(path))
    return out


def relative_rms(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.mark.parametrize("budget", [0.08, 0.15, 0.3])
def test_budget_is_met_and_used(tmp_path, budget):
    source = tmp_path / "model.safetensors"
    checkpoint(source)
    report = tz.lossy.compress_file(source, tmp_path / "model.tzip", budget=budget)
    size = (tmp_path / "model.tzip").stat().st_size
    assert size == report.compressed_bytes <= budget * source.stat().st_size
    assert size > 0.85 * budget * source.stat().st_size  # the finest grid that fits, not a coarse one


def test_recorded_errors_are_the_decoded_errors(tmp_path):
    source = tmp_path / "model.safetensors"
    original = checkpoint(source)
    tz.lossy.compress_file(source, tmp_path / "model.tzip", budget=0.12)
    decoded = tz.lossy.load_file(tmp_path / "model.tzip")
    record = tz.lossy.describe(tmp_path / "model.tzip")["tensors"]
    for name, array in original.items():
        info = record[name]
        assert decoded[name].dtype == array.dtype and decoded[name].shape == array.shape
        if info["mode"] == "exact":
            assert decoded[name].tobytes() == array.tobytes()
            continue
        assert info["relative_rms_error"] == pytest.approx(relative_rms(array, decoded[name]), rel=1e-9)
        assert info["max_abs_error"] == pytest.approx(
            float(np.abs(array.astype(np.float64) - decoded[name].astype(np.float64)).max()), rel=1e-9)
    assert {n for n, i in record.items() if i["mode"] == "grid"} == {"embed.weight", "layer.0.dense.weight"}


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_every_float_dtype(tmp_path, dtype):
    source = tmp_path / "model.safetensors"
    original = checkpoint(source, dtype)
    tz.lossy.compress_file(source, tmp_path / "model.tzip", bits=4)
    parameters = sum(a.size for a in original.values())
    assert (tmp_path / "model.tzip").stat().st_size * 8 <= 4 * parameters
    tz.lossy.decompress_file(tmp_path / "model.tzip", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))
    for name, array in original.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
    assert relative_rms(original["embed.weight"], back["embed.weight"]) < 0.3  # float64: exact tensors cost 2x


def test_float8_matrices_stay_exact(tmp_path):
    source = tmp_path / "fp8.safetensors"
    rng = np.random.default_rng(1)
    save_file({"w": rng.standard_normal((64, 64)).astype(ml_dtypes.float8_e4m3fn),
               "v": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}, str(source))
    tz.lossy.compress_file(source, tmp_path / "out.tzip", budget=0.5)
    record = tz.lossy.describe(tmp_path / "out.tzip")["tensors"]
    assert record["w"]["mode"] == "exact" and record["v"]["mode"] == "grid"


def test_decoded_file_keeps_the_original_header(tmp_path):
    source = tmp_path / "model.safetensors"
    checkpoint(source)
    tz.lossy.compress_file(source, tmp_path / "model.tzip", budget=0.2)
    report = tz.lossy.decompress_file(tmp_path / "model.tzip", tmp_path / "back.safetensors")
    original, back = source.read_bytes(), (tmp_path / "back.safetensors").read_bytes()
    assert report.output_bytes == len(back) == len(original)
    assert report.compressed_bytes == (tmp_path / "model.tzip").stat().st_size and report.seconds > 0
    header = 8 + int.from_bytes(original[:8], "little")
    assert back[:header] == original[:header]


def test_sensitivity_spends_bits_where_inputs_are_strong(tmp_path):
    w = (np.random.default_rng(2).standard_normal((64, 32)) * 0.02).astype(np.float32)
    h = np.ones(32)
    h[:4] = 100.0  # strong inputs: errors there cost 100x at the output
    rows, columns = grid_steps(0.01, w.shape, None, h)
    steps = rows[0] * columns
    assert steps[0] == pytest.approx(0.001) and steps[-1] == pytest.approx(0.01)
    q = quantize_matrix(w, rows, columns)
    error = np.abs(q.decode() - w)
    assert error[:, :4].max() <= 0.0005 + 1e-7 and error[:, 4:].max() <= 0.005 + 1e-7
    source = tmp_path / "model.safetensors"
    checkpoint(source)
    weights = {"layer.0.dense.weight": np.r_[np.full(8, 50.0), np.ones(56)]}
    tz.lossy.compress_file(source, tmp_path / "a.tzip", budget=0.15, sensitivity=weights)
    decoded = tz.lossy.load_file(tmp_path / "a.tzip")["layer.0.dense.weight"]
    original = load_file(str(source))["layer.0.dense.weight"]
    strong = np.abs(decoded[:, :8] - original[:, :8]).mean()
    weak = np.abs(decoded[:, 8:] - original[:, 8:]).mean()
    assert strong < weak / 3
    # Rows too (an embedding table: frequent tokens' rows finer).
    rows = np.ones(300)
    rows[:30] = 100.0
    tz.lossy.compress_file(source, tmp_path / "b.tzip", budget=0.15, sensitivity={"embed.weight": (rows, None)})
    decoded = tz.lossy.load_file(tmp_path / "b.tzip")["embed.weight"]
    original = load_file(str(source))["embed.weight"]
    assert np.abs(decoded[:30] - original[:30]).mean() < np.abs(decoded[30:] - original[30:]).mean() / 3


def test_refusals(tmp_path):
    source = tmp_path / "model.safetensors"
    checkpoint(source)
    with pytest.raises(TensorzipError, match="exactly one"):
        tz.lossy.compress_file(source, tmp_path / "x.tzip", budget=0.1, bits_per_weight=3)
    with pytest.raises(tz.lossy.TargetUnreachableError, match="cannot be met: even the coarsest grid takes"):
        tz.lossy.compress_file(source, tmp_path / "x.tzip", budget=0.001)
    with pytest.raises(tz.lossy.TargetUnreachableError, match="must be positive"):
        tz.lossy.compress_file(source, tmp_path / "x.tzip", bits=0)
    with pytest.raises(TensorzipError, match="same budget"):
        tz.lossy.compress_file(source, tmp_path / "x.tzip", bits=3, bits_per_weight=4)
    with pytest.raises(tz.OutputFileError, match="input"):
        tz.lossy.compress_file(source, source, budget=0.2)
    with pytest.raises(TensorzipError, match="not quantized matrices"):
        tz.lossy.compress_file(source, tmp_path / "x.tzip", budget=0.1, sensitivity={"layer.0.dense.bias": [1.0]})
    with pytest.raises(InputFileError, match="folder"):
        tz.lossy.compress_file(tmp_path, tmp_path / "x.tzip", budget=0.1)
    assert not (tmp_path / "x.tzip").exists()
    plain = tmp_path / "plain.tzip"
    tz.compress_file(source, plain)
    with pytest.raises(FormatError, match="not a lossy checkpoint"):
        tz.lossy.load_file(plain)


def test_cli(tmp_path, capsys):
    source = tmp_path / "model.safetensors"
    original = checkpoint(source)
    out = tmp_path / "model.tzip"
    assert main(["compress", str(source), "-o", str(out), "--lossy", "--bits-per-weight", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compressed_bytes"] * 8 <= 6 * sum(a.size for a in original.values())
    np.savez(tmp_path / "calibration.npz", **{"layer.0.dense.weight": np.ones(64)})
    assert main(["compress", str(source), "-o", str(out), "--lossy", "--budget", "0.2", "--calibration",
                 str(tmp_path / "calibration.npz"), "--force"]) == 0
    assert "bits per parameter" in capsys.readouterr().out
    assert main(["decompress", str(out), "-o", str(tmp_path / "back.safetensors")]) == 0
    assert load_file(str(tmp_path / "back.safetensors")).keys() == original.keys()
    assert main(["compress", str(source), "--budget", "0.2"]) == 1
    assert "need --lossy" in capsys.readouterr().err


def test_damaged_records_are_format_errors(tmp_path):
    """A record that is not JSON (or nests past Python's recursion limit) is a FormatError."""
    from tensorzip.container import TzipWriter
    from tensorzip.container.records import LOSSY_WEIGHTS_KEY as METADATA_KEY

    for raw in ("{not json", "[" * 100_000 + "]" * 100_000, '{"format": 1}'):
        path = tmp_path / "bad.tzip"
        with TzipWriter(path, metadata={METADATA_KEY: raw}) as writer:
            writer.add("exact/x", np.zeros(3, np.float32))
        writer.close()
        with pytest.raises(FormatError):
            tz.lossy.load_file(path)


def test_reports_are_frozen_and_old_names_still_work(tmp_path):
    """compress_file and decompress_file return frozen reports (decompress_file a
    tz.DecompressionReport, as tz.decompress_file does); load is load_file's old name."""
    import dataclasses

    source = tmp_path / "model.safetensors"
    checkpoint(source)
    report = tz.lossy.compress_file(source, tmp_path / "a.tzip", bits_per_weight=3)
    again = tz.lossy.compress_file(source, tmp_path / "b.tzip", bits=3)
    assert (tmp_path / "a.tzip").read_bytes() == (tmp_path / "b.tzip").read_bytes()
    assert report.compressed_bytes == again.compressed_bytes and report.delta == again.delta
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.delta = 1.0  # type: ignore[misc]
    back = tz.lossy.decompress_file(tmp_path / "a.tzip", tmp_path / "back.safetensors")
    size = (tmp_path / "back.safetensors").stat().st_size
    assert isinstance(back, tz.DecompressionReport)
    assert back.output_bytes == size and back.target.endswith("back.safetensors")
    assert back.to_json()["output_bytes"] == size
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.output_bytes = 0  # type: ignore[misc]
    with pytest.warns(DeprecationWarning, match="load_file"):
        old = tz.lossy.load(tmp_path / "a.tzip")
    new = tz.lossy.load_file(tmp_path / "a.tzip")
    assert old.keys() == new.keys() and all(old[n].tobytes() == new[n].tobytes() for n in new)


def test_cli_bits_is_bits_per_weight(tmp_path, capsys):
    source = tmp_path / "model.safetensors"
    checkpoint(source)
    assert main(["compress", str(source), "-o", str(tmp_path / "a.tzip"), "--lossy", "--bits", "6", "--json"]) == 0
    assert main(["compress", str(source), "-o", str(tmp_path / "b.tzip"), "--lossy", "--bits-per-weight", "6"]) == 0
    assert (tmp_path / "a.tzip").read_bytes() == (tmp_path / "b.tzip").read_bytes()
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "a.tzip"), "-o", str(tmp_path / "back.safetensors"), "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["lossy"] and decoded["output_bytes"] == (tmp_path / "back.safetensors").stat().st_size
