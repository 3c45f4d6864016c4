"""Stop ``tensorzip`` with a signal at deterministic points of a write and check it leaves
nothing behind: no output, no temporary file, the input intact, the conventional exit status
and one line saying so.

The CLI runs in a child process whose progress callback, at its N-th call, marks that it is
writing and waits; the sweep then sends the signal, so each kill point is the same on every
run and machine (a timer would hit different places). ``tests/test_nothing_lost.py`` runs this
on a ~100 MB checkpoint; the 1 GB sweep is this script, outside the test suite:

    python scripts/signal_sweep.py                   # 1 GB, 8 points, SIGTERM SIGHUP SIGINT
    python scripts/signal_sweep.py --size-mb 200 --points 4 --signals TERM

It prints one line per run and exits 1 if any run left something behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

# The real CLI, with the progress bar replaced by a callback that counts its calls and, at
# call HOLD_AT (0: never), touches MARKER and sleeps until the signal arrives. With
# COUNT_TO set, the number of calls is written there at the end (a dry run).
_HELD_CLI = textwrap.dedent("""
    import contextlib, os, pathlib, signal, sys, time
    from tensorzip.cli import checkpoints, main

    # A child of a background job starts with SIGINT ignored (shell job control): take it
    # back, so the sweep's SIGINT is the Ctrl-C a user would send.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    hold_at = int(os.environ["TZ_SWEEP_HOLD_AT"])
    marker = pathlib.Path(os.environ["TZ_SWEEP_MARKER"])
    count_to = os.environ.get("TZ_SWEEP_COUNT_TO")
    calls = 0

    @contextlib.contextmanager
    def held(label, enabled):
        def update(done, total):
            global calls
            calls += 1
            if calls == hold_at:
                marker.touch()
                time.sleep(300)
        yield update

    checkpoints._progress = held
    status = main(sys.argv[1:])
    if count_to:
        pathlib.Path(count_to).write_text(str(calls))
    sys.exit(status)
""")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stderr: str


def run_held(argv: list[str], workdir: Path, hold_at: int, signum: int | None, *, count_to: Path | None = None,
             timeout: float = 600) -> Outcome:
    """Run ``tensorzip ARGV`` in a child; at progress call ``hold_at`` send ``signum`` (None:
    let it finish, writing its number of progress calls to ``count_to``)."""
    marker = workdir / f".sweep-writing-{os.getpid()}"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TZ_SWEEP_HOLD_AT": str(hold_at),
           "TZ_SWEEP_MARKER": str(marker), **({"TZ_SWEEP_COUNT_TO": str(count_to)} if count_to else {})}
    process = subprocess.Popen([sys.executable, "-c", _HELD_CLI, *map(str, argv)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while signum is not None and not marker.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the CLI ended (status {process.returncode}) before progress call {hold_at}: "
                                   f"{process.stderr.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the CLI did not reach progress call {hold_at} within {timeout} s")
            time.sleep(0.01)
        if signum is not None:
            process.send_signal(signum)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        said = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        marker.unlink(missing_ok=True)
    return Outcome(process.returncode, said)


def progress_calls(argv: list[str], workdir: Path) -> int:
    """How many progress calls a complete run of ``argv`` makes (the run's output is removed)."""
    count = workdir / ".sweep-count"
    outcome = run_held(argv, workdir, 0, None, count_to=count)
    if outcome.returncode != 0:
        raise RuntimeError(f"the dry run failed: {outcome.stderr}")
    calls = int(count.read_text())
    count.unlink()
    return calls


def kill_points(calls: int, points: int) -> list[int]:
    """``points`` progress calls spread over a run of ``calls`` (first and last included)."""
    if calls <= points:
        return list(range(1, calls + 1))
    return sorted({1 + round(i * (calls - 1) / (points - 1)) for i in range(points)})


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def digest(path: Path) -> str:
    """A hash of a file, or of every file of a folder with its relative path."""
    h = hashlib.blake2b(digest_size=16)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def check_stopped(argv: list[str], source: Path, out: Path, workdir: Path, hold_at: int, signum: int) -> list[str]:
    """Stop one run; return what went wrong (nothing: an empty list). ``out`` is the folder the
    output goes to, empty before the run."""
    before = digest(source)
    outcome = run_held(argv, workdir, hold_at, signum)
    problems = []
    expected = 130 if signum == signal.SIGINT else 128 + signum
    if outcome.returncode != expected:
        problems.append(f"exit status {outcome.returncode}, expected {expected}")
    if "no output was left behind" not in outcome.stderr or "Traceback" in outcome.stderr:
        problems.append(f"said {outcome.stderr.strip()[-300:]!r}")
    if entries(out):
        problems.append(f"left {entries(out)}")
    if digest(source) != before:
        problems.append("the input changed")
    return problems


def make_checkpoint(path: Path, size_mb: int) -> None:
    """A .safetensors of ``size_mb`` MB: BF16-like FP32 weights in 8 MB tensors (fast to make)."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    per = 2 * 1024 * 1024  # float32 elements: 8 MB
    tensors = {}
    for i in range(max(1, size_mb // 8)):
        values = (rng.standard_normal(per, dtype=np.float32) * 0.02).view(np.uint32) & np.uint32(0xFFFF0000)
        tensors[f"layer.{i}.weight"] = values.view(np.float32).reshape(1024, -1)
    save_file(tensors, str(path), metadata={"format": "pt"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the checkpoint (default 1024)")
    parser.add_argument("--points", type=int, default=8, help="kill points per command and signal (default 8)")
    parser.add_argument("--signals", default="TERM,HUP,INT", help="comma-separated (default TERM,HUP,INT)")
    parser.add_argument("--workdir", help="where to write (default: a temporary folder, removed after)")
    args = parser.parse_args()
    signums = [getattr(signal, f"SIG{name.strip().upper()}") for name in args.signals.split(",")]
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        work = Path(scratch)
        source = work / "model.safetensors"
        make_checkpoint(source, args.size_mb)
        packed = work / "model.tzip"
        subprocess.run([sys.executable, "-m", "tensorzip", "compress", str(source), "-o", str(packed)], check=True,
                       stdout=subprocess.DEVNULL)
        out = work / "out"
        out.mkdir()
        commands = {"compress": (["compress", str(source), "-o", str(out / "model.tzip")], source),
                    "decompress": (["decompress", str(packed), "-o", str(out / "model.safetensors")], packed)}
        failures = 0
        for name, (argv, read) in commands.items():
            calls = progress_calls(argv, work)
            for child in out.iterdir():  # the dry run's output
                child.unlink()
            for signum in signums:
                for point in kill_points(calls, args.points):
                    problems = check_stopped(argv, read, out, work, point, signum)
                    failures += bool(problems)
                    state = "ok" if not problems else "FAILED: " + "; ".join(problems)
                    print(f"{name:10} {signal.Signals(signum).name:7} at progress call {point:5}/{calls}: {state}",
                          flush=True)
        print(f"{failures} failures")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
