"""A/B of tensorzip against an earlier revision of itself, in ONE process, on the same data.

    python benchmarks/run_ab.py [--ref 13ea3c8 --name pre-redesign-15] [--rounds 7]

The revision ``--ref`` is built from git (its own csrc/ and src/: ``pip wheel`` of a
``git worktree``) into ``benchmarks/.data/ab-<ref>/`` and imported under another name
(``tensorzip_ab``; the package's imports are relative, and the native module is found by
its file), so both versions run alternately in one interpreter: round after round, each
path old then new, best time of each kept. Every output of the new code is compared byte
for byte with the old code's (compressed files and restored files), so a refactor that
changes bytes fails here. Paths measured are those users take: file to file (compress,
decompress, verify) on all-MiniLM-L6-v2 FP32 and BF16, a file coded against a base, and
one-call ``compress``/``decompress`` of a 4 MiB array (the per-call cost).
Results go to ``benchmarks/RESULTS.md`` (section "ab-<ref>").
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tensorzip as new
from data import DATA_DIR, prepare
from machine import describe
from results_file import write_section
from tensorzip.inputs.safetensors import SafetensorsFile

ROOT = Path(__file__).resolve().parent.parent


def build_revision(ref: str, name: str) -> Path:
    """The package of ``ref``, unpacked as ``tensorzip_ab`` (built once, reused)."""
    out = DATA_DIR / f"ab-{name}"
    package = out / "tensorzip_ab"
    if package.exists():
        return out
    tree = Path(tempfile.mkdtemp(prefix="tensorzip-ab-"))
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree / "src"), ref], check=True,
                       capture_output=True)
        wheels = tree / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(wheels), str(tree / "src")], check=True)
        (wheel,) = wheels.glob("tensorzip-*.whl")
        unpacked = tree / "unpacked"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(str(unpacked / "tensorzip"), str(package))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree / "src")],
                       capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)
    return out


def import_revision(folder: Path):
    spec = importlib.util.spec_from_file_location("tensorzip_ab", folder / "tensorzip_ab" / "__init__.py",
                                                  submodule_search_locations=[str(folder / "tensorzip_ab")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tensorzip_ab"] = module
    spec.loader.exec_module(module)
    return module


def best_of(rounds: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Alternate the runs round after round, the order reversed every other round (the
    one that runs second in a round is measurably favoured); the best wall time of each."""
    best = dict.fromkeys(runs, float("inf"))
    for round_number in range(rounds):
        order = list(runs.items()) if round_number % 2 == 0 else list(reversed(runs.items()))
        for label, run in order:
            started = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="13ea3c8", help="the revision to compare with (default: main before the "
                                                          "issue-15 redesign)")
    parser.add_argument("--name", default="pre-redesign-15", help="what to call it in the table")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    old = import_revision(build_revision(args.ref, args.name))
    paths = prepare()
    work = Path(tempfile.mkdtemp(prefix="tensorzip-ab-work-"))
    rows = []
    threads = args.threads

    def compare(label: str, size: int, runs: dict[str, Callable[[], object]], outputs: tuple[Path, Path]) -> None:
        times = best_of(args.rounds, runs)
        a, b = outputs
        identical = a.read_bytes() == b.read_bytes()
        if not identical:
            raise SystemExit(f"{label}: the new code's output differs from {args.name}'s ({a} vs {b})")
        t_old, t_new = times["old"], times["new"]
        rows.append((label, size / t_old / 1e6, size / t_new / 1e6, t_new / t_old - 1, identical))
        print(f"{label:44} old {size / t_old / 1e6:8.0f} MB/s  new {size / t_new / 1e6:8.0f} MB/s  "
              f"{t_new / t_old - 1:+.1%}  identical bytes: {identical}", flush=True)

    try:
        for tag in ("fp32", "bf16"):
            source = paths[tag]
            size = source.stat().st_size
            packed = {v: work / f"{tag}-{v}.tzip" for v in ("old", "new")}
            compare(f"compress_file MiniLM {tag.upper()}", size, {
                "old": lambda s=source, t=packed["old"]: old.compress_file(s, t, threads=threads),
                "new": lambda s=source, t=packed["new"]: new.compress_file(s, t, threads=threads)},
                (packed["old"], packed["new"]))
            restored = {v: work / f"{tag}-{v}.safetensors" for v in ("old", "new")}
            compare(f"decompress_file MiniLM {tag.upper()}", size, {
                "old": lambda t=packed["old"], r=restored["old"]: old.decompress_file(t, r, threads=threads),
                "new": lambda t=packed["new"], r=restored["new"]: new.decompress_file(t, r, threads=threads)},
                (restored["old"], restored["new"]))
            assert restored["new"].read_bytes() == source.read_bytes()
            compare(f"verify_file MiniLM {tag.upper()}", size, {
                "old": lambda t=packed["old"]: old.verify_file(t, threads=threads),
                "new": lambda t=packed["new"]: new.verify_file(t, threads=threads)},
                (packed["old"], packed["new"]))
        # Coded against a base: a copy of BF16 moved by one ulp in every 7th element.
        base = paths["bf16"]
        tuned = work / "tuned.safetensors"
        tensors = {name: np.array(array) for name, array in SafetensorsFile(base).tensors()}
        for array in tensors.values():
            if array.dtype.itemsize == 2:
                array.view(np.uint16).reshape(-1)[::7] += 1
        from safetensors.numpy import save_file

        save_file(tensors, str(tuned), metadata={"format": "pt"})
        against = {v: work / f"tuned-{v}.tzip" for v in ("old", "new")}
        compare("compress_file --base (BF16 fine-tune)", tuned.stat().st_size, {
            "old": lambda: old.compress_file(tuned, against["old"], base=base, threads=threads),
            "new": lambda: new.compress_file(tuned, against["new"], base=base, threads=threads)},
            (against["old"], against["new"]))
        back = {v: work / f"tuned-{v}.safetensors" for v in ("old", "new")}
        compare("decompress_file --base (BF16 fine-tune)", tuned.stat().st_size, {
            "old": lambda: old.decompress_file(against["old"], back["old"], base=base, threads=threads),
            "new": lambda: new.decompress_file(against["new"], back["new"], base=base, threads=threads)},
            (back["old"], back["new"]))
        # One call on a 4 MiB array (a Zarr chunk) and on a 4 KiB one: the fixed per-call cost.
        largest = max(tensors.values(), key=lambda a: a.nbytes)
        for label, array, loops in (("4 MiB", np.ascontiguousarray(largest.reshape(-1)[: 2 << 20]), 20),
                                    ("4 KiB", np.ascontiguousarray(largest.reshape(-1)[: 2 << 10]), 2000)):
            blobs = {"old": old.compress(array, threads=threads), "new": new.compress(array, threads=threads)}
            for v in ("old", "new"):
                (work / f"blob-{v}").write_bytes(blobs[v])
            compare(f"compress({label} array) x{loops}", loops * array.nbytes, {
                "old": lambda a=array, n=loops: [old.compress(a, threads=threads) for _ in range(n)],
                "new": lambda a=array, n=loops: [new.compress(a, threads=threads) for _ in range(n)]},
                (work / "blob-old", work / "blob-new"))
            compare(f"decompress({label} array) x{loops}", loops * array.nbytes, {
                "old": lambda b=blobs["old"], n=loops: [old.decompress(b, threads=threads) for _ in range(n)],
                "new": lambda b=blobs["new"], n=loops: [new.decompress(b, threads=threads) for _ in range(n)]},
                (work / "blob-old", work / "blob-new"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Redesign A/B: this revision against `{args.name}` ({args.ref}), in one process, alternating, "
        f"best of {args.rounds} rounds, {threads} thread(s), all-MiniLM-L6-v2 (`benchmarks/run_ab.py`). "
        f"Machine: {describe()}. "
        "Every output (compressed and restored files, blobs) is byte-identical between the two.",
        "",
        f"| path | {args.name} MB/s | this revision MB/s | time change | identical bytes |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [f"| {label} | {a:,.0f} | {b:,.0f} | {change:+.1%} | {'yes' if same else 'NO'} |"
              for label, a, b, change, same in rows]
    write_section(ROOT / "benchmarks" / "RESULTS.md", f"ab-{args.name}", "\n".join(lines))


if __name__ == "__main__":
    main()
