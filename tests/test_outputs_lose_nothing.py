"""The two data-loss defects fixed before the 'one house' redesign (issue 15): an archive
must never drop a folder's other files silently, and --force may replace neither a device
node nor any input of the operation (a base deeper in a chain, --queries, --calibration,
the analysed file's base). Each test fails on the code before the fix."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file as load
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli.main import main
from tensorzip.errors import InputFileError, OutputFileError

from .test_folder import sharded  # noqa: F401 - fixture


def _model_folder(folder):
    """A sharded folder with the files a Hugging Face model folder also holds."""
    (folder / "config.json").write_text(json.dumps({"hidden_size": 64}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text("{}")
    return folder


def test_archive_of_a_folder_keeps_its_other_files(tmp_path, sharded):  # noqa: F811
    folder = _model_folder(sharded[0])
    (folder / "empty").mkdir()
    for mode in ("archive", "folder"):
        out = tmp_path / f"{mode}.tzip"
        assert main(["compress", str(folder), *(["--archive"] if mode == "archive" else []), "-o", str(out)]) == 0
        assert main(["decompress", str(out), "-o", str(tmp_path / f"back-{mode}")]) == 0
        back = tmp_path / f"back-{mode}"
        assert sorted(p.relative_to(back) for p in back.rglob("*")) == sorted(
            p.relative_to(folder) for p in folder.rglob("*"))
        for path in folder.rglob("*"):
            if path.is_file():
                assert (back / path.relative_to(folder)).read_bytes() == path.read_bytes()


def _chain(tmp_path):
    rng = np.random.default_rng(3)
    weights = {"w": rng.standard_normal((64, 64)).astype(np.float32)}
    save_safetensors(weights, str(tmp_path / "b0.safetensors"))
    for step in (1, 2):
        weights = {"w": (weights["w"] * np.float32(1.0001)).astype(np.float32)}
        previous = tmp_path / ("b0.safetensors" if step == 1 else f"b{step - 1}.tzip")
        tz.save_file(weights, tmp_path / f"b{step}.tzip", base=previous)
    return weights


def test_force_never_replaces_a_base_deeper_in_the_chain(tmp_path, capsys):
    _chain(tmp_path)
    original = (tmp_path / "b0.safetensors").read_bytes()
    code = main(["decompress", str(tmp_path / "b2.tzip"), "-o", str(tmp_path / "b0.safetensors"), "--force"])
    assert code != 0 and "b0.safetensors" in capsys.readouterr().err
    assert (tmp_path / "b0.safetensors").read_bytes() == original
    with pytest.raises(OutputFileError):
        tz.decompress_file(tmp_path / "b2.tzip", tmp_path / "b0.safetensors")
    with pytest.raises(OutputFileError):  # compressing against b2 may not replace b0 either
        tz.compress_file(tmp_path / "b0.safetensors", tmp_path / "b1.tzip", base=tmp_path / "b2.tzip")
    assert (tmp_path / "b0.safetensors").read_bytes() == original


def test_analyze_html_never_replaces_the_analysed_files_base(tmp_path, capsys):
    _chain(tmp_path)
    original = (tmp_path / "b0.safetensors").read_bytes()
    code = main(["analyze", str(tmp_path / "b2.tzip"), "--html", str(tmp_path / "b0.safetensors"), "--force"])
    assert code != 0 and "--html" in capsys.readouterr().err
    assert (tmp_path / "b0.safetensors").read_bytes() == original


def test_force_never_replaces_the_queries_file(tmp_path, capsys):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "v.npy", rng.standard_normal((300, 16)).astype(np.float32))
    np.save(tmp_path / "q.npy", rng.standard_normal((20, 16)).astype(np.float32))
    queries = (tmp_path / "q.npy").read_bytes()
    code = main(["embeddings", "compress", str(tmp_path / "v.npy"), "--recall", "0.9", "--queries",
                 str(tmp_path / "q.npy"), "-o", str(tmp_path / "q.npy"), "--force"])
    assert code != 0 and "q.npy" in capsys.readouterr().err
    assert (tmp_path / "q.npy").read_bytes() == queries


def test_force_never_replaces_the_calibration_file(tmp_path, capsys):
    rng = np.random.default_rng(6)
    save_safetensors({"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "m.safetensors"))
    np.savez(tmp_path / "cal.npz", w=np.ones(64, np.float32))
    calibration = (tmp_path / "cal.npz").read_bytes()
    code = main(["compress", str(tmp_path / "m.safetensors"), "--lossy", "--budget", "0.2", "--calibration",
                 str(tmp_path / "cal.npz"), "-o", str(tmp_path / "cal.npz"), "--force"])
    assert code != 0 and "cal.npz" in capsys.readouterr().err
    assert (tmp_path / "cal.npz").read_bytes() == calibration


def test_force_never_replaces_a_fifo_or_device_node(tmp_path, small_tzip, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code = main(["decompress", str(small_tzip), "-o", str(fifo), "--force"])
    assert code != 0 and "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    with pytest.raises(OutputFileError, match="not a regular file"):
        tz.decompress_file(small_tzip, link)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert link.is_symlink()


def test_digest_proves_a_restore_without_the_original(tmp_path, capsys):
    rng = np.random.default_rng(9)
    save_safetensors({"w": rng.standard_normal((300, 64)).astype(np.float32)}, str(tmp_path / "m.safetensors"))
    plain = tz.compress_file(tmp_path / "m.safetensors", tmp_path / "plain.tzip")
    assert main(["compress", str(tmp_path / "m.safetensors"), "--digest", "-o", str(tmp_path / "m.tzip")]) == 0
    recorded = tz.safe_open(tmp_path / "m.tzip").metadata()["tensorzip.source_digest"]
    import hashlib

    assert recorded == "blake2b-256:" + hashlib.blake2b((tmp_path / "m.safetensors").read_bytes(),
                                                        digest_size=32).hexdigest()
    # the tensors are coded exactly as without a digest; only the header grows
    assert (tmp_path / "m.tzip").stat().st_size - plain.compressed_bytes < 200
    (tmp_path / "m.safetensors").unlink()  # verify needs no original
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "m.tzip")]) == 0
    assert "matches the digest" in capsys.readouterr().out
    # a wrong digest is caught, naming both
    from .conftest import rewrite_header

    blob = rewrite_header((tmp_path / "m.tzip").read_bytes(),
                          lambda d: d["metadata"].__setitem__("tensorzip.source_digest", "blake2b-256:" + "0" * 64))
    (tmp_path / "bad.tzip").write_bytes(blob)
    with pytest.raises(tz.CorruptDataError, match="digest"):
        tz.verify_file(tmp_path / "bad.tzip")
    # refused where it cannot hold
    assert main(["compress", str(tmp_path / "plain.tzip"), "--digest", "-o", str(tmp_path / "x.tzip")]) != 0


def test_a_compressed_folder_missing_a_shard_fails_verify_and_decompress(tmp_path, sharded, capsys):  # noqa: F811
    folder = sharded[0]
    tz.compress_folder(folder, tmp_path / "c.tzip")
    (tmp_path / "c.tzip" / "model-00002-of-00002.tzip").unlink()
    assert main(["verify", str(tmp_path / "c.tzip")]) == 1
    assert "model-00002-of-00002" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "c.tzip"), "-o", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def test_a_lossy_layer_or_a_fifo_is_refused_as_a_base(tmp_path):
    rng = np.random.default_rng(4)
    save_safetensors({"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "m.safetensors"))
    tz.embeddings.save_file(rng.standard_normal((300, 16)).astype(np.float32), tmp_path / "e.tzip", mode="lossless")
    with pytest.raises(InputFileError, match="lossy embeddings file, not a checkpoint"):
        tz.compress_file(tmp_path / "m.safetensors", tmp_path / "x.tzip", base=tmp_path / "e.tzip")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputFileError, match="not a regular file"):  # and no hang
        tz.compress_file(tmp_path / "m.safetensors", tmp_path / "x.tzip", base=tmp_path / "fifo")
    assert not (tmp_path / "x.tzip").exists()


def test_a_base_no_tensor_uses_is_not_made_a_dependency(tmp_path):
    rng = np.random.default_rng(12)
    save_safetensors({"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "base.safetensors"))
    save_safetensors({"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "other.safetensors"))
    report = tz.compress_file(tmp_path / "other.safetensors", tmp_path / "o.tzip", base=tmp_path / "base.safetensors")
    assert report.base is None  # unrelated weights: nothing coded against the base
    (tmp_path / "base.safetensors").unlink()
    assert tz.load_file(tmp_path / "o.tzip")["w"].tobytes() == load(tmp_path / "other.safetensors")["w"].tobytes()


def test_a_base_given_for_a_deeper_link_says_how_chains_are_found(tmp_path):
    _chain(tmp_path)
    (tmp_path / "b0.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(tz.BaseMismatchError, match="replaces that file"):
        tz.load_file(tmp_path / "b2.tzip", base=tmp_path / "moved.safetensors")


def test_a_file_that_appears_while_writing_is_not_replaced_without_force(tmp_path):
    """Two commands writing one name at once: the check before writing passed for both, so
    the commit itself must refuse to replace what the other one put there."""
    from tensorzip.errors import OutputFileError
    from tensorzip.outputs.atomic import atomic_output

    target = tmp_path / "out.bin"
    with pytest.raises(OutputFileError, match="appeared while this ran"), \
            atomic_output(target, overwrite=False) as handle:
        handle.write(b"mine")
        target.write_bytes(b"theirs")  # the other command finished first
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left
    with atomic_output(target, overwrite=True) as handle:
        handle.write(b"mine")
    assert target.read_bytes() == b"mine"
