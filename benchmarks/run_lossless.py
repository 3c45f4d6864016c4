"""Lossless benchmark: tensorzip against its peers on real model weights.

Why: tensorzip's value is its ratio and speed against what people already use
(zstd, lz4, blosc2, ZipNN), and its distance to the order-0 bound of its own
layout. Everything runs in one process on data read once, so each compressor
sees the same bytes in the same page-cache state.

Run ``python benchmarks/run_lossless.py`` (writes ``benchmarks/RESULTS.md``)
or ``--quick`` for a smoke test (bf16 only, one repetition, prints only).
"""

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bounds import file_bounds
from data import prepare
from machine import describe
from peers import all_peers
from results_file import write_section
from stfile import FLOAT_DTYPES, parse

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROTATE = 1  # tensorzip's layout for float tensors; bounds use rotate=0 for ints
CORES = len(os.sched_getaffinity(0))
THREADS = sorted({1, CORES})
VERSIONED = ["numpy", "zipnn", "zstandard", "lz4", "blosc2", "torch", "safetensors", "ml_dtypes", "tensorzip"]


class TensorZip:
    """tensorzip's file API behind the peers' interface.

    It compresses from the file itself (so ``data`` is not used), which is in
    the page cache; one untimed run at construction warms cache and code. Like
    every peer it produces a new output buffer per call: a ``tz.MemoryFile``
    (tensorzip's in-memory file), returned as a view, so no extra copy is timed.
    """

    name = "tensorzip"

    def __init__(self, tz, path: Path, threads: int):
        self._tz = tz
        self._path = path
        tz.compress_file(path, tz.MemoryFile(), threads=threads)

    def compress(self, data, threads: int):
        out = self._tz.MemoryFile()
        self._tz.compress_file(self._path, out, threads=threads)
        return out.getbuffer()

    def decompress(self, blob, threads: int):
        out = self._tz.MemoryFile()
        self._tz.decompress_file(blob, out, threads=threads)
        return out.getbuffer()


def load_tensorzip():
    """(module, None) or (None, reason) so the peers can run before tensorzip exists."""
    try:
        import tensorzip as tz
    except ImportError as exc:
        return None, f"tensorzip not measured: it cannot be imported ({exc})."
    missing = [f for f in ("compress_file", "decompress_file") if not hasattr(tz, f)]
    if missing:
        return None, f"tensorzip not measured: it has no {', '.join(missing)} yet."
    return tz, None


def measure(peer, data: bytes, threads: int, reps: int) -> dict:
    """Best-of-``reps`` compress and decompress times, with every round trip checked.

    Inputs are private copies made before the timer starts (a peer may
    overwrite its input); the bit-exact check runs after it stops.
    """
    best_c = best_d = float("inf")
    for _ in range(reps):
        src = bytearray(data)
        t0 = time.perf_counter()
        blob = peer.compress(src, threads)
        best_c = min(best_c, time.perf_counter() - t0)
        size = len(blob)
        packed = bytes(blob)
        t0 = time.perf_counter()
        out = peer.decompress(packed, threads)
        best_d = min(best_d, time.perf_counter() - t0)
        if len(out) != len(data) or memoryview(out) != memoryview(data):
            raise AssertionError(f"{peer.name} (threads={threads}) round trip is not bit-exact")
    mb = len(data) / 1e6
    return {"name": peer.name, "threads": threads, "size": size,
            "ratio": len(data) / size, "c_mbs": mb / best_c, "d_mbs": mb / best_d}


