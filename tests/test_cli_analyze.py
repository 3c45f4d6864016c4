"""``tensorzip analyze`` from the command line (``cli.main`` in-process): JSON, text and
HTML output, representation matrices with labels, the refusals, and one real report
opened in headless Chromium."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from tensorzip.cli import analyze as cli_analyze
from tensorzip.cli.main import main
from tensorzip.files import compress_file

from .test_cli import _cached_minilm
from .test_report_html import _chromium_or_skip, assert_self_contained, check_in_browser

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are refused."""
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tensorzip: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def generated_checkpoint(path: Path, layers: int = 4, seed: int = 0) -> Path:
    """A small transformer-shaped checkpoint of 4 + 4 * layers tensors (20 for 4 layers, 8 for 1)."""
    rng = np.random.default_rng(seed)
    d = 64
    tensors = {"embeddings.weight": (rng.standard_normal((500, d)) * 0.05).astype(np.float32),
               "embeddings.position_ids": np.arange(128, dtype=np.int64)[None, :]}
    for i in range(layers):
        dtype = ml_dtypes.bfloat16 if i % 2 else np.float32
        tensors |= {
            f"layers.{i}.attn.weight": (rng.standard_normal((3 * d, d)) * 0.02).astype(dtype),
            f"layers.{i}.attn.bias": (rng.standard_normal(3 * d) * 0.01).astype(dtype),
            f"layers.{i}.mlp.weight": (rng.standard_normal((4 * d, d)) * 0.03).astype(dtype),
            f"layers.{i}.norm.weight": (1 + rng.standard_normal(d) * 0.1).astype(np.float16).astype(np.float32),
        }
    tensors["final_norm.weight"] = np.ones(d, np.float32)
    tensors["lm_head.weight"] = tensors["embeddings.weight"].copy()
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return generated_checkpoint(tmp_path / "model.safetensors", layers=1)


@pytest.fixture
def matrix(tmp_path) -> tuple[Path, Path]:
    """300 rows in 5 well separated classes, and their labels."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 60)
    means = rng.standard_normal((5, 16)) * 4
    rows = (means[labels] + rng.standard_normal((300, 16)) * 0.3).astype(np.float32)
    np.save(tmp_path / "reps.npy", rows)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path / "reps.npy", tmp_path / "labels.npy"


# ------------------------------------------------------------------ checkpoints


def test_json_output(capsys, tmp_path, checkpoint):
    code, out, err = run(capsys, "analyze", checkpoint, "--json")
    assert code == 0, err
    record = strict_json(out)
    assert record["kind"] == "checkpoint" and record["tensorzip_analysis"] == 1
    assert record["source"] == str(checkpoint)
    assert record["summary"]["tensors"] == len(record["tensors"]) == 8
    # the achieved size is the size of the file `tensorzip compress` writes
    assert record["summary"]["achieved_bytes"] == compress_file(checkpoint, tmp_path / "m.tzip").compressed_bytes
    assert err == ""  # no progress bar with --json


def test_text_output(capsys, checkpoint):
    code, out, _ = run(capsys, "analyze", checkpoint, "--json")
    summary = strict_json(out)["summary"]
    code, out, err = run(capsys, "analyze", checkpoint)
    assert code == 0, err
    assert f"ratio {summary['ratio']:.4f}" in out
    assert f"order-0 bound {summary['order0_bytes'] / 1e6:,.2f} MB" in out
    assert "context-model bound" in out and "embeddings.weight" in out
    assert "layers.0.norm.weight" in out and "holds float16" in out


def test_html_output_is_written_atomically_and_self_contained(capsys, tmp_path, checkpoint, monkeypatch):
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    code, out, err = run(capsys, "analyze", checkpoint, "--html", report)
    assert code == 0, err
    assert f"report: {report}" in out
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and str(checkpoint) in page
    assert_self_contained(page)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]  # no temporary file left

    class Unwritable(str):
        def encode(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_analyze, "render_report", lambda record: Unwritable("<html>"))
    code, _, err = run(capsys, "analyze", checkpoint, "--html", report, "--force")
    assert code == 1
    one_line_error(err, "report.html", "No space left")
    assert report.read_text(encoding="utf-8") == page  # the old report is intact
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]


def test_labels_with_a_checkpoint_are_refused(capsys, checkpoint, matrix):
    code, out, err = run(capsys, "analyze", checkpoint, "--labels", matrix[1])
    assert code == 1 and out == ""
    one_line_error(err, "--labels", "representation matrix")


@pytest.mark.parametrize("name", ["absent.safetensors", "absent.npy", "absent.tzip"])
def test_missing_input(capsys, tmp_path, name):
    code, out, err = run(capsys, "analyze", tmp_path / name)
    assert code == 1 and out == ""
    one_line_error(err, name, "no such file")


# ------------------------------------------------------------------ representation matrices


def test_representations_with_labels(capsys, matrix):
    rows, labels = matrix
    code, out, err = run(capsys, "analyze", rows, "--labels", labels, "--json")
    assert code == 0, err
    record = strict_json(out)
    assert record["kind"] == "representations"
    reps = record["representations"]
    assert reps["rows"] == 300 and reps["dims"] == 16
    measures = reps["labels"]
    assert measures["classes"] == 5
    for key in ("nc1", "nc2_equinorm", "nc2_equiangular", "coding_rate_reduction"):
        assert isinstance(measures[key], float) and math.isfinite(measures[key]), key
    assert measures["nc1"] < 0.1  # tight, well separated classes

    code, out, err = run(capsys, "analyze", rows, "--labels", labels)
    assert code == 0, err
    assert "5 classes: NC1" in out and "effective rank" in out


def test_representations_without_labels(capsys, matrix):
    code, out, err = run(capsys, "analyze", matrix[0], "--json")
    assert code == 0, err
    assert not strict_json(out)["representations"].get("labels")


class _Trap:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("which", ["matrix", "labels"])
def test_pickled_npy_is_never_unpickled(capsys, tmp_path, matrix, which):
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([_Trap(marker), 1], dtype=object), allow_pickle=True)
    pickle.loads(pickle.dumps(_Trap(tmp_path / "works"))).close()  # the trap is armed
    assert (tmp_path / "works").exists()
    argv = [evil] if which == "matrix" else [matrix[0], "--labels", evil]
    code, out, err = run(capsys, "analyze", *argv)
    assert code == 1 and out == ""
    one_line_error(err, "evil.npy", "tensorzip never unpickles")
    assert not marker.exists()


def test_one_dimensional_npy_is_refused(capsys, tmp_path):
    vector = tmp_path / "vector.npy"
    np.save(vector, np.arange(50, dtype=np.float32))
    code, out, err = run(capsys, "analyze", vector)
    assert code == 1 and out == ""
    one_line_error(err, "2-D")


# ------------------------------------------------------------------ in a browser


def test_real_checkpoint_report_in_browser(capsys, tmp_path):
    _chromium_or_skip()
    source = _cached_minilm() or generated_checkpoint(tmp_path / "generated.safetensors")
    report = tmp_path / "report.html"
    code, out, err = run(capsys, "analyze", source, "--html", report, "--json")
    assert code == 0, err
    record = strict_json(out)
    assert record["summary"]["tensors"] >= 20
    check_in_browser(report.read_text(encoding="utf-8"), report, expected_plots=3)
