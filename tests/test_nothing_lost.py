"""Nothing lost: a failure at any point while writing — a full disk, an exception in
the middle of the stream, the process killed — leaves no partial output at the target
and never touches the input; an existing output is replaced only with --force, and the
input can never be the output.

Every command that writes is covered: compress (a file, a folder to a folder of shards,
a folder --archive, a PyTorch file, --lossy), decompress (to a file, a .pt, a folder, a
lossy file), embeddings compress/decompress, analyze --html, and the APIs save_file, compress_file,
decompress_file, compress_folder, decompress_folder, embeddings.save, kv.save_cache.

The full disk is real where the test may mount one (a 256 KiB tmpfs, as root), and
simulated otherwise by a file object that fails with ENOSPC once it has taken its
share. The kill is real: the CLI runs in a subprocess, held in its progress callback
after it has started writing, and gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip import files as checkpoint
from tensorzip.cli.main import main
from tensorzip.codecs import BytePlanesCodec
from tensorzip.container.writer import TzipWriter
from tensorzip.outputs import atomic as atomic_file

from .conftest import rewrite_header

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
INDEX = "model.safetensors.index.json"
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.partial$")  # what atomic_file names its temporaries


# -- inputs, made once ---------------------------------------------------------------


def _incompressible(rng: np.random.Generator, nbytes: int, dtype) -> np.ndarray:
    return rng.integers(0, 256, size=nbytes, dtype=np.uint8).view(dtype)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every kind of input, each of whose outputs is larger than the 256 KiB disk:
    three random (incompressible) tensors of 160-200 KiB, as a .safetensors file, a
    PyTorch file, a folder of two shards with its index and a config, their .tzip
    forms, an embedding collection; and a small checkpoint (for analyze, and lossy
    compression, with its lossy .tzip)."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(20261123)
    tensors = {
        "embeddings.weight": _incompressible(rng, 200 * 1024, np.float32).reshape(-1, 64),
        "layers.0.weight": _incompressible(rng, 180 * 1024, ml_dtypes.bfloat16).reshape(-1, 64),
        "layers.0.ids": _incompressible(rng, 160 * 1024, np.int64),
    }
    safetensors_numpy.save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    folder = root / "model"
    folder.mkdir()
    names = list(tensors)
    safetensors_numpy.save_file({names[0]: tensors[names[0]]}, str(folder / SHARDS[0]))
    safetensors_numpy.save_file({n: tensors[n] for n in names[1:]}, str(folder / SHARDS[1]))
    weight_map = {names[0]: SHARDS[0], names[1]: SHARDS[1], names[2]: SHARDS[1]}
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2))
    shards_only = root / "shards"  # an archive keeps the shards and the index only (folder mode keeps all)
    shutil.copytree(folder, shards_only)
    (folder / "config.json").write_text('{"model_type": "test"}\n')
    tz.compress_file(root / "model.safetensors", root / "model.tzip")
    tz.compress_folder(folder, root / "model.tzip.d")  # a compressed folder (named so it sits beside model.tzip)
    tz.compress_file(shards_only, root / "archive.tzip")
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    np.save(root / "vectors.npy", vectors)
    tz.embeddings.save_file(vectors, root / "vectors.tzip", mode="lossless")
    small = {"w": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)}
    safetensors_numpy.save_file(small, str(root / "small.safetensors"))
    assert main(["compress", str(root / "small.safetensors"), "--lossy", "--bits-per-weight", "8", "--json",
                 "-o", str(root / "small-lossy.tzip")]) == 0
    return root


def _torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch files need torch")


@pytest.fixture(scope="module")
def torch_file(inputs) -> Path:
    torch = _torch_or_skip()
    path = inputs / "model.pt"
    if not path.exists():
        tensors = safetensors_numpy.load_file(str(inputs / "model.safetensors"))
        torch.save({n: torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype == ml_dtypes.bfloat16
                    else torch.from_numpy(a.copy())
                    for n, a in tensors.items()}, path)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) by relative path, with its SHA-256."""
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def untouched(root: Path) -> Iterator[None]:
    """The block leaves every input file (and the list of files) exactly as it was."""
    before = snapshot(root)
    yield
    assert snapshot(root) == before, "an input was changed"