def engine_speeds(tz, path: Path, threads: int, reps: int) -> dict:
    """The native engine alone, buffers reused (no fresh memory touched in the timed
    region): what the coder and the thread pool do, apart from page faults."""
    import numpy as np

    from tensorzip import _native
    from tensorzip.codecs import BytePlanesCodec
    from tensorzip.inputs.safetensors import SafetensorsFile

    checkpoint = SafetensorsFile(path)
    arrays = [np.ascontiguousarray(checkpoint.array(e)) for e in checkpoint.entries]
    layouts = []
    for entry in checkpoint.entries:
        codec = BytePlanesCodec.for_dtype(entry.spec)
        layouts.append((entry.spec.itemsize, codec.rotate_bits, codec.chunk_elements))
    jobs = [(a.reshape(-1).view(np.uint8), *layout) for a, layout in zip(arrays, layouts, strict=True)]
    encoder = _native.StreamingEncoder(threads)
    encoder.encode(jobs)  # warm up: sizes the reused buffers
    best_c = best_d = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        encoded = encoder.encode(jobs)
        best_c = min(best_c, time.perf_counter() - t0)
    stored = [b"".join(bytes(c) for c in chunks) for chunks, *_ in encoded]
    outs = [np.empty_like(a) for a in arrays]
    decode_jobs = []
    for blob, (chunks, crcs, *_), out, layout in zip(stored, encoded, outs, layouts, strict=True):
        offsets = np.cumsum([0] + [len(c) for c in chunks])
        table = [(int(offsets[i]), len(c), crc) for i, (c, crc) in enumerate(zip(chunks, crcs, strict=True))]
        decode_jobs.append((blob, table, out.reshape(-1).view(np.uint8), *layout))
    _native.decode_tensors(decode_jobs, threads)  # warm up: touches the outputs
    for _ in range(reps):
        t0 = time.perf_counter()
        _native.decode_tensors(decode_jobs, threads)
        best_d = min(best_d, time.perf_counter() - t0)
    for a, out in zip(arrays, outs, strict=True):
        if a.tobytes() != out.tobytes():
            raise AssertionError("engine round trip is not bit-exact")
    mb = sum(a.nbytes for a in arrays) / 1e6
    return {"threads": threads, "c_mbs": mb / best_c, "d_mbs": mb / best_d}


def float_width(data: bytes) -> int:
    """Element size of the file's float tensors (the shuffle width for blosc2)."""
    return max(t.width for t in parse(data)[1] if t.dtype in FLOAT_DTYPES)


def bench_file(tag: str, path: Path, reps: int, tz) -> list[str]:
    """Measure every compressor on one file; return its markdown section."""
    data = path.read_bytes()
    header = parse(data)[0]
    rows = []
    for threads in THREADS:
        peers = all_peers(float_width(data))
        if tz is not None:
            peers.append(TensorZip(tz, path, threads))
        for peer in peers:
            rows.append(measure(peer, data, threads, reps))
            r = rows[-1]
            print(f"{tag} {r['name']:<22} t={threads} ratio={r['ratio']:.4f} "
                  f"c={r['c_mbs']:8.1f} MB/s d={r['d_mbs']:8.1f} MB/s", flush=True)
    per_tensor, whole = file_bounds(data, ROTATE)
    engine = [engine_speeds(tz, path, threads, reps) for threads in THREADS] if tz is not None else []
    lines = [f"## {tag}: {path.name} ({len(data):,} bytes)", "",
             "| compressor | threads | compressed (B) | ratio | compress MB/s | decompress MB/s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['threads']} | {r['size']:,} | {r['ratio']:.4f} "
              f"| {r['c_mbs']:,.1f} | {r['d_mbs']:,.1f} |"
              for r in sorted(rows, key=lambda r: (r["name"] != "tensorzip", r["name"], r["threads"]))]
    for label, bound in (("per tensor", per_tensor), ("whole file", whole)):
        lines.append(f"| order-0 bound, {label} (rotate={ROTATE}) | – | {bound:,.0f} "
                     f"| {len(data) / bound:.4f} | – | – |")
    lines.append("")
    lines.append(f"Bounds cover tensor data only; the {header:,}-byte header is in every compressor's output "
                 "but not in the bounds.")
    for r in rows:
        if r["name"] == "tensorzip":
            lines.append(f"tensorzip, threads={r['threads']}: {r['size']:,} B, "
                         f"{100 * (r['size'] / per_tensor - 1):+.2f}% vs the per-tensor bound.")
    if engine:
        lines += ["", "tensorzip's native engine alone (tensors in memory, output buffers reused across runs):", "",
                  "| threads | compress MB/s | decompress MB/s |", "|---:|---:|---:|"]
        lines += [f"| {e['threads']} | {e['c_mbs']:,.1f} | {e['d_mbs']:,.1f} |" for e in engine]
        lines += ["", *must_show(rows, engine, per_tensor)]
    return lines + [""]


