"""Where the CLI writes, as a new user tried it (session 7): standard output only where it
works and with the right content, never over an input or a base down a chain, and every
refusal one line that names what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
import tensorzip.embeddings as tze
from tensorzip.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden" / "blake3_pins_v1"


def _cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tensorzip", *map(str, argv)], capture_output=True, **kwargs)


@pytest.fixture
def chain(tmp_path):
    """A copy of the golden chain: base.safetensors <- tuned.tzip <- tuned2.tzip."""
    for name in ("base.safetensors", "tuned.safetensors", "tuned.tzip", "tuned2.tzip"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("source, output", [("tuned.tzip", "base.safetensors"), ("tuned2.tzip", "tuned.tzip"),
                                            ("tuned2.tzip", "base.safetensors")])
def test_salvage_never_replaces_a_base_down_the_chain(chain, capsys, source, output):
    before = (chain / output).read_bytes()
    assert main(["salvage", str(chain / source), "-o", str(chain / output), "-f"]) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert (chain / output).read_bytes() == before


def test_chosen_tensors_to_standard_output_are_only_those(chain):
    done = _cli("decompress", chain / "tuned.tzip", "--tensor", "w.*", "-o", "-", cwd=chain)
    assert done.returncode == 0, done.stderr
    length = int.from_bytes(done.stdout[:8], "little")
    names = sorted(k for k in json.loads(done.stdout[8 : 8 + length]) if k != "__metadata__")
    assert names == ["w.bf16", "w.f32"]


def test_a_wrong_base_is_refused_before_the_stream_starts(chain):
    base = bytearray((chain / "base.safetensors").read_bytes())
    base[-1] ^= 1
    (chain / "base.safetensors").write_bytes(bytes(base))
    done = _cli("decompress", chain / "tuned.tzip", "-o", "-", env={**os.environ, "TENSORZIP_PIN_CACHE": "0"})
    assert done.returncode == 1 and done.stdout == b""
    assert b"differs from the one it was made with" in done.stderr


def test_a_closed_standard_output_is_one_line(chain):
    done = subprocess.run(f"{sys.executable} -m tensorzip decompress {chain / 'tuned.tzip'} -o - >&-", shell=True,
                          capture_output=True)
    assert done.returncode == 1 and b"standard output, which is closed" in done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [
    lambda d: ["embeddings", "decompress", d / "v.tzip", "-o", "-"],
    lambda d: ["embeddings", "compress", d / "v.npy", "--recall", "0.9", "-o", "-"],
    lambda d: ["salvage", d / "tuned.tzip", "-o", "-"],
])
def test_standard_output_is_refused_where_it_is_not_written(chain, capsys, argv, monkeypatch):
    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    np.save(chain / "v.npy", vectors)
    tze.save_file(vectors, chain / "v.tzip", recall=0.9, k=5)
    monkeypatch.chdir(chain)
    assert main([str(a) for a in argv(chain)]) == 1
    assert "-o - (standard output) is for tensorzip decompress" in capsys.readouterr().err
    assert not (chain / "-").exists()


def test_outputs_force_cannot_replace_are_said_so(chain, capsys):
    (chain / "folder").mkdir()
    assert main(["decompress", str(chain / "tuned.tzip"), "-o", str(chain / "folder")]) == 1
    assert "is a folder; name the output file" in capsys.readouterr().err
    assert main(["decompress", str(chain / "tuned.tzip"), "-o", "/dev/null", "-f"]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_restored_name_does_not_repeat_its_suffix(chain):
    tz.compress_file(chain / "tuned.safetensors", chain / "x.safetensors.tzip", base=chain / "base.safetensors")
    assert main(["decompress", str(chain / "x.safetensors.tzip")]) == 0
    assert (chain / "x.safetensors").read_bytes() == (chain / "tuned.safetensors").read_bytes()


def test_npz_and_npy_are_named_not_taken_for_checkpoints(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", x=np.ones(3))
    np.save(tmp_path / "a.npy", np.ones((4, 4), np.float32))
    save_safetensors({"w": np.ones(8, np.float32)}, str(tmp_path / "m.safetensors"))
    for argv in (["compress", tmp_path / "a.npz"], ["info", tmp_path / "a.npz"]):
        assert main([str(a) for a in argv]) == 1
        assert "a NumPy .npz archive" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "m.safetensors"), "--base", str(tmp_path / "a.npy")]) == 1
    assert "(a NumPy array) is not a checkpoint a base can be" in capsys.readouterr().err


def test_a_missing_base_down_a_chain_says_where_to_put_it(chain, capsys):
    (chain / "base.safetensors").unlink()
    assert main(["decompress", str(chain / "tuned2.tzip"), "-o", str(chain / "out.safetensors")]) == 1
    assert "put 'base.safetensors' beside" in capsys.readouterr().err


def test_a_bad_queries_file_is_named_and_numpy_integers_are_a_k(tmp_path, capsys):
    vectors = np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "q.npy", np.zeros((0, 16), np.float32))
    assert main(["embeddings", "compress", str(tmp_path / "v.npy"), "--recall", "0.9",
                 "--queries", str(tmp_path / "q.npy")]) == 1
    assert f"{tmp_path / 'q.npy'}: the queries:" in capsys.readouterr().err
    collection = tze.open(tze.compress(vectors, recall=0.9, k=5))
    scores, rows = collection.search(vectors[:2], k=np.int64(5))
    assert rows.shape == (2, 5)
