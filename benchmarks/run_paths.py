"""Every path a user takes, side by side with its reference, in one run on the same data.

    python benchmarks/run_paths.py [--repeats 5] [--only calls|files|bases|embeddings|lossy]

- **calls**: one ``tz.decompress`` / ``tz.compress`` call (and the numcodecs codec's
  ``decode``/``encode``) on a real tensor's bytes of 256 KiB, 1 MiB, 4 MiB and 16 MiB
  (all-MiniLM-L6-v2's largest tensor, FP32, BF16 and FP16), 1 thread, against ZipNN's
  byte API on the same bytes (1 thread, each dtype's own ZipNN object made once). The
  fastest of ``--repeats`` batches of calls; every output compared byte for byte.
- **files**: ``tz.decompress_file`` of MiniLM FP32 and of the scale checkpoint to a file
  on disk and on tmpfs (``/dev/shm``), against ``cp`` of the decompressed file to the same
  place, both timed to ``sync``; ``tz.compress_file`` against ``cp`` of its input. 1 and
  2 threads. Page cache warm for the input (one untimed run first).
- **bases**: a training checkpoint's model weights (MiniLM, step 200 of
  ``checkpoint_data.py``) coded against step 180's as a ``.safetensors`` base, file to
  file: encode and decode time against plain compress and decompress of the same file.
- **embeddings**: the 30K x 384 MiniLM collection of ``embedding_data.py``: the solver
  (``tensorzip.embeddings.compress``) at recall@10 0.90, 0.95, 0.99 with five seeds (the
  held-out rows it measures on), its time, and the recall the result reaches on the 1,000
  separate query passages (same distribution, never seen by the solver); then one query at
  a time (k=10) and 1,000 queries at once against exact NumPy search over the float32
  originals (inner product, ``argpartition``).

Results: the ``paths`` section of ``benchmarks/RESULTS.md`` (the machine noted). Speeds
are MB/s of decoded bytes; "x" columns are tensorzip's speed over the reference's.
"""

# ruff: noqa: B023 -- every timed lambda runs inside the iteration that made it

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import ml_dtypes
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import tensorzip as tz  # noqa: E402
from data import DATA_DIR, prepare  # noqa: E402
from machine import describe  # noqa: E402
from results_file import write_section  # noqa: E402
from stfile import parse  # noqa: E402

SIZES = [256 << 10, 1 << 20, 4 << 20, 16 << 20]
DTYPES = [("fp32", np.float32, "float32"), ("bf16", ml_dtypes.bfloat16, "bfloat16"), ("fp16", np.float16, "float16")]