# -- every command that writes ----------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    argv: Callable[[Path, Path], list[str]] | None  # (inputs, target) -> CLI arguments
    api: Callable[[Path, Path], object] | None  # (inputs, target) -> the call
    target: str  # the output's name
    folder: bool = False  # the output is a folder
    torch: bool = False  # needs torch
    small: bool = False  # the output is small: the disk is filled up first
    encoder: bool = False  # codes tensors (an encoder failure can be injected)
    decoder: bool = False  # decodes tensors
    force: tuple[str, ...] = ("--force",)  # the CLI's flag to replace an existing output

    def __str__(self) -> str:
        return self.name


def _kv_cache(_inputs: Path, target: Path):
    rng = np.random.default_rng(3)
    layers = [(rng.standard_normal((1, 2, 64, 32)).astype(np.float32),
               rng.standard_normal((1, 2, 64, 32)).astype(np.float32)) for _ in range(2)]
    return tz.kv.save_cache(layers, target, step=0.05)


COMMANDS = [
    Command("compress", lambda i, t: ["compress", i / "model.safetensors", "-o", t],
            lambda i, t: tz.compress_file(i / "model.safetensors", t), "out.tzip", encoder=True),
    Command("compress-pt", lambda i, t: ["compress", i / "model.pt", "-o", t],
            lambda i, t: tz.compress_file(i / "model.pt", t), "out.tzip", torch=True, encoder=True),
    Command("compress-folder", lambda i, t: ["compress", i / "model", "-o", t],
            lambda i, t: tz.compress_folder(i / "model", t), "out.tzip", folder=True, encoder=True),
    Command("compress-archive", lambda i, t: ["compress", i / "shards", "--archive", "-o", t],
            lambda i, t: tz.compress_file(i / "shards", t), "out.tzip", encoder=True),
    Command("decompress", lambda i, t: ["decompress", i / "model.tzip", "-o", t],
            lambda i, t: tz.decompress_file(i / "model.tzip", t), "out.safetensors", decoder=True),
    Command("decompress-pt", lambda i, t: ["decompress", i / "model.tzip", "-o", t],
            lambda i, t: tz.decompress_file(i / "model.tzip", t), "out.pt", torch=True, decoder=True),
    Command("decompress-folder", lambda i, t: ["decompress", i / "model.tzip.d", "-o", t],
            lambda i, t: tz.decompress_folder(i / "model.tzip.d", t), "out", folder=True, decoder=True),
    Command("decompress-archive", lambda i, t: ["decompress", i / "archive.tzip", "-o", t],
            lambda i, t: tz.decompress_file(i / "archive.tzip", t), "out", folder=True, decoder=True),
    Command("embeddings-compress",
            lambda i, t: ["embeddings", "compress", i / "vectors.npy", "--lossless", "-o", t],
            lambda i, t: tz.embeddings.save_file(np.load(i / "vectors.npy"), t, mode="lossless"), "out.tzip",
            encoder=True),
    Command("embeddings-decompress", lambda i, t: ["embeddings", "decompress", i / "vectors.tzip", "-o", t],
            None, "out.npy", decoder=True),
    Command("compress-lossy",
            lambda i, t: ["compress", i / "small.safetensors", "--lossy", "--bits-per-weight", "8", "-o", t], None,
            "out.tzip", small=True),
    Command("decompress-lossy", lambda i, t: ["decompress", i / "small-lossy.tzip", "-o", t], None,
            "out.safetensors", small=True),
    Command("analyze-html", lambda i, t: ["analyze", i / "small.safetensors", "--html", t, "--json"], None,
            "report.html", small=True),
    Command("save_file", None, lambda i, t: tz.save_file(safetensors_numpy.load_file(str(i / "model.safetensors")),
                                                          t), "out.tzip", encoder=True),
    Command("kv.save_cache", None, _kv_cache, "out.tzip", small=True, encoder=True),
]
CLI = [c for c in COMMANDS if c.argv is not None]
API = [c for c in COMMANDS if c.api is not None]


@pytest.fixture
def prepared(request, inputs):
    """The inputs, with the PyTorch file when the test's command needs one."""
    command = getattr(request.node, "callspec", None) and request.node.callspec.params.get("command")
    if isinstance(command, Command) and command.torch:
        request.getfixturevalue("torch_file")
    return inputs


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tensorzip: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


def place_existing(target: Path, folder: bool) -> dict[str, str]:
    """An earlier output at ``target``; returns its snapshot."""
    if folder:  # an earlier output: its file names are among those the new output writes
        target.mkdir()
        (target / INDEX).write_bytes(b"an earlier output")
    else:
        target.write_bytes(b"an earlier output")
    return snapshot(target)


