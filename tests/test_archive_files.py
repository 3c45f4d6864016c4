"""Folders are folders in every mode: an archive keeps every file (any type, any depth, empty
folders, permission bits), symlinked files are read through, nothing is written outside the
output, and fine-tune folders compress against a base folder, a compressed folder or an
archive, in folder mode and archive mode (issue 16)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli import main
from tensorzip.container import TzipReader
from tensorzip.container.format import MAGIC
from tensorzip.errors import HeaderError, TensorzipError
from tensorzip.folders import verify_folder

from .conftest import rewrite_header

NAMES = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _weights(seed: int, noise: float = 0.0, base: dict[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if base is None:
        shards = [{"embed.weight": (rng.standard_normal((300, 64)) * 0.05).astype(np.float32),
                   "layer.0.weight": rng.standard_normal((64, 64)).astype(np.float32)},
                  {"layer.1.weight": rng.standard_normal((64, 64)).astype(np.float32),
                   "steps": np.array([1000], np.int64)}]
        return shards
    return [{k: (v + (rng.standard_normal(v.shape) * noise * np.abs(v).mean()).astype(v.dtype)
                 if v.dtype == np.float32 else v) for k, v in shard.items()} for shard in base]


def _hub_folder(root: Path, shards: list[dict[str, np.ndarray]]) -> Path:
    """A Hugging Face-style folder: two shards and an index, config and tokenizer files, a
    ``1_Pooling/`` subfolder, an empty folder, a nested folder, a read-only file and an
    executable one, and a file that is a symbolic link into a blob store (as in the Hub cache)."""
    root.mkdir(parents=True)
    weight_map = {}
    for name, shard in zip(NAMES, shards, strict=True):
        save_safetensors(shard, str(root / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (root / "config.json").write_text(json.dumps({"hidden_size": 64, "architectures": ["Bert"]}))
    (root / "tokenizer.json").write_text(json.dumps({"vocab": {f"tok{i}": i for i in range(2000)}}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (root / "empty").mkdir()
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.bin").write_bytes(bytes(range(256)) * 3)
    (root / "a" / "zero-length").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "config.json", 0o444)
    blobs = root.parent / f"{root.name}-blobs"
    blobs.mkdir()
    (blobs / "0123abcd").write_text("linked through the cache\n")
    os.symlink(os.path.relpath(blobs / "0123abcd", root), root / "README.md")
    (root / NAMES[1]).rename(blobs / "4567ef01")  # a shard, too, as the Hub cache keeps them
    os.symlink(os.path.relpath(blobs / "4567ef01", root), root / NAMES[1])
    return root


def _tree(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry under ``root``: (kind, bytes of a file, permission bits), links read through."""
    found: dict[str, tuple[str, bytes | None, int]] = {}
    for here, folders, files in os.walk(root):
        for name in folders:
            path = os.path.join(here, name)
            found[os.path.relpath(path, root)] = ("folder", None, 0)
        for name in files:
            path = os.path.join(here, name)
            found[os.path.relpath(path, root)] = ("file", Path(path).read_bytes(),
                                                  stat.S_IMODE(os.stat(path).st_mode))
    return found


@pytest.fixture
def hub(tmp_path):
    return _hub_folder(tmp_path / "model", _weights(1))


@pytest.mark.parametrize("mode", ["archive", "folder"])
def test_every_file_comes_back_byte_for_byte_with_its_permissions(tmp_path, hub, mode):
    out = tmp_path / "model.tzip"
    assert main(["compress", str(hub), "-o", str(out), *(["--archive"] if mode == "archive" else [])]) == 0
    assert out.is_file() == (mode == "archive")
    assert main(["verify", str(out), "--against", str(hub)]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "back")]) == 0
    back = tmp_path / "back"
    assert _tree(back) == _tree(hub)  # `diff -r`, permission bits included
    assert not (back / "README.md").is_symlink()  # a linked file is restored as a regular file
    assert not (back / NAMES[1]).is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "model-blobs", "model.tzip", "back"])