def fastest(call: Callable[[], object], seconds: float, repeats: int) -> float:
    """Seconds per call: the fastest of ``repeats`` batches, each about ``seconds`` long."""
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    per_batch = max(1, int(seconds / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_batch):
            call()
        best = min(best, (time.perf_counter() - start) / per_batch)
    return best


def largest_tensor(path: Path, dtype: np.dtype, size: int) -> np.ndarray:
    """The first ``size`` bytes of the file's largest tensor (real weights, not noise)."""
    data = path.read_bytes()
    _, tensors = parse(data)
    t = max(tensors, key=lambda t: t.end - t.start)
    if t.end - t.start < size:
        raise SystemExit(f"{path}: largest tensor has {t.end - t.start} bytes, fewer than {size}")
    return np.frombuffer(data[t.start : t.start + size], dtype=dtype).copy()


def bench_calls(repeats: int) -> list[str]:
    import zipnn

    from tensorzip.integrations.numcodecs_codec import Tensorzip

    files = prepare()
    rows = ["| dtype | bytes | decompress tz MB/s | ZipNN MB/s | x | numcodecs decode MB/s | x | "
            "compress tz MB/s | ZipNN MB/s | x | numcodecs encode MB/s | x | ratio tz | ratio ZipNN |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, dtype, zipnn_dtype in DTYPES:
        encoder = zipnn.ZipNN(input_format="byte", threads=1, bytearray_dtype=zipnn_dtype)
        decoder = zipnn.ZipNN(input_format="byte", threads=1)
        codec = Tensorzip(threads=1)
        for size in SIZES:
            array = largest_tensor(files[name], dtype, size)
            raw = array.tobytes()
            blob = tz.compress(array, threads=1)
            zipped = encoder.compress(bytearray(raw))  # ZipNN 0.5.x rewrites the buffer it compresses: a copy
            encoded = codec.encode(array)
            if tz.decompress(blob, threads=1).tobytes() != raw or decoder.decompress(zipped) != raw:
                raise SystemExit(f"{name} {size}: a round trip differs")
            if np.asarray(codec.decode(encoded)).tobytes() != raw:
                raise SystemExit(f"{name} {size}: the numcodecs round trip differs")
            budget = min(0.3, max(0.05, size / 2e8))
            t = {
                "dec": fastest(lambda: tz.decompress(blob, threads=1), budget, repeats),
                "zdec": fastest(lambda: decoder.decompress(zipped), budget, repeats),
                "ndec": fastest(lambda: codec.decode(encoded), budget, repeats),
                "enc": fastest(lambda: tz.compress(array, threads=1), budget, repeats),
                # ZipNN is timed on a fresh copy each call (it overwrites its input), the copy's time taken off.
                "zenc": fastest(lambda: encoder.compress(bytearray(raw)), budget, repeats)
                - fastest(lambda: bytearray(raw), budget, repeats),
                "nenc": fastest(lambda: codec.encode(array), budget, repeats),
            }
            mbs = {k: size / v / 1e6 for k, v in t.items()}
            rows.append(
                f"| {name} | {size >> 10:,} KiB | {mbs['dec']:,.0f} | {mbs['zdec']:,.0f} | "
                f"{t['zdec'] / t['dec']:.2f} | "
                f"{mbs['ndec']:,.0f} | {t['zdec'] / t['ndec']:.2f} | {mbs['enc']:,.0f} | {mbs['zenc']:,.0f} | "
                f"{t['zenc'] / t['enc']:.2f} | {mbs['nenc']:,.0f} | {t['zenc'] / t['nenc']:.2f} | "
                f"{size / len(blob):.4f} | {size / len(zipped):.4f} |")
            print(rows[-1], flush=True)
    return rows


def _sync_time(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    os.sync()
    return time.perf_counter() - start


def _cp(source: Path, target: Path) -> None:
    subprocess.run(["cp", str(source), str(target)], check=True)


def bench_files(repeats: int, scale: Path | None) -> list[str]:
    inputs = [("MiniLM FP32", prepare()["fp32"])]
    if scale is not None:
        inputs.append((f"scale {scale.stat().st_size / 1e9:.1f} GB FP32", scale))
    rows = ["| file | where | threads | decompress s | cp of the output s | x | compress s | cp of the input s | x |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, source in inputs:
        for where, parent in (("disk", DATA_DIR), ("tmpfs", "/dev/shm")):
            folder = Path(tempfile.mkdtemp(dir=parent))
            try:
                packed = folder / "packed.tzip"
                restored = folder / "restored.safetensors"
                copied = folder / "copied.safetensors"
                tz.compress_file(source, packed)
                tz.decompress_file(packed, restored)
                if restored.read_bytes() != source.read_bytes():
                    raise SystemExit(f"{label}: decompressed file differs")
                for threads in (1, 2):
                    times: dict[str, list[float]] = {"dec": [], "cpo": [], "enc": [], "cpi": []}
                    for _ in range(repeats):
                        for key, run, out in (
                            ("dec", lambda: tz.decompress_file(packed, restored, threads=threads), restored),
                            ("cpo", lambda: _cp(source, copied), copied),
                            ("enc", lambda: tz.compress_file(source, packed, threads=threads), packed),
                            ("cpi", lambda: _cp(source, copied), copied),
                        ):
                            out.unlink(missing_ok=True)
                            os.sync()
                            times[key].append(_sync_time(run))
                    best = {k: min(v) for k, v in times.items()}
                    rows.append(f"| {label} | {where} | {threads} | {best['dec']:.3f} | {best['cpo']:.3f} | "
                                f"{best['dec'] / best['cpo']:.2f} | {best['enc']:.3f} | {best['cpi']:.3f} | "
                                f"{best['enc'] / best['cpi']:.2f} |")
                    print(rows[-1], flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    return rows


def _model_weights(pt: Path, target: Path) -> Path:
    """The model's tensors of a training checkpoint, as a .safetensors file."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(pt, map_location="cpu", weights_only=True)
    model = state.get("model", state)
    save_file({k: v.contiguous() for k, v in model.items()}, target)
    return target


def _pins_hashed(run):
    """``run`` with every base pin hashed from the bytes (the pin cache off), as on a base's
    first use."""
    def hashed():
        os.environ["TENSORZIP_PIN_CACHE"] = "0"
        try:
            return run()
        finally:
            del os.environ["TENSORZIP_PIN_CACHE"]
    return hashed


def bench_bases(repeats: int) -> list[str]:
    folder = DATA_DIR / "checkpoints"
    rows = ["| file | pins | plain encode s | against base s | x | plain decode s | against base s | x | plain bytes "
            "| against base bytes |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    work = Path(tempfile.mkdtemp(dir=DATA_DIR))
    try:
        for kind in ("fp32", "bf16-master"):
            base = _model_weights(folder / f"{kind}-step180.pt", work / f"{kind}-180.safetensors")
            later = _model_weights(folder / f"{kind}-step200.pt", work / f"{kind}-200.safetensors")
            plain, coded, out = work / "plain.tzip", work / "coded.tzip", work / "out.safetensors"
            t: dict[str, float] = {}
            for key, run in (
                ("enc", lambda: tz.compress_file(later, plain)),
                ("benc hashed", _pins_hashed(lambda: tz.compress_file(later, coded, base=base))),
                ("benc", lambda: tz.compress_file(later, coded, base=base)),
                ("dec", lambda: tz.decompress_file(plain, out)),
                ("bdec hashed", _pins_hashed(lambda: tz.decompress_file(coded, out, base=base))),
                ("bdec", lambda: tz.decompress_file(coded, out, base=base)),
            ):
                run()
                samples = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    samples.append(time.perf_counter() - start)
                t[key] = min(samples)
                if "dec" in key and out.read_bytes() != later.read_bytes():
                    raise SystemExit(f"{kind}: decoded file differs")
            for pins, suffix in (("hashed (first use of a base)", " hashed"), ("remembered (pin cache)", "")):
                rows.append(f"| {kind} step 200 vs 180 ({later.stat().st_size / 1e6:.0f} MB) | {pins} | "
                            f"{t['enc']:.3f} | {t['benc' + suffix]:.3f} | {t['enc'] / t['benc' + suffix]:.2f} | "
                            f"{t['dec']:.3f} | {t['bdec' + suffix]:.3f} | {t['dec'] / t['bdec' + suffix]:.2f} | "
                            f"{plain.stat().st_size:,} | {coded.stat().st_size:,} |")
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def bench_embeddings(repeats: int) -> list[str]:
    import tensorzip.embeddings as tze
    from embedding_data import prepare_embeddings
    from tensorzip.embeddings.search import recall_at_k

    paths = prepare_embeddings()
    vectors = np.load(paths["collection"])
    queries = np.load(paths["queries"])
    k = 10

    def exact(q: np.ndarray) -> np.ndarray:
        s = q @ vectors.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, axis=1), axis=1), axis=1)

    truth = exact(queries)
    rows = ["| target | seed | solver s | bytes / vector | recall, solver's rows | its lower bound | "
            "recall, 1,000 fresh queries | reached |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    collections = {}
    for target in (0.90, 0.95, 0.99):
        for seed in range(5):
            start = time.perf_counter()
            blob = tze.compress(vectors, recall=target, k=k, seed=seed)
            seconds = time.perf_counter() - start
            stored = tze.open(blob)
            _, found = stored.search(queries, k=k)
            fresh = recall_at_k(found, truth)
            rows.append(f"| {target} | {seed} | {seconds:.1f} | {stored.bytes_per_vector:.1f} | "
                        f"{stored.record['recall_at_k']:.4f} | {stored.record['recall_lower_bound']:.4f} | "
                        f"{fresh:.4f} | {'yes' if fresh >= target else 'no'} |")
            print(rows[-1], flush=True)
            collections.setdefault(target, stored)
    rows += ["", "| collection | one query (k=10) ms, tensorzip | NumPy exact ms | 1,000 queries s, tensorzip | "
             "NumPy exact s | resident MB (symbols + norms) | stored MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for target, stored in collections.items():
        stored.search(queries[:1], k=k)  # the scorer's norms: once per open collection
        one = [fastest(lambda q=q: stored.search(q, k=k), 0.02, 1) for q in queries[:200]]
        one_exact = [fastest(lambda q=q: exact(q[None, :]), 0.02, 1) for q in queries[:200]]
        many = min(fastest(lambda: stored.search(queries, k=k), 0.5, 1) for _ in range(repeats))
        many_exact = min(fastest(lambda: exact(queries), 0.5, 1) for _ in range(repeats))
        code = stored._stored.code
        resident = (code.symbols.nbytes + 8 * code.count) / 1e6
        rows.append(f"| recall {target} ({stored.bytes_per_vector:.1f} B/vector) | {np.median(one) * 1e3:.2f} | "
                    f"{np.median(one_exact) * 1e3:.2f} | {many:.3f} | {many_exact:.3f} | {resident:.1f} | "
                    f"{stored.stored_bytes / 1e6:.1f} |")
        print(rows[-1], flush=True)
    return rows


def _timed_command(arguments: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of a command, as a user runs it (a process of its own)."""
    started = time.perf_counter()
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(arguments)} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def bench_lossy(repeats: int) -> list[str]:
    """`tensorzip compress --lossy --budget 0.15` on MiniLM FP32 against the lossless compress of
    the same file: wall time and peak RSS of the command, the file and its worst error."""
    source = DATA_DIR / "minilm-fp32.safetensors"
    command = [sys.executable, "-m", "tensorzip", "compress", str(source), "--force"]
    rows = ["| command | wall s (best of runs) | peak RSS MB | bytes | worst relative RMS error |",
            "|---|---:|---:|---:|---:|"]
    work = Path(tempfile.mkdtemp(dir=DATA_DIR))
    try:
        for label, extra, out in (("compress (lossless)", [], work / "m.tzip"),
                                  ("compress --lossy --budget 0.15", ["--lossy", "--budget", "0.15"],
                                   work / "m.lossy.tzip")):
            runs = [_timed_command([*command, *extra, "-o", str(out)]) for _ in range(max(1, repeats // 2))]
            worst = ""
            if extra:
                record = tz.lossy.describe(out)
                worst = f"{max(t.get('relative_rms_error', 0.0) for t in record['tensors'].values()):.4f}"
            rows.append(f"| `{label}` | {min(r[0] for r in runs):.2f} | {max(r[1] for r in runs):,.0f} | "
                        f"{out.stat().st_size:,} | {worst} |")
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["calls", "files", "bases", "embeddings", "lossy"])
    parser.add_argument("--scale-gigabytes", type=float, default=0,
                        help="also the scale checkpoint of this size in the files rows (made by scale_data.py)")
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = {
        "calls": ("One call on a tensor's bytes, 1 thread (x: ZipNN's time over ours; above 1 is faster; "
                  "target: at least 1)", lambda: bench_calls(args.repeats)),
        "files": ("File to file, timed to `sync` (x: our time over cp's; target decompress <= 1.25 on disk, "
                  "<= 1.5 on tmpfs; compress <= 1)", lambda: bench_files(args.repeats, scale)),
        "bases": ("Against a .safetensors base, file to file (x: plain time over base time; target decode >= 0.8, "
                  "encode >= 0.6)", lambda: bench_bases(args.repeats)),
        "embeddings": ("Embeddings: the solver, its targets on fresh queries, and search (30K x 384, MiniLM)",
                       lambda: bench_embeddings(args.repeats)),
        "lossy": ("Lossy weights on a byte budget, the command a user runs (target: at most 10 s and 400 MB peak, "
                  "same size and error within 1%)", lambda: bench_lossy(args.repeats)),
    }
    scale = None
    if args.scale_gigabytes and args.only in (None, "files"):
        from scale_data import make_scale_checkpoint
        scale = make_scale_checkpoint(args.scale_gigabytes)
    for key, (title, run) in sections.items():
        if args.only not in (None, key):
            continue
        rows = run()
        text = "\n".join([f"## Paths (`benchmarks/run_paths.py`, issue 20): {title}", "",
                          f"- {describe()}; {stamp}.", "", *rows])
        write_section(BENCH / "RESULTS.md", f"paths-{key}", text)


if __name__ == "__main__":
    main()
