"""``tensorzip ls`` lists any input, ``tensorzip salvage`` keeps what a damaged file still
holds, and compress/decompress take several inputs (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli import main
from tensorzip.container import TzipReader


@pytest.fixture
def weights(tmp_path):
    rng = np.random.default_rng(4)
    tensors = {f"layer.{i}.weight": rng.standard_normal((300, 256)).astype(np.float32) for i in range(6)}
    tensors["steps"] = np.array([7], np.int64)
    path = tmp_path / "m.safetensors"
    save_safetensors(tensors, str(path), metadata={"format": "pt"})
    return path, tensors


def _listed(capsys, *argv) -> list[dict]:
    assert main(["ls", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["tensors"]


def test_ls_lists_every_kind_of_input(tmp_path, weights, capsys):
    path, tensors = weights
    expected = {name: (str(a.dtype), list(a.shape)) for name, a in tensors.items()}
    packed = tmp_path / "m.tzip"
    tz.compress_file(path, packed)
    for listed in (path, packed):
        rows = _listed(capsys, str(listed))
        assert {r["name"]: (r["dtype"], r["shape"]) for r in rows} == expected
    assert all(r["stored_bytes"] > 0 for r in _listed(capsys, str(packed)))
    folder = tmp_path / "model"
    folder.mkdir()
    path.rename(folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    tz.compress_folder(folder, tmp_path / "model.tzip")
    rows = _listed(capsys, str(tmp_path / "model.tzip"))
    assert {r["file"] for r in rows} == {"model.tzip"} and len(rows) == len(tensors)
    tz.compress_file(folder, tmp_path / "archive.tzip")
    names = [r["name"] for r in _listed(capsys, str(tmp_path / "archive.tzip"))]
    assert "config.json" in names and set(tensors) <= set(names)
    np.save(tmp_path / "v.npy", np.zeros((10, 4), np.float32))
    assert _listed(capsys, str(tmp_path / "v.npy")) == [{"name": "array", "dtype": "float32", "shape": [10, 4],
                                                         "original_bytes": 160}]
    assert main(["ls", str(tmp_path / "model.tzip")]) == 0
    assert "model.tzip: layer.0.weight\tfloat32\t300x256" in capsys.readouterr().out
    (tmp_path / "junk.bin").write_bytes(b"junk")
    assert main(["ls", str(tmp_path / "junk.bin")]) == 1
    assert "tensorzip ls does not read" in capsys.readouterr().err


def _damage(path, tensor: str) -> None:
    with TzipReader(path) as reader:
        chunk = reader.header.tensors[tensor].chunks[0]
    blob = bytearray(path.read_bytes())
    blob[chunk.offset + chunk.length // 2] ^= 0x10
    path.write_bytes(bytes(blob))


def test_salvage_writes_every_tensor_that_checks_out_and_lists_the_rest(tmp_path, weights, capsys):
    path, tensors = weights
    packed = tmp_path / "m.tzip"
    tz.compress_file(path, packed)
    _damage(packed, "layer.2.weight")
    assert main(["decompress", str(packed), "-o", str(tmp_path / "whole.safetensors")]) == 1
    assert not (tmp_path / "whole.safetensors").exists()
    assert main(["salvage", str(packed)]) == 3  # written, but not complete
    captured = capsys.readouterr()
    assert "6 tensors recovered, 1 lost" in captured.out and "lost layer.2.weight" in captured.err
    out = tmp_path / "m.salvaged.safetensors"
    with safe_open(str(out), "np") as recovered:
        assert sorted(recovered.keys()) == sorted(set(tensors) - {"layer.2.weight"})
        for name in recovered.keys():  # noqa: SIM118 - safe_open is not a mapping
            assert recovered.get_tensor(name).tobytes() == tensors[name].tobytes()
        assert recovered.metadata() == {"format": "pt"}
    assert main(["salvage", str(packed), "--json"]) == 1  # the output exists: --force to replace it
    assert "already exists" in capsys.readouterr().err
    report = tz.salvage_file(packed, tmp_path / "again.safetensors")
    assert report.lost.keys() == {"layer.2.weight"} and "checksum" in report.lost["layer.2.weight"]


def test_salvage_of_an_intact_file_exits_zero_and_of_a_truncated_one_says_why(tmp_path, weights, capsys):
    path, _ = weights
    packed = tmp_path / "m.tzip"
    tz.compress_file(path, packed)
    assert main(["salvage", str(packed), "-o", str(tmp_path / "all.safetensors")]) == 0
    assert (tmp_path / "all.safetensors").read_bytes() == path.read_bytes()  # same layout, same metadata
    truncated = tmp_path / "cut.tzip"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    assert main(["salvage", str(truncated)]) == 1
    assert "header" in capsys.readouterr().err and not (tmp_path / "cut.salvaged.safetensors").exists()
    assert main(["salvage", str(path)]) == 1
    assert "tensorzip compress" in capsys.readouterr().err


def test_salvage_loses_everything_only_with_an_error_and_no_output(tmp_path, capsys):
    path = tmp_path / "one.safetensors"
    save_safetensors({"w": np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)}, str(path))
    tz.compress_file(path, tmp_path / "one.tzip")
    _damage(tmp_path / "one.tzip", "w")
    assert main(["salvage", str(tmp_path / "one.tzip")]) == 1
    assert "no tensor could be read" in capsys.readouterr().err
    assert not (tmp_path / "one.salvaged.safetensors").exists()


def test_compress_and_decompress_take_several_inputs(tmp_path, weights, capsys):
    path, _ = weights
    other = tmp_path / "n.safetensors"
    save_safetensors({"x": np.arange(100, dtype=np.float32)}, str(other))
    assert main(["compress", str(path), str(other)]) == 0
    assert (tmp_path / "m.tzip").is_file() and (tmp_path / "n.tzip").is_file()
    assert main(["decompress", str(tmp_path / "m.tzip"), str(tmp_path / "n.tzip"), "-o", "x"]) == 1
    assert "-o names one output" in capsys.readouterr().err
    (tmp_path / "back").mkdir()
    for name in ("m", "n"):
        (tmp_path / f"{name}.tzip").rename(tmp_path / "back" / f"{name}.tzip")
    assert main(["decompress", str(tmp_path / "back" / "m.tzip"), str(tmp_path / "back" / "n.tzip"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2
    assert (tmp_path / "back" / "m.safetensors").read_bytes() == path.read_bytes()
    assert (tmp_path / "back" / "n.safetensors").read_bytes() == other.read_bytes()


def test_base_given_for_a_file_without_one_is_refused_and_salvage_needs_the_base(tmp_path, weights, capsys):
    path, tensors = weights
    tz.compress_file(path, tmp_path / "plain.tzip")
    assert main(["decompress", str(tmp_path / "plain.tzip"), "--base", str(path), "-o",
                 str(tmp_path / "x.safetensors")]) == 1
    assert "coded against no base" in capsys.readouterr().err
    tuned = {k: (v * np.float32(1.001)).astype(v.dtype) if v.dtype == np.float32 else v for k, v in tensors.items()}
    tz.save_file(tuned, tmp_path / "tuned.tzip", base=path)
    moved = tmp_path / "elsewhere.safetensors"
    path.rename(moved)
    assert main(["salvage", str(tmp_path / "tuned.tzip")]) == 1  # no partial file of the tensors the base spared
    assert not (tmp_path / "tuned.salvaged.safetensors").exists()
    assert main(["salvage", str(tmp_path / "tuned.tzip"), "--base", str(moved)]) == 0
