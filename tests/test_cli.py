"""The ``tensorzip`` command, run in-process (``cli.main``) and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip import sample_data
from tensorzip.cli.main import main
from tensorzip.inputs.safetensors import SafetensorsFile

from .conftest import flip, split_tzip

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def checkpoint(tmp_path, rng) -> Path:
    """A small checkpoint shaped like a real one: bf16 and f32 weights, int64 ids, metadata."""
    tensors = {
        "embeddings.word_embeddings.weight":
            (rng.standard_normal((64, 32)) * 0.05).astype(ml_dtypes.bfloat16),
        "encoder.layer.0.attention.self.query.weight":
            (rng.standard_normal((32, 32)) * 0.02).astype(np.float32),
        "encoder.layer.0.attention.self.query.bias": (rng.standard_normal(32) * 0.01).astype(np.float32),
        "encoder.layer.0.output.LayerNorm.weight": np.ones(32, np.float32),
        "embeddings.position_ids": np.arange(128, dtype=np.int64)[None, :],
    }
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "pt", "note": "test"})
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tensorzip: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_compress_decompress_verify_info(capsys, checkpoint, tmp_path):
    packed = tmp_path / "model.tzip"
    code, out, err = run(capsys, "compress", checkpoint, "-o", packed)
    assert code == 0, err
    assert "ratio" in out and "entropy bound" in out
    assert packed.exists()

    restored = tmp_path / "restored.safetensors"
    code, out, err = run(capsys, "decompress", packed, "-o", restored)
    assert code == 0, err
    assert restored.read_bytes() == checkpoint.read_bytes()

    code, out, err = run(capsys, "verify", packed, "--against", checkpoint)
    assert code == 0, err
    assert "OK" in out and "identical" in out

    code, out, err = run(capsys, "verify", packed)
    assert code == 0, err
    assert "every checksum verified" in out

    code, out, err = run(capsys, "info", packed)
    assert code == 0, err
    assert "5 tensors" in out
    assert "embeddings.word_embeddings.weight" in out
    assert "bfloat16" in out
    assert '"note": "test"' in out


def test_default_output_paths(capsys, checkpoint):
    code, _, err = run(capsys, "compress", checkpoint)
    assert code == 0, err
    packed = checkpoint.with_suffix(".tzip")
    assert packed.exists()
    checkpoint.rename(checkpoint.with_name("original.safetensors"))
    code, _, err = run(capsys, "decompress", packed)
    assert code == 0, err
    assert checkpoint.read_bytes() == checkpoint.with_name("original.safetensors").read_bytes()


def test_json_outputs(capsys, checkpoint, tmp_path):
    packed = tmp_path / "m.tzip"
    code, out, err = run(capsys, "compress", checkpoint, "-o", packed, "--json", "--threads", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["original_bytes"] == checkpoint.stat().st_size
    assert report["compressed_bytes"] == packed.stat().st_size
    assert report["ratio"] == pytest.approx(report["original_bytes"] / report["compressed_bytes"])
    bound = report["order0_bound_bytes"]
    assert report["gap_to_bound"] == pytest.approx(report["compressed_bytes"] / bound - 1)
    assert report["order0_bound_bytes"] > 0
    assert report["threads"] == 2
    assert len(report["tensors"]) == 5
    assert {"name", "dtype", "shape", "original_bytes", "stored_bytes", "order0_bound_bytes"} <= set(
        report["tensors"][0]
    )

    code, out, err = run(capsys, "decompress", packed, "-o", tmp_path / "r.safetensors", "--json")
    assert code == 0, err
    assert json.loads(out)["output_bytes"] == checkpoint.stat().st_size

    code, out, err = run(capsys, "verify", packed, "--against", checkpoint, "--json")
    assert code == 0, err
    verify = json.loads(out)
    assert verify["tensors"] == 5
    assert verify["against"] == str(checkpoint)

    code, out, err = run(capsys, "info", packed, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["size"] == packed.stat().st_size
    assert info["metadata"] == {"format": "pt", "note": "test"}
    in_data_order = [e.name for e in SafetensorsFile(checkpoint).entries]
    assert [t["name"] for t in info["tensors"]] == in_data_order
    assert all(t["chunks"] == 1 for t in info["tensors"])


def test_verbose_lists_tensors(capsys, checkpoint, tmp_path):
    code, out, err = run(capsys, "compress", checkpoint, "-o", tmp_path / "v.tzip", "-v")
    assert code == 0, err
    assert "encoder.layer.0.attention.self.query.weight" in out
    assert "gap" in out


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_refuses_to_overwrite_without_force(capsys, checkpoint, tmp_path, command):
    packed = tmp_path / "m.tzip"
    assert run(capsys, "compress", checkpoint, "-o", packed)[0] == 0
    source, existing = (checkpoint, tmp_path / "x.tzip") if command == "compress" else (
        packed, tmp_path / "x.safetensors")
    existing.write_bytes(b"do not touch")
    code, out, err = run(capsys, command, source, "-o", existing)
    assert code == 1
    assert_one_line_error(err, "already exists", "--force")
    assert existing.read_bytes() == b"do not touch"

    code, out, err = run(capsys, command, source, "-o", existing, "--force")
    assert code == 0, err
    assert existing.read_bytes() != b"do not touch"
    if command == "decompress":
        assert existing.read_bytes() == checkpoint.read_bytes()
    else:
        assert existing.read_bytes() == packed.read_bytes()  # deterministic output


def test_refuses_to_overwrite_its_input(capsys, checkpoint):
    before = checkpoint.read_bytes()
    code, _, err = run(capsys, "compress", checkpoint, "-o", checkpoint, "--force")
    assert code == 1
    assert_one_line_error(err, "overwrite the input")
    assert checkpoint.read_bytes() == before


def test_missing_input(capsys, tmp_path):
    for command in ("compress", "decompress", "verify", "info"):
        code, out, err = run(capsys, command, tmp_path / "missing.file")
        assert code == 1, command
        assert_one_line_error(err, "missing.file", "no such file")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_input(capsys, checkpoint, tmp_path):
    packed = tmp_path / "m.tzip"
    assert run(capsys, "compress", checkpoint, "-o", packed)[0] == 0
    blob = packed.read_bytes()
    _, _, header = split_tzip(blob)
    # Every tensor here is small, so they are coded together: damage a group's chunk.
    offset, length, _ = header["groups"][0]["chunks"][0]
    members = [t["name"] for t in header["tensors"] if t.get("packed", [None])[0] == 0]
    packed.write_bytes(flip(blob, offset + length // 2))
    for argv in (["verify", packed], ["decompress", packed, "-o", tmp_path / "out.safetensors"]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert_one_line_error(err, str(packed), f"offset {offset}")
        assert any(repr(name) in err for name in members), err
    assert not (tmp_path / "out.safetensors").exists()

    packed.write_bytes(blob[:100])
    code, _, err = run(capsys, "info", packed)
    assert code == 1
    assert_one_line_error(err, str(packed))

    code, _, err = run(capsys, "compress", packed, "-o", tmp_path / "again.tzip")  # not a safetensors file
    assert code == 1
    assert_one_line_error(err, str(packed))


def test_verify_against_a_different_file(capsys, checkpoint, tmp_path):
    packed = tmp_path / "m.tzip"
    assert run(capsys, "compress", checkpoint, "-o", packed)[0] == 0
    other = tmp_path / "other.safetensors"
    source = SafetensorsFile(checkpoint)
    entry = next(e for e in source.entries if e.name.endswith("LayerNorm.weight"))
    other.write_bytes(flip(checkpoint.read_bytes(), source.data_start + entry.begin + 5, 0x01))
    code, _, err = run(capsys, "verify", packed, "--against", other)
    assert code == 1
    assert_one_line_error(err, "LayerNorm.weight", "differs")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["compress"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert tz.__version__ in capsys.readouterr().out


def test_as_a_process(checkpoint, tmp_path):
    packed = tmp_path / "p.tzip"
    restored = tmp_path / "p.safetensors"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def tensorzip(*argv):
        return subprocess.run([sys.executable, "-m", "tensorzip", *map(str, argv)], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    result = tensorzip("compress", checkpoint, "-o", packed, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ratio"] > 1
    result = tensorzip("decompress", packed, "-o", restored)
    assert result.returncode == 0, result.stderr
    assert restored.read_bytes() == checkpoint.read_bytes()
    result = tensorzip("decompress", packed, "-o", restored)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "already exists")
    assert result.stdout == ""


# -- the real checkpoint, only when it is already on this machine ------------------------


def _cached_minilm() -> Path | None:
    candidates = [sample_data.default_cache_dir() / "all-MiniLM-L6-v2" / "model-fp32.safetensors"]
    if os.environ.get("TENSORZIP_CACHE"):
        candidates.append(Path(os.environ["TENSORZIP_CACHE"]) / "all-MiniLM-L6-v2" / "model-fp32.safetensors")
    installed = sample_data._installed_copy()
    if installed is not None:
        candidates.append(installed)
    return next((c for c in candidates if c.is_file()), None)


@pytest.mark.skipif(_cached_minilm() is None,
                    reason="all-MiniLM-L6-v2 is not cached locally (no downloads in tests)")
def test_real_minilm_checkpoint(capsys, tmp_path):
    fp32 = _cached_minilm()
    bf16 = sample_data.derive_dtype_copy(fp32, tmp_path / "model-bf16.safetensors", "bfloat16")
    for source in (fp32, bf16):
        packed = tmp_path / (source.stem + ".tzip")
        restored = tmp_path / (source.stem + ".restored.safetensors")
        code, out, err = run(capsys, "compress", source, "-o", packed, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["ratio"] > 1.05
        assert abs(report["gap_to_bound"]) < 0.1
        assert run(capsys, "decompress", packed, "-o", restored)[0] == 0
        assert restored.read_bytes() == source.read_bytes()
        code, _, err = run(capsys, "verify", packed, "--against", source)
        assert code == 0, err