def test_archive_is_smaller_than_the_folder_and_info_counts_its_files(tmp_path, hub, capsys):
    out = tmp_path / "a.tzip"
    report = tz.compress_file(hub, out)
    every_byte = sum(len(b or b"") for _, b, _ in _tree(hub).values())
    assert report.original_bytes == every_byte  # the report counts every file of the folder
    assert report.compressed_bytes < every_byte
    assert main(["info", str(out)]) == 0
    assert "and 12 other files and folders" in capsys.readouterr().out
    doc = tz.info(out)
    kept = {f["path"]: f for f in doc["kept_files"]}
    assert kept["empty"]["folder"] and kept["config.json"]["mode"] == 0o444
    assert doc["original_bytes"] == every_byte
    # the files are no tensors: tensor views see the weights only
    assert sorted(tz.load_file(out)) == sorted(k for shard in _weights(1) for k in shard)


def test_verify_against_finds_a_changed_or_missing_file(tmp_path, hub):
    out = tmp_path / "a.tzip"
    tz.compress_file(hub, out)
    twin = tmp_path / "twin"
    assert main(["decompress", str(out), "-o", str(twin)]) == 0
    os.chmod(twin / "config.json", 0o644)
    (twin / "config.json").write_text('{"hidden_size": 65, "architectures": ["Bert"]}')
    os.chmod(twin / "config.json", 0o444)
    with pytest.raises(tz.CorruptDataError, match="config.json differs"):
        tz.verify_file(out, against=twin)
    (twin / "config.json").unlink()
    with pytest.raises(tz.CorruptDataError, match="config.json"):
        tz.verify_file(out, against=twin)


def test_a_damaged_file_chunk_fails_verify_and_decompress(tmp_path, hub):
    out = tmp_path / "a.tzip"
    tz.compress_file(hub, out)
    blob = bytearray(out.read_bytes())

    with TzipReader(out) as reader:
        chunk = reader.header.files["tokenizer.json"].data.chunks[0]
    blob[chunk.offset + chunk.length // 2] ^= 0x40
    out.write_bytes(bytes(blob))
    assert main(["verify", str(out)]) != 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "back")]) != 0
    assert not (tmp_path / "back").exists()


@pytest.mark.parametrize("path", ["../evil", "/etc/evil", "a/../../evil", "a//b", "."])
def test_archived_paths_that_leave_the_output_are_refused(tmp_path, hub, path):
    out = tmp_path / "a.tzip"
    tz.compress_file(hub, out)

    def edit(header):
        header["files"][0]["path"] = path

    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header(out.read_bytes(), edit))
    with pytest.raises(HeaderError, match="not a relative path|not a plain file name"):
        tz.decompress_file(bad, tmp_path / "back")
    assert main(["decompress", str(bad), "-o", str(tmp_path / "back")]) != 0
    assert not (tmp_path / "back").exists() and not (tmp_path / "evil").exists()


def test_archived_paths_that_collide_are_refused(tmp_path, hub):
    out = tmp_path / "a.tzip"
    tz.compress_file(hub, out)
    blob = out.read_bytes()
    cases = {
        "twice": lambda h: h["files"].__setitem__(1, {**h["files"][1], "path": h["files"][0]["path"]}),
        "over a shard": lambda h: h["files"][0].__setitem__("path", NAMES[0]),
        "under a file": lambda h: h["files"][0].__setitem__("path", "config.json/x"),
        "no feature": lambda h: h.pop("features"),
    }
    for what, edit in cases.items():
        bad = tmp_path / f"{what}.tzip"
        bad.write_bytes(rewrite_header(blob, edit))
        with pytest.raises(HeaderError):
            tz.decompress_file(bad, tmp_path / "back")
        assert not (tmp_path / "back").exists(), what