def causes(error: BaseException | None) -> list[int | None]:
    """The errno of each exception in the chain of causes."""
    found = []
    while error is not None:
        found.append(getattr(error, "errno", None))
        error = error.__cause__
    return found


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- a real full disk ---------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted for this test (root only); every output here is larger."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the real full disk needs mount -t tmpfs")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(disk)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Take all but ``leave`` bytes of the disk, with a file in a hidden folder that the
    checks ignore (``.filler``)."""
    (disk / ".filler").mkdir()
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(disk / ".filler" / "data", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def visible(folder: Path) -> list[str]:
    return [name for name in leftovers(folder) if name != ".filler"]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing-with-force"])
@pytest.mark.parametrize("command", CLI, ids=str)
def test_cli_on_a_full_disk(capsys, prepared, full_disk, command, existing):
    target = full_disk / command.target
    earlier = place_existing(target, command.folder) if existing else None
    if command.small:
        fill(full_disk)
    with untouched(prepared):
        code, _, err = cli(capsys, *command.argv(prepared, target), *(command.force if existing else ()))
    assert code == 1
    line = one_line_error(err, "No space left on device")
    assert str(target) in line, line
    if existing:
        assert visible(full_disk) == [command.target] and snapshot(target) == earlier
    else:
        assert visible(full_disk) == []  # no output, no temporary file or folder


@pytest.mark.parametrize("command", API, ids=str)
def test_api_on_a_full_disk(prepared, full_disk, command):
    target = full_disk / command.target
    if command.small:
        fill(full_disk)
    with untouched(prepared), pytest.raises(tz.OutputFileError) as info:
        command.api(prepared, target)
    assert "No space left on device" in str(info.value) and str(target) in str(info.value)
    assert errno.ENOSPC in causes(info.value)
    assert visible(full_disk) == []


def test_a_full_disk_mid_folder_names_the_file_where_it_was_to_be(prepared, full_disk):
    """The first shard fits, the second does not: the message names the output folder's
    file, not the hidden temporary folder, and the first shard is gone too."""
    target = full_disk / "out.tzip"
    with pytest.raises(tz.OutputFileError, match="No space left on device") as info:
        tz.compress_folder(prepared / "model", target)
    assert str(target / SHARDS[1].replace(".safetensors", ".tzip")) in str(info.value)
    assert ".partial" not in str(info.value)
    assert visible(full_disk) == []


# -- a simulated full disk (no mount needed) ------------------------------------------------


class FillingFile:
    """A file that takes ``room`` bytes, then fails every write with ENOSPC, as a file on
    a disk that fills up does."""

    def __init__(self, raw, room: int):
        self._raw, self._room = raw, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._raw.write(data)

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._raw.close()


@pytest.fixture
def filling_disk(monkeypatch):
    """Every file atomic_file opens fails with ENOSPC after ``room["bytes"]`` (64 KiB)."""
    room = {"bytes": 64 * 1024}

    class OsFillingUp:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, *args, **kwargs):
            return FillingFile(os.fdopen(fd, *args, **kwargs), room["bytes"])

    monkeypatch.setattr(atomic_file, "os", OsFillingUp())
    return room


@pytest.mark.parametrize("command", API, ids=str)
def test_api_with_enospc_mid_write(prepared, tmp_path, filling_disk, command):
    out = tmp_path / "out-dir"
    out.mkdir()
    target = out / command.target
    if command.name == "decompress-archive":
        pytest.skip("writes its shards with open(), not through atomic_output: the real full disk covers it")
    if command.small:  # these fit in 64 KiB: fail them from the first byte
        filling_disk["bytes"] = 0
    with untouched(prepared), pytest.raises(tz.OutputFileError) as info:
        command.api(prepared, target)
    assert "No space left on device" in str(info.value) and str(target) in str(info.value)
    assert leftovers(out) == []


def test_enospc_mid_write_keeps_an_existing_output(prepared, tmp_path, filling_disk):
    target = tmp_path / "out.tzip"
    earlier = place_existing(target, folder=False)
    with pytest.raises(tz.OutputFileError, match="No space left on device"):
        tz.compress_file(prepared / "model.safetensors", target, overwrite=True)
    assert snapshot(target) == earlier and leftovers(tmp_path) == ["out.tzip"]


# -- an exception in the middle of the stream -------------------------------------------------


class Injected(RuntimeError):
    """The failure the tests inject."""


@pytest.fixture
def failing_coder(monkeypatch):
    """Byte-plane encoding and decoding work for one tensor, then raise (at the tensor
    ``fail_at``: 2); each tensor is its own batch, so the first is written before the
    failure. ``where``: the folder a temporary output must be in when the failure comes."""
    state = {"where": None, "seen": 0, "fail_at": 2}

    def fail_after_first(count: int) -> None:
        state["seen"] += count
        if state["seen"] >= state["fail_at"]:
            where = state["where"]
            if where is not None:  # the failure comes mid-stream: a temporary output exists
                assert any(TEMPORARY.match(name) for name in os.listdir(where)), os.listdir(where)
            raise Injected("injected failure after one tensor")

    original_encoder = BytePlanesCodec.batch_encoder.__func__
    original_decode = BytePlanesCodec.decode_batch.__func__

    def batch_encoder(cls, threads):
        encode = original_encoder(cls, threads)

        def wrapped(jobs):
            fail_after_first(len(jobs))
            return encode(jobs)

        return wrapped

    def decode_batch(cls, jobs, threads, verify_checksums=True):
        fail_after_first(len(jobs))
        return original_decode(cls, jobs, threads, verify_checksums)

    monkeypatch.setattr(BytePlanesCodec, "batch_encoder", classmethod(batch_encoder))
    monkeypatch.setattr(BytePlanesCodec, "decode_batch", classmethod(decode_batch))
    monkeypatch.setitem(TzipWriter.__init__.__kwdefaults__, "batch_bytes", 1)
    monkeypatch.setattr(checkpoint, "WRITE_BATCH_BYTES", 1)
    return state


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("command", [c for c in API if c.encoder or c.decoder], ids=str)
def test_api_exception_mid_stream(prepared, tmp_path, failing_coder, command, existing):
    target = tmp_path / command.target
    earlier = place_existing(target, command.folder) if existing else None
    # A .pt output is decoded whole, then written; a KV cache is coded in memory, then written.
    early = (command.torch and command.decoder) or command.name == "kv.save_cache"
    failing_coder["where"] = None if early else tmp_path
    if command.name.startswith("embeddings"):
        failing_coder["fail_at"] = 1  # a lossless collection is one tensor
    with untouched(prepared), pytest.raises(Injected):
        command.api(prepared, target)
    if existing:
        assert leftovers(tmp_path) == [command.target] and snapshot(target) == earlier
    else:
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", [c for c in CLI if c.encoder or c.decoder], ids=str)
def test_cli_exception_mid_stream(capsys, prepared, tmp_path, failing_coder, command):
    target = tmp_path / command.target
    # Decoders that decode everything before opening the output fail before any temporary exists.
    early = command.name in ("decompress-pt", "embeddings-decompress")
    failing_coder["where"] = None if early else tmp_path
    if command.name.startswith("embeddings"):
        failing_coder["fail_at"] = 1  # a lossless collection is one tensor
    with untouched(prepared), pytest.raises(Injected):
        main([str(a) for a in command.argv(prepared, target)])
    assert leftovers(tmp_path) == []


def test_write_failing_mid_stream_in_numpy_save(capsys, prepared, tmp_path, monkeypatch):
    """embeddings decompress writes with np.save: a failure half way leaves nothing."""
    def half_then_fail(handle, array, allow_pickle=False):
        handle.write(b"\x93NUMPY" + bytes(1000))
        raise Injected("np.save failed half way")

    monkeypatch.setattr(np, "save", half_then_fail)
    with untouched(prepared), pytest.raises(Injected):
        main(["embeddings", "decompress", str(prepared / "vectors.tzip"), "-o", str(tmp_path / "v.npy")])
    assert leftovers(tmp_path) == []


def test_interrupt_mid_stream_leaves_nothing(capsys, prepared, tmp_path, monkeypatch):
    """Ctrl-C while writing: exit 130, no output, no temporary file."""

    def interrupted(done, total):
        assert any(TEMPORARY.match(name) for name in os.listdir(tmp_path))
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def progress(label, enabled):
        yield interrupted

    monkeypatch.setattr("tensorzip.cli.checkpoints._progress", progress)
    with untouched(prepared):
        code, _, err = cli(capsys, "compress", prepared / "model.safetensors", "-o", tmp_path / "out.tzip")
    assert code == 130 and "no output was left behind" in err
    assert leftovers(tmp_path) == []


# -- the process killed ------------------------------------------------------------------------

# Runs the real CLI with a progress callback that, once called (the output has started:
# at least one tensor or batch is written to the temporary file), says so and waits to be killed.
_HELD_CLI = textwrap.dedent("""
    import contextlib, pathlib, sys, time
    from tensorzip.cli import checkpoints, main

    marker = pathlib.Path(sys.argv[1])

    @contextlib.contextmanager
    def held(label, enabled):
        def update(done, total):
            marker.touch()
            time.sleep(120)
        yield update

    checkpoints._progress = held
    sys.exit(main(sys.argv[2:]))