def must_show(rows: list[dict], engine: list[dict], per_tensor: float) -> list[str]:
    """The lossless-core issue's targets, checked on this run's numbers."""
    ours = {r["threads"]: r for r in rows if r["name"] == "tensorzip"}
    zipnn = [r for r in rows if r["name"].startswith("zipnn")]
    best_ratio = max(r["ratio"] for r in zipnn)
    one = [r for r in zipnn if r["threads"] == 1]
    best_d1 = max(r["d_mbs"] for r in one)
    best_c1 = max(r["c_mbs"] for r in one)
    t1, tn = ours[1], ours[max(ours)]
    e1, en = engine[0], engine[-1]
    gap = t1["size"] / per_tensor - 1
    scale_c, scale_d = en["c_mbs"] / e1["c_mbs"], en["d_mbs"] / e1["d_mbs"]

    def mark(ok: bool) -> str:
        return "yes" if ok else "**NO**"

    return [
        "| target | measured | met |", "|---|---|---|",
        f"| smaller than ZipNN (best of its two modes) | ratio {t1['ratio']:.4f} vs {best_ratio:.4f} "
        f"| {mark(t1['ratio'] > best_ratio)} |",
        f"| at most 0.5% above the per-tensor order-0 bound | {100 * gap:+.2f}% (whole file, header included) "
        f"| {mark(gap <= 0.005)} |",
        f"| 1-thread decompress >= 1.2x ZipNN's best | {t1['d_mbs']:,.0f} vs {best_d1:,.0f} MB/s = "
        f"{t1['d_mbs'] / best_d1:.2f}x | {mark(t1['d_mbs'] >= 1.2 * best_d1)} |",
        f"| 1-thread compress >= ZipNN's best | {t1['c_mbs']:,.0f} vs {best_c1:,.0f} MB/s = "
        f"{t1['c_mbs'] / best_c1:.2f}x | {mark(t1['c_mbs'] >= best_c1)} |",
        f"| {en['threads']} threads >= 1.7x 1 thread (engine) | compress {scale_c:.2f}x, "
        f"decompress {scale_d:.2f}x | {mark(min(scale_c, scale_d) >= 1.7)} |",
        f"| the same, end to end (fresh output memory each run) | compress {tn['c_mbs'] / t1['c_mbs']:.2f}x, "
        f"decompress {tn['d_mbs'] / t1['d_mbs']:.2f}x | (see note) |",
    ]


def version(dist: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def first_touch_gbs() -> float:
    """How fast this machine fills memory it has not touched before (page faults
    included): a ceiling for every decompressor that returns a fresh buffer."""
    import mmap

    import numpy as np

    size = 45_000_000
    best = float("inf")
    for _ in range(3):
        region = mmap.mmap(-1, size)  # a fresh mapping: every page faults on first write
        t0 = time.perf_counter()
        np.frombuffer(region, dtype=np.uint8)[:] = 1
        best = min(best, time.perf_counter() - t0)
        region.close()
    return size / best / 1e9


def preamble(note: str | None, reps: int) -> list[str]:
    """Machine, versions, method and the command that reproduces the file."""
    versions = ", ".join([f"python {platform.python_version()}"] + [f"{d} {version(d)}" for d in VERSIONED])
    lines = [
        "# Lossless compression: tensorzip vs peers (all-MiniLM-L6-v2)",
        "",
        f"- Machine: {describe()}; {platform.system()} {platform.release()}",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Versions: {versions}",
        "- Reproduce: `python benchmarks/run_lossless.py` (prepares `benchmarks/.data/` on first run)",
        f"- Method: one process, each file read once; ratio = original size / compressed size; "
        f"MB/s = 1e6 bytes of original data per second, best of {reps} (`time.perf_counter`); "
        f"threads = 1 and {CORES} (all cores). Every round trip is checked bit-exact, outside the timing.",
        "- zstd and lz4 work on the whole file; zstd decompression and lz4 are single-threaded whatever "
        "`threads` says. blosc2 uses shuffle with typesize = float element size, codec zstd, clevel 5. "
        "ZipNN runs per tensor through its byte API (header and int64 tensor stored raw, as its safetensors "
        "plugin does) and is handed a private copy of the input, since it overwrites it.",
        "- tensorzip: `compress_file(path, tz.MemoryFile())` from the page cache (warmed up once), "
        "`decompress_file(tzip_bytes, tz.MemoryFile())`; a new MemoryFile per call, as peers return new bytes.",
        f"- Fresh memory: this machine fills memory it has not touched before at {first_touch_gbs():.1f} GB/s "
        "(page faults included). Every compressor here returns a fresh output buffer, so end-to-end speeds "
        "and their 2-thread scaling are bounded by it (the faults serialize); the engine-only rows reuse "
        "their buffers and show what the coder and thread pool do.",
    ]
    if note:
        lines.append(f"- **{note}**")
    return lines + [""]


def main() -> None:
    """Run the benchmark; write RESULTS.md unless --quick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bf16 only, one repetition, print only")
    args = parser.parse_args()
    reps = 1 if args.quick else 3
    tz, note = load_tensorzip()
    if note:
        print(note, file=sys.stderr)
    files = prepare()
    if args.quick:
        files = {"bf16": files["bf16"]}
    lines = preamble(note, reps)
    for tag, path in files.items():
        lines += bench_file(tag, path, reps, tz)
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section(RESULTS, "lossless", text)


if __name__ == "__main__":
    main()
