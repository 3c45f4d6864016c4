"""Hugging Face model folders compressed shard by shard (``tensorzip compress model_dir``):
a real transformers model saved in shards, the compressed layout, a byte-identical
folder back that transformers loads to the same model, atomic output, --force."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tensorzip as tz  # noqa: E402
from tensorzip import folders as model_folder  # noqa: E402
from tensorzip.cli.main import main  # noqa: E402
from tensorzip.container.records import guard_bytes  # noqa: E402
from tensorzip.files import decompress_file  # noqa: E402

INDEX = "model.safetensors.index.json"


def tiny_bert(dtype=None):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    model = transformers.BertModel(config).eval()
    return model.to(dtype) if dtype is not None else model


def save_model(model, folder: Path) -> Path:
    model.save_pretrained(folder, max_shard_size="40KB")
    (folder / "README.md").write_text("# tiny BERT\n\nFor tests.\n")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true}\n')
    (folder / "generation_config.json").write_bytes(b'{\r\n  "max_length": 20\r\n}')  # CRLF kept as is
    (folder / "extra" / "deeper").mkdir(parents=True)
    (folder / "extra" / "notes.txt").write_bytes(os.urandom(100))
    (folder / "empty").mkdir()
    return folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT saved as several safetensors shards with an index, config and other files."""
    model = tiny_bert()
    folder = save_model(model, tmp_path_factory.mktemp("bert") / "tiny-bert")
    assert len(list(folder.glob("*.safetensors"))) >= 3 and (folder / INDEX).exists()
    return model, folder


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``, by relative path."""
    found: dict[str, bytes | None] = {}
    for here, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(here, name), root)] = None
        for name in files:
            path = os.path.join(here, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_cli_folder_round_trip_is_byte_exact_and_loads_in_transformers(tmp_path, bert, capsys):
    model, folder = bert
    before = tree(folder)
    out = tmp_path / "tiny-bert.tzip"
    assert main(["compress", str(folder), "-o", str(out)]) == 0
    assert "shards compressed, 1 index rewritten" in capsys.readouterr().out
    assert tree(folder) == before  # the input is only read

    # The layout: a .tzip per shard, the index pointing at them, everything else copied.
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert sorted(p.name for p in out.glob("*.tzip")) == [n.replace(".safetensors", ".tzip") for n in shards]
    # The one .safetensors is the guard that tells plain transformers what to do (its dtype is a sentence).
    assert [p.name for p in out.rglob("*.safetensors")] == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == guard_bytes()
    with pytest.raises(Exception, match="compressed by tensorzip; load it with tensorzip.hf.transformers"):
        transformers.BertModel.from_pretrained(out)
    original_index = (folder / INDEX).read_text()
    rewritten = json.loads((out / INDEX).read_text())
    assert rewritten["tensorzip"] == {"format": 1, "original_index": original_index}
    original_map = json.loads(original_index)["weight_map"]
    assert rewritten["weight_map"] == {k: v.replace(".safetensors", ".tzip") for k, v in original_map.items()}
    assert rewritten["metadata"] == json.loads(original_index)["metadata"]
    for name in ("config.json", "README.md", "generation_config.json", "extra/notes.txt"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    assert (out / "empty").is_dir() and (out / "extra" / "deeper").is_dir()

    # Each shard decompresses alone to the identical file.
    for name in shards:
        decompress_file(out / name.replace(".safetensors", ".tzip"), tmp_path / name)
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()

    # Default output name: the folder without .tzip.
    assert main(["decompress", str(out)]) == 0
    restored = tmp_path / "tiny-bert"
    assert tree(restored) == before
    assert hidden_leftovers(tmp_path) == []
    assert main(["verify", str(out), "--against", str(folder)]) == 0
    assert f"identical to {folder}" in capsys.readouterr().out

    back = transformers.BertModel.from_pretrained(restored).eval()
    expected = model.state_dict()
    assert back.state_dict().keys() == expected.keys()
    assert all(torch.equal(back.state_dict()[k], v) for k, v in expected.items())
    ids = torch.tensor([[1, 5, 17, 300, 2, 0]])
    with torch.no_grad():
        assert torch.equal(back(ids).last_hidden_state, model(ids).last_hidden_state)


def test_default_output_name_and_force(tmp_path, bert, capsys):
    _, source = bert
    folder = tmp_path / "my.model-v1.5"  # dots in the name: .tzip is appended, nothing replaced
    folder.mkdir()
    for name, content in tree(source).items():
        if content is not None and "/" not in name:
            (folder / name).write_bytes(content)
    assert main(["compress", str(folder)]) == 0
    out = tmp_path / "my.model-v1.5.tzip"
    assert out.is_dir()
    (out / "mine.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["compress", str(folder)]) == 1
    assert "already exists (use --force" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(["compress", str(folder), "--force"]) == 1  # --force never deletes what it did not write
    assert "mine.txt" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    assert main(["compress", str(folder), "--force"]) == 0

    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "mine.txt").write_text("keep me")
    assert main(["decompress", str(out), "-o", str(restored)]) == 1
    assert (restored / "mine.txt").read_text() == "keep me"
    assert main(["decompress", str(out), "-o", str(restored), "--force"]) == 1
    (restored / "mine.txt").unlink()
    assert main(["decompress", str(out), "-o", str(restored), "--force"]) == 0
    assert tree(restored) == tree(folder)
    assert hidden_leftovers(tmp_path) == []


def test_failure_on_the_second_shard_leaves_no_output(tmp_path, bert, monkeypatch):
    _, folder = bert
    calls = []
    real = model_folder.compress_file

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise tz.OutputFileError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(model_folder, "compress_file", failing)
    before = tree(folder)
    out = tmp_path / "out.tzip"
    assert main(["compress", str(folder), "-o", str(out)]) == 1
    assert len(calls) == 2
    assert not out.exists() and hidden_leftovers(tmp_path) == []
    assert tree(folder) == before

    # An existing output is kept whole when the replacement fails.
    monkeypatch.setattr(model_folder, "compress_file", real)
    tz.compress_folder(folder, out)
    kept = tree(out)
    calls.clear()
    monkeypatch.setattr(model_folder, "compress_file", failing)
    with pytest.raises(tz.OutputFileError, match="simulated"):
        tz.compress_folder(folder, out, overwrite=True)
    assert tree(out) == kept and hidden_leftovers(tmp_path) == []

    # Decompression too.
    def damaged(*args, **kwargs):
        raise tz.CorruptDataError("bad chunk (simulated)")

    monkeypatch.setattr(model_folder, "decompress_file", damaged)
    with pytest.raises(tz.CorruptDataError):
        tz.decompress_folder(out, tmp_path / "back")
    assert not (tmp_path / "back").exists() and hidden_leftovers(tmp_path) == []


def test_api_reports_and_progress(tmp_path, bert):
    _, folder = bert
    seen = []
    report = tz.compress_folder(folder, tmp_path / "c", progress=lambda done, total: seen.append((done, total)))
    total = sum(len(b) for b in tree(folder).values() if b is not None)
    assert report.original_bytes == total
    assert report.compressed_bytes == sum(len(b) for b in tree(tmp_path / "c").values() if b is not None)
    assert report.ratio == pytest.approx(total / report.compressed_bytes)
    assert len(report.shards) == len(list(folder.glob("*.safetensors")))
    assert all(isinstance(s, tz.CompressionReport) and s.target.endswith(".tzip") for s in report.shards)
    assert all(Path(s.target).parent == tmp_path / "c" for s in report.shards)  # not the temporary folder
    assert report.indexes == [INDEX]
    assert "config.json" in report.copied and "extra/notes.txt" in report.copied
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    doc = report.to_json()
    assert doc["ratio"] == report.ratio and len(doc["shards"]) == len(report.shards)
    json.dumps(doc)

    back = tz.decompress_folder(tmp_path / "c", tmp_path / "d")
    assert back.original_bytes == total and back.compressed_bytes == report.compressed_bytes
    assert all(isinstance(s, tz.DecompressionReport) for s in back.shards)
    assert tree(tmp_path / "d") == tree(folder)


def test_archive_option_keeps_one_file_with_every_file_of_the_folder(tmp_path, bert, capsys):
    _, model_folder = bert
    archive = tmp_path / "one.tzip"
    assert main(["compress", str(model_folder), "--archive", "-o", str(archive), "-v"]) == 0
    assert archive.is_file()
    assert "context" in capsys.readouterr().out  # -v works for a folder archive
    assert main(["decompress", str(archive), "-o", str(tmp_path / "back")]) == 0
    assert tree(tmp_path / "back") == tree(model_folder)  # config, tokenizer and all: byte for byte


def test_shards_in_subfolders_are_compressed_too(tmp_path, bert):
    model, folder = bert
    copy = tmp_path / "pipeline"
    copy.mkdir()
    (copy / "model_index.json").write_text("{}")
    sub = copy / "text_encoder"
    model.save_pretrained(sub, max_shard_size="40KB")
    tz.compress_folder(copy, tmp_path / "pipeline.tzip")
    assert (tmp_path / "pipeline.tzip" / "text_encoder" / INDEX).exists()
    assert list((tmp_path / "pipeline.tzip" / "text_encoder").glob("*.tzip"))
    assert all(p.read_bytes() == guard_bytes() for p in (tmp_path / "pipeline.tzip").rglob("*.safetensors"))
    tz.decompress_folder(tmp_path / "pipeline.tzip", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(copy)


def test_refusals(tmp_path, bert, capsys):
    _, folder = bert
    work = tmp_path / "work"
    work.mkdir()
    for name in ("config.json", INDEX, *(p.name for p in folder.glob("*.safetensors"))):
        (work / name).write_bytes((folder / name).read_bytes())
    cases = []

    def refused(error, match, action):
        with pytest.raises(error, match=match):
            action()
        cases.append(match)

    refused(tz.OutputFileError, "inside the input", lambda: tz.compress_folder(work, work / "out.tzip"))
    refused(tz.OutputFileError, "holding the input", lambda: tz.compress_folder(work, tmp_path))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "config.json").write_text("{}")
    refused(tz.InputFileError, "no .safetensors", lambda: tz.compress_folder(tmp_path / "none", tmp_path / "n"))
    refused(tz.InputFileError, "not a compressed model folder",
            lambda: tz.decompress_folder(tmp_path / "none", tmp_path / "n"))
    refused(tz.InputFileError, "no such folder", lambda: tz.compress_folder(tmp_path / "absent", tmp_path / "n"))

    (work / "model.tzip").write_bytes(b"x")
    refused(tz.InputFileError, "a .tzip file beside the weights", lambda: tz.compress_folder(work, tmp_path / "o"))
    (work / "model.tzip").unlink()
    index = (work / INDEX).read_text()
    (work / INDEX).write_text(json.dumps({"weight_map": {"w": "model-00009-of-00009.safetensors"}}))
    refused(tz.InputFileError, "not in the folder", lambda: tz.compress_folder(work, tmp_path / "o"))
    (work / INDEX).write_text("{not json")
    refused(tz.InputFileError, "not valid UTF-8 JSON", lambda: tz.compress_folder(work, tmp_path / "o"))
    (work / INDEX).write_text(index)
    os.symlink(tmp_path / "none", work / "linked")
    refused(tz.InputFileError, "symbolic link to a folder", lambda: tz.compress_folder(work, tmp_path / "o"))
    (work / "linked").unlink()
    assert not (tmp_path / "o").exists() and not (tmp_path / "n").exists() and hidden_leftovers(tmp_path) == []

    # A compressed folder given to compress again; a decompress output name that cannot be guessed.
    tz.compress_folder(work, tmp_path / "packed")
    refused(tz.InputFileError, "already a compressed folder", lambda: tz.compress_folder(tmp_path / "packed",
                                                                                        tmp_path / "o"))
    assert main(["decompress", str(tmp_path / "packed")]) == 1
    assert "name the output folder with -o" in capsys.readouterr().err
    # A folder coded against a folder (here: itself) in folder mode, restored whole.
    assert main(["compress", str(work), "--base", str(work), "-o", str(tmp_path / "self.tzip")]) == 0
    assert main(["decompress", str(tmp_path / "self.tzip"), "-o", str(tmp_path / "self")]) == 0
    assert tree(tmp_path / "self") == tree(work)
    assert len(cases) == 10


def test_verify_folder_finds_every_difference(tmp_path, bert):
    _, folder = bert
    tz.compress_folder(folder, tmp_path / "c")
    report = model_folder.verify_folder(tmp_path / "c")
    assert report.tensors == len(transformers.BertModel.from_pretrained(folder).state_dict())
    tz.decompress_folder(tmp_path / "c", tmp_path / "copy")
    model_folder.verify_folder(tmp_path / "c", against=tmp_path / "copy")
    changes = [("README.md", b"changed"), (INDEX, b"{}"), ("extra/new.txt", b"new")]
    for name, content in changes:
        path = tmp_path / "copy" / name
        kept = path.read_bytes() if path.exists() else None
        path.write_bytes(content)
        with pytest.raises(tz.CorruptDataError, match="differs from|are not those of"):
            model_folder.verify_folder(tmp_path / "c", against=tmp_path / "copy")
        if kept is None:
            path.unlink()
        else:
            path.write_bytes(kept)
    shard = next((tmp_path / "copy").glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(tz.CorruptDataError, match="differs from"):
        model_folder.verify_folder(tmp_path / "c", against=tmp_path / "copy")


def test_file_symlinks_are_followed(tmp_path, bert):
    """A Hugging Face cache snapshot links every file to a blob: the content is what counts."""
    _, folder = bert
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for path in folder.iterdir():
        if path.is_file():
            os.symlink(path, snapshot / path.name)
    tz.compress_folder(snapshot, tmp_path / "snapshot.tzip")
    tz.decompress_folder(tmp_path / "snapshot.tzip", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(snapshot)
    assert not any(p.is_symlink() for p in (tmp_path / "back").iterdir())


def test_every_command_names_the_guard_file(tmp_path, bert, capsys):
    _, folder = bert
    out = tmp_path / "c.tzip"
    model_folder.compress_folder(folder, out)
    guard = out / "model.safetensors"
    for command in (["info", str(guard)], ["ls", str(guard)], ["verify", str(guard)], ["analyze", str(guard)],
                    ["compress", str(guard), "-o", str(tmp_path / "x.tzip")],
                    ["decompress", str(guard), "-o", str(tmp_path / "x.safetensors")]):
        assert main(command) != 0, command
        assert "the guard file of a compressed model folder" in capsys.readouterr().err, command
    assert not (tmp_path / "x.tzip").exists() and not (tmp_path / "x.safetensors").exists()
    with pytest.raises(tz.WrongKindError, match="guard file"):
        tz.load_file(guard)
    assert main(["info", str(out / "tensorzip-manifest.json")]) != 0
    assert "the manifest of a compressed model folder" in capsys.readouterr().err