def test_a_newer_required_feature_is_refused_with_upgrade_before_unknown_keys(tmp_path, hub):
    out = tmp_path / "a.tzip"
    tz.compress_file(hub, out)

    def edit(header):
        header["features"]["required"].append("from-the-future")
        header["future_key"] = 1

    bad = tmp_path / "new.tzip"
    bad.write_bytes(rewrite_header(out.read_bytes(), edit))
    with pytest.raises(HeaderError, match="upgrade tensorzip"):
        tz.decompress_file(bad, tmp_path / "back")


def test_the_writer_keeps_files_after_tensors_and_checks_them(tmp_path):
    from tensorzip.container import TzipWriter

    writer = TzipWriter(tmp_path / "w.tzip", source={"format": "safetensors-folder",
                                                      "files": [{"name": "m.safetensors", "header": "{}",
                                                                 "tensors": 0}]})
    writer.add_file("notes.txt", np.frombuffer(b"hello", np.uint8).copy(), 0o644)
    with pytest.raises(TensorzipError, match="after a file"):
        writer.add("w", np.zeros(3, np.float32))
    with pytest.raises(TensorzipError, match="added twice"):
        writer.add_file("notes.txt", np.zeros(1, np.uint8), 0o644)
    writer.add_file("../escape", np.zeros(1, np.uint8), 0o644)
    with pytest.raises(HeaderError, match="not a plain file name"):
        writer.close()
    assert not (tmp_path / "w.tzip").exists()


def test_symlinked_folder_and_special_files_are_refused_by_name(tmp_path, hub):
    os.symlink(hub / "1_Pooling", hub / "linked-folder")
    with pytest.raises(tz.InputFileError, match="linked-folder: a symbolic link to a folder"):
        tz.compress_file(hub, tmp_path / "a.tzip")
    (hub / "linked-folder").unlink()
    os.mkfifo(hub / "pipe")
    assert main(["compress", str(hub), "--archive", "-o", str(tmp_path / "a.tzip")]) != 0
    assert not (tmp_path / "a.tzip").exists()


# -- fine-tune folders against a base -------------------------------------------------------


