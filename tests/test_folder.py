"""Checkpoint folders (Hugging Face shards + index) stored as one .tzip: byte-identical
folders back, tensors repeated across shards stored once, safe file names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli.main import main
from tensorzip.container import TzipReader
from tensorzip.errors import HeaderError, InputFileError, OutputFileError
from tensorzip.files import compress_file, decompress_file, verify_file
from tensorzip.inputs.safetensors import SafetensorsFile

from .test_delta import _rewrite_header


@pytest.fixture
def sharded(tmp_path):
    """Two shards; the output embedding of shard 2 repeats the input embedding of shard 1."""
    rng = np.random.default_rng(8)
    embedding = (rng.standard_normal((500, 64)) * 0.05).astype(np.float32)
    shard1 = {"embed.weight": embedding, "layer.0.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    shard2 = {"layer.1.weight": rng.standard_normal((64, 64)).astype(np.float32), "lm_head.weight": embedding.copy(),
              "steps": np.array([1000], np.int64)}
    folder = tmp_path / "model"
    folder.mkdir()
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_safetensors(shard1, str(folder / names[0]), metadata={"format": "pt"})
    save_safetensors(shard2, str(folder / names[1]), metadata={"format": "pt"})
    weight_map = {n: names[0] for n in shard1} | {n: names[1] for n in shard2}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 1234}, "weight_map": weight_map}, indent=2))
    return folder, embedding.nbytes


def same_folder(a, b) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_folder_round_trips_byte_for_byte_and_dedups_across_shards(tmp_path, sharded):
    folder, repeated = sharded
    report = compress_file(folder, tmp_path / "model.tzip")
    assert report.dedup_saved_bytes == repeated
    assert report.original_bytes == sum(p.stat().st_size for p in folder.iterdir())
    with TzipReader(tmp_path / "model.tzip") as reader:
        assert reader.entry("lm_head.weight").same_as == "embed.weight"
    decompress_file(tmp_path / "model.tzip", tmp_path / "back")
    assert same_folder(folder, tmp_path / "back")
    verify_file(tmp_path / "model.tzip", against=folder)
    back = tz.load_file(tmp_path / "model.tzip")  # tensors read as from any .tzip
    assert np.array_equal(back["lm_head.weight"], back["embed.weight"])


def test_folder_output_is_atomic_and_kept_without_overwrite(tmp_path, sharded):
    folder, _ = sharded
    compress_file(folder, tmp_path / "model.tzip")
    (tmp_path / "back").mkdir()
    (tmp_path / "back" / "keep.txt").write_text("mine")
    with pytest.raises(OutputFileError, match="already exists"):
        decompress_file(tmp_path / "model.tzip", tmp_path / "back", overwrite=False)
    assert (tmp_path / "back" / "keep.txt").read_text() == "mine"
    with pytest.raises(OutputFileError, match="keep.txt"):  # --force never deletes what it did not write
        decompress_file(tmp_path / "model.tzip", tmp_path / "back", overwrite=True)
    assert (tmp_path / "back" / "keep.txt").read_text() == "mine"
    (tmp_path / "back" / "keep.txt").unlink()
    decompress_file(tmp_path / "model.tzip", tmp_path / "back", overwrite=True)
    assert same_folder(folder, tmp_path / "back")
    decompress_file(tmp_path / "model.tzip", tmp_path / "back", overwrite=True)  # its own output: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    with pytest.raises(tz.TensorzipError, match="folder"):
        decompress_file(tmp_path / "model.tzip", io.BytesIO())


def test_folder_checks(tmp_path, sharded):
    folder, _ = sharded
    clash = tmp_path / "clash"
    clash.mkdir()
    save_safetensors({"w": np.zeros(3, np.float32)}, str(clash / "a.safetensors"))
    save_safetensors({"w": np.ones(3, np.float32)}, str(clash / "b.safetensors"))
    with pytest.raises(InputFileError, match="'w' is in both a.safetensors and b.safetensors"):
        compress_file(clash, tmp_path / "clash.tzip")
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x": "model-00009-of-00009.safetensors"}}))
    with pytest.raises(InputFileError, match="not in the folder"):
        compress_file(folder, tmp_path / "bad.tzip")
    assert not (tmp_path / "clash.tzip").exists() and not (tmp_path / "bad.tzip").exists()


@pytest.mark.parametrize("name", ["../escape.safetensors", "/abs.safetensors", "a/b.safetensors", ".."])
def test_folder_file_names_cannot_leave_the_output(tmp_path, sharded, name):
    folder, _ = sharded
    archive = tmp_path / "model.tzip"
    compress_file(folder, archive)
    _rewrite_header(archive, lambda d: d["source"]["files"][0].__setitem__("name", name))
    with pytest.raises(HeaderError, match="not a plain file name"):
        decompress_file(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.safetensors").exists()


def test_cli_folder_defaults(tmp_path, sharded, capsys):
    folder, _ = sharded
    assert main(["compress", str(folder), "--archive"]) == 0  # without --archive: a folder of shards
    assert "stored once" in capsys.readouterr().out
    archive = tmp_path / "model.tzip"
    assert archive.exists()
    assert main(["decompress", str(archive), "-o", str(tmp_path / "restored")]) == 0
    assert same_folder(folder, tmp_path / "restored")
    assert main(["verify", str(archive), "--against", str(folder)]) == 0


def test_cli_default_output_of_a_folder_archive(tmp_path, sharded):
    folder, _ = sharded
    assert main(["compress", str(folder), "--archive", "-o", str(tmp_path / "copy.tzip")]) == 0
    assert (tmp_path / "copy.tzip").is_file()
    assert main(["decompress", str(tmp_path / "copy.tzip")]) == 0
    assert same_folder(folder, tmp_path / "copy")


def test_fine_tuned_folder_against_a_base_folder(tmp_path, sharded):
    folder, _ = sharded
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    for shard in sorted(folder.glob("*.safetensors")):
        arrays = SafetensorsFile(shard)
        moved = {e.name: np.array(arrays.array(e)) for e in arrays.entries}
        for name, a in moved.items():
            if a.dtype == np.float32:
                moved[name] = (a * np.float32(1.001)).astype(np.float32)
        save_safetensors(moved, str(tuned / shard.name), metadata={"format": "pt"})
    (tuned / "model.safetensors.index.json").write_bytes((folder / "model.safetensors.index.json").read_bytes())
    plain = compress_file(tuned, tmp_path / "plain.tzip")
    report = compress_file(tuned, tmp_path / "tuned.tzip", base=folder)
    assert report.compressed_bytes < plain.compressed_bytes
    decompress_file(tmp_path / "tuned.tzip", tmp_path / "back", base=folder)
    assert same_folder(tuned, tmp_path / "back")