""")

KILLED = [c for c in CLI if c.name in ("compress", "compress-folder", "compress-archive", "decompress",
                                          "decompress-folder", "decompress-archive")]


def run_and_kill(argv: list[str], workdir: Path, signum: int = signal.SIGKILL) -> str:
    """Start the CLI, send ``signum`` once it writes, and return what it said on stderr."""
    marker = workdir / "writing"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-c", _HELD_CLI, str(marker), *map(str, argv)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"the CLI ended (status {process.returncode}) before writing: "
                            f"{process.stderr.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail("the CLI did not start writing within 60 s")
            time.sleep(0.01)
    finally:
        process.send_signal(signum)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        said = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    expected = -signum if signum == signal.SIGKILL else 128 + signum  # the CLI catches SIGTERM/SIGHUP
    assert process.returncode == expected, said
    marker.unlink()
    return said


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("command", KILLED, ids=str)
def test_sigterm_and_sighup_leave_nothing(inputs, tmp_path, command, signum):
    """SIGTERM (a plain `kill`) and SIGHUP (a closed terminal) end a write as Ctrl-C does:
    the conventional status, one line, no output and no temporary file."""
    out = tmp_path / "out-dir"
    out.mkdir()
    with untouched(inputs):
        said = run_and_kill([*command.argv(inputs, out / command.target)], tmp_path, signum)
    assert f"stopped by {signal.Signals(signum).name}; no output was left behind" in said
    assert "Traceback" not in said
    assert leftovers(out) == []


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing-with-force"])
@pytest.mark.parametrize("command", KILLED, ids=str)
def test_sigkill_mid_write(capsys, inputs, tmp_path, command, existing):
    """SIGKILL while writing leaves, at the target, nothing (or the earlier output, intact);
    the only remnant is the hidden temporary ``.NAME.XXXXXXXX.partial`` beside it, which the
    next run writing there removes (its owner is gone: its lock is free)."""
    out = tmp_path / "out-dir"
    out.mkdir()
    target = out / command.target
    earlier = place_existing(target, command.folder) if existing else None
    force = ["--force"] if existing else []
    with untouched(inputs):
        run_and_kill([*command.argv(inputs, target), *force], tmp_path)
    remnants = [name for name in leftovers(out) if name != command.target]
    assert len(remnants) == 1 and TEMPORARY.match(remnants[0]).group("name") == command.target, leftovers(out)
    if existing:
        assert snapshot(target) == earlier
    else:
        assert not target.exists()

    # A later run is not confused by the remnant: it writes the full output (the same
    # as a run elsewhere) and removes the abandoned temporary.
    reference = tmp_path / "reference" / command.target
    reference.parent.mkdir()
    assert cli(capsys, *command.argv(inputs, reference))[0] == 0
    with untouched(inputs):
        code, _, err = cli(capsys, *command.argv(inputs, target), *force)
    assert code == 0, err
    assert snapshot(target) == snapshot(reference)
    assert leftovers(out) == [command.target]


def test_a_live_writers_temporary_is_never_removed(capsys, inputs, tmp_path):
    """Only an abandoned temporary is removed: one whose writer still holds its lock (another
    run writing the same output right now) is left alone."""
    import fcntl

    target = tmp_path / "out.tzip"
    live = tmp_path / ".out.tzip.abcd1234.partial"
    live.write_bytes(b"being written")
    abandoned = tmp_path / ".out.tzip.dead5678.partial"
    abandoned.write_bytes(b"left by a kill")
    with open(live, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, _, err = cli(capsys, "compress", inputs / "model.safetensors", "-o", target)
        assert code == 0, err
        assert live.read_bytes() == b"being written" and not abandoned.exists()


# -- --force, and the input is never the output --------------------------------------------------


@pytest.mark.parametrize("command", CLI, ids=str)
def test_existing_output_needs_force(capsys, prepared, tmp_path, command):
    target = tmp_path / command.target
    earlier = place_existing(target, command.folder)
    with untouched(prepared):
        code, _, err = cli(capsys, *command.argv(prepared, target))
        assert code == 1
        one_line_error(err, str(target), "already exists", "--force")
        assert snapshot(target) == earlier

        if command.folder:  # --force never deletes a file the new folder would not have
            (target / "notes.txt").write_text("the user's")
            code, _, err = cli(capsys, *command.argv(prepared, target), "--force")
            assert code == 1
            one_line_error(err, str(target), "notes.txt", "never deletes")
            (target / "notes.txt").unlink()
            assert snapshot(target) == earlier
        code, _, err = cli(capsys, *command.argv(prepared, target), "--force")
    assert code == 0, err
    reference = tmp_path / "reference" / command.target
    reference.parent.mkdir()
    assert cli(capsys, *command.argv(prepared, reference))[0] == 0
    assert snapshot(target) == snapshot(reference)  # replaced whole: no file of the earlier folder kept
    assert leftovers(tmp_path) == sorted([command.target, "reference"])


def _aliases(path: Path, where: Path) -> dict[str, Path]:
    """The same path, a hard link and a symbolic link to ``path``."""
    hard, soft = where / f"hard-{path.name}", where / f"soft-{path.name}"
    os.link(path, hard)
    soft.symlink_to(path)
    return {"same path": path, "hard link": hard, "symbolic link": soft}


FILE_COMMANDS = {  # command -> (the words before the input, the input, the words after it)
    "compress": (["compress"], "model.safetensors", []),
    "decompress": (["decompress"], "model.tzip", []),
    "embeddings compress": (["embeddings", "compress"], "vectors.npy", ["--lossless"]),
    "embeddings decompress": (["embeddings", "decompress"], "vectors.tzip", []),
}


@pytest.mark.parametrize("alias", ["same path", "hard link", "symbolic link"])
@pytest.mark.parametrize("command", FILE_COMMANDS, ids=str)
def test_cli_refuses_its_input_as_output(capsys, inputs, tmp_path, command, alias):
    words, name, options = FILE_COMMANDS[command]
    source = tmp_path / name
    shutil.copy(inputs / name, source)
    output = _aliases(source, tmp_path)[alias]
    with untouched(tmp_path):
        code, _, err = cli(capsys, *words, source, *options, "-o", output, "--force")
    assert code == 1
    one_line_error(err, "overwrite the input")


@pytest.mark.parametrize("alias", ["same path", "hard link", "symbolic link"])
def test_analyze_refuses_to_write_its_report_over_the_input(capsys, inputs, tmp_path, alias):
    source = tmp_path / "small.safetensors"
    shutil.copy(inputs / "small.safetensors", source)
    output = _aliases(source, tmp_path)[alias]
    with untouched(tmp_path):
        code, _, err = cli(capsys, "analyze", source, "--html", output)
    assert code == 1
    one_line_error(err, "overwrite the input")


@pytest.mark.parametrize("alias", ["same path", "hard link", "symbolic link"])
def test_api_refuses_its_input_as_output(inputs, tmp_path, alias):
    for name, call in (("model.safetensors", tz.compress_file), ("model.tzip", tz.decompress_file)):
        source = tmp_path / name
        shutil.copy(inputs / name, source)
        output = _aliases(source, tmp_path)[alias]
        with untouched(tmp_path), pytest.raises(tz.OutputFileError, match="input"):
            call(source, output)  # overwrite=True is the API's default
        for path in tmp_path.iterdir():
            path.unlink()


def _tuned(inputs: Path, where: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """``where``/base.safetensors and a fine-tune of it coded against it, tuned.tzip."""
    base = where / "base.safetensors"
    shutil.copy(inputs / "model.safetensors", base)
    tuned = {name: array.copy() for name, array in safetensors_numpy.load_file(str(base)).items()}
    tuned["embeddings.weight"][0, :8] += 1
    safetensors_numpy.save_file(tuned, str(where / "tuned.safetensors"))
    tz.compress_file(where / "tuned.safetensors", where / "tuned.tzip", base=base)
    return base, tuned


def test_a_base_is_never_overwritten(inputs, tmp_path):
    """Not by the file coded against it (compress_file, save_file), nor by its decompressed
    output: the base found beside the file is an input too."""
    base, tuned = _tuned(inputs, tmp_path)
    with untouched(tmp_path):
        with pytest.raises(tz.OutputFileError, match="base"):
            tz.compress_file(tmp_path / "tuned.safetensors", base, base=base)
        with pytest.raises(tz.OutputFileError, match="base"):
            tz.save_file(tuned, base, base=base)
        with pytest.raises(tz.OutputFileError, match="input"):
            tz.decompress_file(tmp_path / "tuned.tzip", base)  # the base is found beside tuned.tzip
        with pytest.raises(tz.OutputFileError, match="input"):
            tz.decompress_file(tmp_path / "tuned.tzip", base, base=base)


def test_folder_outputs_never_replace_or_enter_the_input(capsys, inputs, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(inputs / "model", work / "model")
    shutil.copy(inputs / "archive.tzip", work / "archive.tzip")
    (tmp_path / "link").symlink_to(work / "model")
    with untouched(work):
        for target in (work / "model", tmp_path / "link", work / "model" / "inside.tzip", work):
            with pytest.raises(tz.OutputFileError):
                tz.compress_folder(work / "model", target)
        for target in (work / "model" / "one.tzip", work / "model"):  # --archive: one file
            with pytest.raises(tz.OutputFileError):
                tz.compress_file(work / "model", target)
        with pytest.raises(tz.OutputFileError, match="input"):  # would replace the folder holding it
            tz.decompress_file(work / "archive.tzip", work)
        code, _, err = cli(capsys, "decompress", work / "archive.tzip", "-o", work, "--force")
        assert code == 1
        one_line_error(err, "input")
        code, _, err = cli(capsys, "compress", work / "model", "-o", tmp_path / "link", "--force")
        assert code == 1
        one_line_error(err)


@pytest.mark.parametrize("name", ["../work/base.safetensors", "{absolute}", "..", "sub\\base.safetensors", ""])
def test_a_file_cannot_name_a_path_as_its_base(inputs, tmp_path, name):
    """The base is looked for beside the file by the plain file name its header records; a
    header naming a path (which would make reading an untrusted file open any file on the
    machine) is refused when the file is opened."""
    work = tmp_path / "work"
    work.mkdir()
    base, tuned = _tuned(inputs, work)
    name = name.replace("{absolute}", str(base))
    blob = (work / "tuned.tzip").read_bytes()

    def rename(header):
        header["base"]["file"] = name

    evil = tmp_path / "evil.tzip"
    evil.write_bytes(rewrite_header(blob, rename))
    with pytest.raises(tz.HeaderError, match="not a plain file name"):
        tz.load_file(evil)
    with pytest.raises(tz.HeaderError, match="not a plain file name"):
        tz.decompress_file(evil, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tzip", "work"]
    back = tz.load_file(work / "tuned.tzip")  # the file as written names its base plainly
    assert all(np.array_equal(back[k].view(np.uint8), tuned[k].view(np.uint8)) for k in tuned)


@pytest.fixture(scope="module")
def hundred_mb(tmp_path_factory):
    from scripts.signal_sweep import make_checkpoint

    work = tmp_path_factory.mktemp("sweep")
    make_checkpoint(work / "model.safetensors", 100)
    tz.compress_file(work / "model.safetensors", work / "model.tzip")
    return work


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("direction", ["compress", "decompress"])
def test_signal_sweep_of_a_100_mb_checkpoint(hundred_mb, tmp_path, direction, signum):
    """Deterministic kill points (the first, middle and last progress call) in compress and
    decompress of a ~100 MB file: no output, no temporary, the input intact, status 128+N.
    ``scripts/signal_sweep.py`` runs the same sweep on 1 GB, outside the suite."""
    from scripts.signal_sweep import check_stopped, kill_points, progress_calls

    out = tmp_path / "out"
    out.mkdir()
    source = hundred_mb / ("model.safetensors" if direction == "compress" else "model.tzip")
    target = out / ("model.tzip" if direction == "compress" else "model.safetensors")
    argv = [direction, str(source), "-o", str(target)]
    calls = progress_calls(argv, tmp_path)
    target.unlink()
    assert calls >= 2
    for point in kill_points(calls, 3):
        assert check_stopped(argv, source, out, tmp_path, point, signum) == [], f"progress call {point}/{calls}"
