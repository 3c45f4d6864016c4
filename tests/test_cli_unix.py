"""The CLI behaves like a Unix tool (issue 16, first part): a closed pipe ends it quietly,
`-` means standard output where a stream can be written and is refused with the reason where
it cannot, and numeric flags are checked against their range, naming the flag."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.cli import main


def _cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tensorzip", *map(str, argv)], capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def many_tensors(tmp_path_factory):
    """A file whose `info` listing (3,000 lines) is larger than a pipe's buffer."""
    path = tmp_path_factory.mktemp("pipe") / "many.tzip"
    tz.save_file({f"layer.{i}.weight": np.full(4, i, np.float32) for i in range(3000)}, path)
    return path


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["text", "json"])
def test_a_closed_pipe_ends_quietly(many_tensors, extra):
    process = subprocess.Popen([sys.executable, "-m", "tensorzip", "info", str(many_tensors), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141, err  # as a tool killed by SIGPIPE
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_decompress_to_standard_output(tmp_path, small_tzip):
    expected = tmp_path / "ref.safetensors"
    tz.decompress_file(small_tzip, expected)
    done = _cli("decompress", small_tzip, "-o", "-")
    assert done.returncode == 0 and done.stdout == expected.read_bytes()
    assert b"standard output" in done.stderr
    assert not (small_tzip.parent / "-").exists()


def test_streams_that_cannot_work_are_refused_with_the_reason(tmp_path, small_tzip):
    source = tmp_path / "m.safetensors"
    tz.decompress_file(small_tzip, source)
    for argv, reason in ((["compress", "-"], "not standard input"),
                         (["compress", source, "-o", "-"], "written last"),
                         (["decompress", "-"], "not standard input")):
        done = _cli(*argv)
        assert done.returncode == 1 and reason in done.stderr.decode(), done.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0"], "--threads: 0 is outside [1, 256]"),
    (["--threads", "-3"], "--threads: -3 is outside"),
    (["--threads", "1000"], "--threads: 1000 is outside"),
    (["--threads", "two"], "--threads: 'two' is not a whole number"),
    (["--lossy", "--budget", "1.5"], "--budget: 1.5 is outside (0, 1]"),
    (["--lossy", "--budget", "0"], "--budget: 0 is outside (0, 1]"),
    (["--lossy", "--bits-per-weight", "nan"], "--bits-per-weight/--bits: nan is outside (0, 32]"),
])
def test_numeric_flags_are_checked(capsys, small_tzip, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["compress", str(small_tzip), *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_messages_name_cli_flags_and_lossy_outputs_get_their_own_name(tmp_path, capsys):
    from safetensors.numpy import save_file

    source = tmp_path / "m.safetensors"
    save_file({"w": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}, str(source))
    assert main(["compress", str(source), "--lossy"]) == 1
    err = capsys.readouterr().err
    assert "--budget" in err and "--bits-per-weight" in err and "budget=" not in err
    assert main(["compress", str(source)]) == 0  # the lossless default name, m.tzip ...
    assert main(["compress", str(source), "--lossy", "--bits-per-weight", "12"]) == 0  # ... does not collide
    assert (tmp_path / "m.lossy.tzip").exists() and (tmp_path / "m.tzip").exists()
    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32))
    capsys.readouterr()
    assert main(["embeddings", "compress", str(tmp_path / "v.npy")]) == 1
    err = capsys.readouterr().err
    assert "--recall" in err and "--lossless" in err and "recall=" not in err
    (tmp_path / "r.bin").write_bytes(bytes(range(256)))
    assert main(["compress", str(tmp_path / "r.bin")]) == 1
    assert "not a PyTorch file" in capsys.readouterr().err


def test_json_errors_are_json(tmp_path):
    done = _cli("info", tmp_path / "missing.tzip", "--json")
    assert done.returncode == 1
    import json

    error = json.loads(done.stdout)["error"]
    assert error["code"] == "InputFileError" and "missing.tzip" in error["message"]


def test_decompress_chosen_tensors(tmp_path, capsys):
    from safetensors.numpy import load_file as load

    rng = np.random.default_rng(3)
    tensors = {f"encoder.layer.{i}.{part}": rng.standard_normal((8, 8)).astype(np.float32)
               for i in range(3) for part in ("weight", "bias")}
    tz.save_file(tensors, tmp_path / "m.tzip", metadata={"note": "kept"})
    argv = ["decompress", str(tmp_path / "m.tzip"), "--tensor", "encoder.layer.1.*", "--tensor", "encoder.layer.2.bias"]
    assert main(argv) == 0
    got = load(str(tmp_path / "m.selected.safetensors"))
    assert sorted(got) == ["encoder.layer.1.bias", "encoder.layer.1.weight", "encoder.layer.2.bias"]
    assert all(got[name].tobytes() == tensors[name].tobytes() for name in got)
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "m.tzip"), "--tensor", "decoder.*", "-o", str(tmp_path / "x.st")]) == 1
    assert "no tensor matches 'decoder.*'" in capsys.readouterr().err and not (tmp_path / "x.st").exists()


def test_a_lossy_budget_that_destroys_weights_is_refused_unless_allowed(tmp_path, capsys):
    from safetensors.numpy import save_file

    source = tmp_path / "m.safetensors"
    rng = np.random.default_rng(2)
    save_file({"w": rng.standard_normal((256, 256)).astype(np.float32),
               "v": rng.standard_normal((64, 64)).astype(np.float32)}, str(source))
    assert main(["compress", str(source), "--lossy", "--bits-per-weight", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "relative RMS error" in err and "--allow-large-errors" in err
    assert not (tmp_path / "m.lossy.tzip").exists()
    assert main(["compress", str(source), "--lossy", "--bits-per-weight", "0.5", "--allow-large-errors"]) == 0


def test_info_and_verify_take_several_inputs(tmp_path, small_tzip, capsys):
    import json

    keys = np.random.default_rng(0).standard_normal((1, 1, 1, 32, 8)).astype(np.float32)
    tz.kv.save_file(keys, keys, tmp_path / "kv.tzip", step=0.1)
    assert main(["info", str(small_tzip), str(tmp_path / "kv.tzip"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["kind"] for r in results] == ["checkpoint", "kv-cache"]
    assert main(["verify", str(small_tzip), str(tmp_path / "kv.tzip")]) == 0
    assert capsys.readouterr().out.count(": OK") == 2
    assert main(["verify", str(small_tzip), str(tmp_path / "kv.tzip"), "--against", str(small_tzip)]) == 1
    assert "give one INPUT" in capsys.readouterr().err


def test_help_of_every_command_documents_every_argument():
    import argparse

    from tensorzip.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    assert sub.description, f"tensorzip {' '.join([*path, name])} has no description"
                    walk(sub, [*path, name])
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"tensorzip {' '.join(path)} {action.option_strings or action.dest}")

    walk(build_parser(), [])
    assert not missing, missing


def test_a_full_standard_output_is_one_line_not_a_traceback(small_tzip):
    done = subprocess.run(f"{sys.executable} -m tensorzip decompress {small_tzip} -o - > /dev/full", shell=True,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "No space left on device" in done.stderr and "Traceback" not in done.stderr