def _size(path: str | Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def family(tmp_path):
    base = _weights(1)
    return _hub_folder(tmp_path / "base", base), _hub_folder(tmp_path / "ft", _weights(2, 0.01, base))


def _bases(tmp_path: Path, base: Path) -> dict[str, Path]:
    """The base in every form: its folder, a compressed folder and an archive."""
    tz.compress_folder(base, tmp_path / "base.tzip")
    tz.compress_file(base, tmp_path / "base-archive.tzip")
    return {"folder": base, "compressed folder": tmp_path / "base.tzip", "archive": tmp_path / "base-archive.tzip"}


@pytest.mark.parametrize("mode", ["folder", "archive"])
def test_fine_tune_folder_against_every_form_of_its_base(tmp_path, family, mode):
    base, ft = family
    plain = _size(tz.compress_file(ft, tmp_path / "plain.tzip").target if mode == "archive"
                  else tz.compress_folder(ft, tmp_path / "plain-folder.tzip").target)
    for form, path in _bases(tmp_path, base).items():
        out = tmp_path / f"ft-{mode}-{form.replace(' ', '-')}.tzip"
        args = ["compress", str(ft), "--base", str(path), "-o", str(out), *(["--archive"] if mode == "archive" else [])]
        assert main(args) == 0, form
        assert _size(out) < plain * 0.9, form  # the base paid for itself
        back = tmp_path / f"back-{mode}-{form.replace(' ', '-')}"
        assert main(["decompress", str(out), "-o", str(back), "--base", str(path)]) == 0, form
        assert _tree(back) == _tree(ft), form


def test_compressed_folder_finds_its_base_beside_it(tmp_path, family):
    base, ft = family
    assert main(["compress", str(ft), "--base", str(base)]) == 0  # writes ft.tzip/ beside base/
    assert main(["verify", str(tmp_path / "ft.tzip")]) == 0
    assert main(["decompress", str(tmp_path / "ft.tzip"), "-o", str(tmp_path / "back")]) == 0
    assert _tree(tmp_path / "back") == _tree(ft)
    base.rename(tmp_path / "elsewhere")
    assert main(["decompress", str(tmp_path / "ft.tzip"), "-o", str(tmp_path / "back2")]) != 0
    assert not (tmp_path / "back2").exists()


def test_a_base_that_saves_almost_nothing_is_not_made_a_dependency(tmp_path, capsys):
    rng = np.random.default_rng(9)
    tiny = np.arange(16, dtype=np.float32)
    model, base = tmp_path / "model.safetensors", tmp_path / "base.safetensors"
    save_safetensors({"big": rng.standard_normal((1000, 256)).astype(np.float32), "tiny": tiny}, str(model))
    save_safetensors({"tiny": tiny}, str(base))  # identical, but 64 bytes of ~1 MB
    report = tz.compress_file(model, tmp_path / "a.tzip", base=base)
    assert report.base is None and "coded plainly" in report.base_not_used
    assert tz.info(tmp_path / "a.tzip")["base"] is None
    base.unlink()  # not needed: the file decodes alone
    assert tz.load_file(tmp_path / "a.tzip")["tiny"].tobytes() == tiny.tobytes()
    save_safetensors({"tiny": tiny}, str(base))
    assert main(["compress", str(model), "--base", str(base), "-o", str(tmp_path / "b.tzip")]) == 0
    out = capsys.readouterr().out
    assert "coded plainly and depends on no base" in out and "coded against" not in out


def test_verbose_says_per_tensor_what_the_base_saved(tmp_path, family, capsys):
    base, ft = family
    assert main(["compress", str(ft / NAMES[0]), "--base", str(base / NAMES[0]), "-o", str(tmp_path / "a.tzip"),
                 "-v"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("layer.0.weight")]
    assert lines and "(base saved ~" in lines[0]
    report = tz.compress_file(ft / NAMES[0], tmp_path / "b.tzip", base=base / NAMES[0])
    assert report.base_savings["layer.0.weight"] > 0 and report.base_saved_bytes == sum(report.base_savings.values())


def test_a_compressed_folder_base_is_checked_like_any_base(tmp_path, family):
    base, ft = family
    (tmp_path / "notabase").mkdir()
    (tmp_path / "notabase" / "x.tzip").write_bytes(b"not a tzip at all")
    with pytest.raises(tz.InputFileError, match="not a .tzip file"):
        tz.compress_file(ft, tmp_path / "a.tzip", base=tmp_path / "notabase")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tz.InputFileError, match="neither .safetensors nor .tzip"):
        tz.compress_file(ft, tmp_path / "a.tzip", base=tmp_path / "empty")
    assert MAGIC  # the check reads the first bytes


def test_golden_archive_with_files_restores_every_entry(tmp_path):
    golden = Path(__file__).parent / "golden" / "archive_files_v1"
    expected = json.loads((golden / "expected.json").read_text())
    assert main(["verify", str(golden / "archive.tzip")]) == 0
    tz.decompress_file(golden / "archive.tzip", tmp_path / "back")
    found = {}
    for path, (kind, data, mode) in _tree(tmp_path / "back").items():
        found[path] = {"kind": kind} if kind == "folder" else {"kind": kind, "mode": mode, "hex": data.hex()}
    assert found == expected


@pytest.mark.parametrize("damage", ["delete a config", "change a config", "swap two shards", "add a file",
                                    "delete an empty folder"])
def test_a_compressed_folder_changed_after_compression_fails_verify_and_decompress(tmp_path, hub, damage, capsys):
    import shutil

    out = tmp_path / "model.tzip"
    assert main(["compress", str(hub), "-o", str(out)]) == 0
    assert (out / "tensorzip-manifest.json").is_file()
    shards = [out / name.replace(".safetensors", ".tzip") for name in NAMES]
    if damage == "delete a config":
        (out / "1_Pooling" / "config.json").unlink()
    elif damage == "change a config":
        (out / "tokenizer.json").write_text("{}")
    elif damage == "swap two shards":
        shards[0].rename(tmp_path / "x")
        shards[1].rename(shards[0])
        (tmp_path / "x").rename(shards[1])
    elif damage == "add a file":
        (out / "notes.txt").write_text("mine")
    else:
        shutil.rmtree(out / "empty")
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    assert main(["decompress", str(out), "-o", str(tmp_path / "back")]) == 1
    assert "no longer matches its manifest" in capsys.readouterr().err
    assert not (tmp_path / "back").exists()


def test_folder_permission_bits_come_back_in_both_modes(tmp_path, hub):
    os.chmod(hub / "a" / "b", 0o700)
    os.chmod(hub / "empty", 0o750)
    for mode in ("archive", "folder"):
        out = tmp_path / f"{mode}.tzip"
        assert main(["compress", str(hub), "-o", str(out), *(["--archive"] if mode == "archive" else [])]) == 0
        assert main(["decompress", str(out), "-o", str(tmp_path / f"back-{mode}")]) == 0
        back = tmp_path / f"back-{mode}"
        for folder in ("a", "a/b", "a/b/c", "empty", "1_Pooling"):
            assert stat.S_IMODE((back / folder).stat().st_mode) == stat.S_IMODE((hub / folder).stat().st_mode), (
                mode, folder)


def test_a_model_folder_with_a_stray_tzip_is_still_a_model_folder(tmp_path, hub, capsys):
    tz.save_file({"x": np.zeros(4, np.float32)}, hub / "other.tzip")
    assert tz.info(hub)["kind"] == "model-folder"
    assert main(["decompress", str(hub), "-o", str(tmp_path / "out")]) == 1  # not taken for a compressed folder
    assert not (tmp_path / "out").exists()
    assert main(["compress", str(hub), "-o", str(tmp_path / "f.tzip")]) == 1
    assert "a .tzip file beside the weights" in capsys.readouterr().err
    assert main(["compress", str(hub), "--archive", "-o", str(tmp_path / "a.tzip")]) == 0  # kept as a file
    assert main(["decompress", str(tmp_path / "a.tzip"), "-o", str(tmp_path / "back")]) == 0
    assert _tree(tmp_path / "back") == _tree(hub)


@pytest.mark.parametrize("mode", ["archive", "folder"])
def test_verify_against_compares_permission_bits_too(tmp_path, hub, mode):
    out = tmp_path / "m.tzip"
    assert main(["compress", str(hub), "-o", str(out), *(["--archive"] if mode == "archive" else [])]) == 0
    assert main(["verify", str(out), "--against", str(hub)]) == 0
    twin = tmp_path / "twin"
    assert main(["decompress", str(out), "-o", str(twin)]) == 0
    os.chmod(twin / "run.sh", 0o644)
    assert main(["verify", str(out), "--against", str(twin)]) == 1


@pytest.mark.parametrize("version", ["compressed_folder_v1", "compressed_folder_v2"])
def test_golden_compressed_folders_stay_readable(tmp_path, version):
    """Manifest format 1 (no guards, written by the code of dd2ff94) and 2 (with guards)."""
    golden = Path(__file__).parent / "golden" / version
    expected = {name: bytes.fromhex(text) for name, text in json.loads((golden / "expected.json").read_text()).items()}
    verify_folder(golden / "model.tzip")
    tz.decompress_folder(golden / "model.tzip", tmp_path / "model")
    restored = {p.relative_to(tmp_path / "model").as_posix(): p.read_bytes()
                for p in sorted((tmp_path / "model").rglob("*")) if p.is_file()}
    assert restored == expected
    assert (golden / "model.tzip" / "model.safetensors").exists() == (version == "compressed_folder_v2")
    from safetensors.numpy import load

    tensors = {}
    for name in ("model-1.safetensors", "model-2.safetensors"):
        tensors |= load(expected[name])
    loaded = tz.torch.load_state_dict(golden / "model.tzip") if _has_torch() else None
    if loaded is not None:
        assert {k: v.numpy().tobytes() for k, v in loaded.items()} == {k: v.tobytes() for k, v in tensors.items()}


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None
