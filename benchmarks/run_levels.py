"""Compression levels: `--level max` against `default` and ZipNN, same files, same run (issue 22).

    python benchmarks/run_levels.py            (writes the "levels" section of benchmarks/RESULTS.md)

Files (real, made here): all-MiniLM-L6-v2 in BF16, FP16 and FP32 (``data.py``); its seeded
BF16 fine-tune (``finetune_data.py``, step 300); its rank-16 LoRA adapters in BF16 and FP32
(``lora_data.py``); and a GPT-2-sized mixed-precision training checkpoint (``checkpoint_data.py``:
BF16 weights, FP32 master weights and Adam moments, a ``.pt``), when present.

- Bytes: the .tzip of ``tz.compress_file`` at each level (restores the input byte for byte:
  checked), and ZipNN 0.5.4 on the same tensors: every tensor of a float dtype joined into one
  buffer per dtype (ZipNN's best case: few, large calls) with its dtype, other tensors zstd-19.
- Speed, one thread: decode = ``tz.load_file(threads=1)`` of the whole file into memory (every
  tensor decoded and checked), encode = ``compress_file(threads=1)`` to tmpfs; ZipNN: its
  decompress and compress of the same buffers with ``threads=1``. MB/s of the tensors' bytes,
  best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zstandard

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import tensorzip as tz  # noqa: E402
from data import prepare  # noqa: E402
from finetune_data import prepare_finetune  # noqa: E402
from lora_data import prepare_lora  # noqa: E402
from machine import describe, package_version  # noqa: E402
from results_file import write_section  # noqa: E402
from tensorzip.container import TzipReader  # noqa: E402
from tensorzip.files import source_tensors  # noqa: E402

ZIPNN_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


def cases() -> list[tuple[str, Path]]:
    minilm = prepare()
    found = [("MiniLM BF16", minilm["bf16"]), ("MiniLM FP16", minilm["fp16"]), ("MiniLM FP32", minilm["fp32"]),
             ("MiniLM BF16 fine-tune (step 300)", prepare_finetune()["ckpt-300-bf16"])]
    lora = prepare_lora()
    found += [("LoRA r16 BF16", lora["r16-bf16"]), ("LoRA r16 FP32", lora["r16-fp32"])]
    training = BENCH / ".data" / "checkpoints" / "gpt2-bf16-master-step100.pt"
    if training.exists():
        found.append(("GPT-2 mixed-precision training checkpoint (.pt)", training))
    return found


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def zipnn_run(path: Path, repeats: int) -> tuple[int, int, float, float]:
    """(tensor bytes, ZipNN + zstd bytes, compress s, decompress s) on the file's tensors."""
    from zipnn import ZipNN

    by_dtype: dict[str, list[bytes]] = defaultdict(list)
    for _, array in source_tensors(path):
        by_dtype[array.dtype.name].append(np.ascontiguousarray(array).tobytes())
    buffers = {dtype: b"".join(parts) for dtype, parts in by_dtype.items()}
    total = sum(len(b) for b in buffers.values())
    floats = {d: b for d, b in buffers.items() if d in ZIPNN_DTYPES}
    others = b"".join(b for d, b in buffers.items() if d not in ZIPNN_DTYPES)
    coders = {d: ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPES[d], threads=1) for d in floats}
    decoder = ZipNN(input_format="byte", threads=1)
    packed = {d: coders[d].compress(bytearray(b)) for d, b in floats.items()}  # a copy: zipnn rotates its input
    for d, blob in packed.items():
        if bytes(decoder.decompress(blob)) != floats[d]:
            raise RuntimeError(f"{path}: ZipNN's round trip of the {d} tensors is not bit-exact")
    size = sum(len(p) for p in packed.values()) + len(zstandard.ZstdCompressor(level=19).compress(others))
    compress = best_of(repeats, lambda: [coders[d].compress(bytearray(b)) for d, b in floats.items()])
    decompress = best_of(repeats, lambda: [decoder.decompress(p) for p in packed.values()])
    return total, size, compress, decompress


def engine_decode(target: Path, repeats: int) -> float:
    """Seconds to decode every tensor into outputs allocated (and touched) once, one thread:
    the codec without the fresh-memory cost ``load_file`` pays each call."""
    with TzipReader(target, threads=1) as reader:
        entries = [reader.entry(name) for name in reader.keys()]  # noqa: SIM118 (a reader is not iterable)
        items = [(e, np.ones(e.shape, e.spec.numpy_dtype)) for e in entries if not e.same_as]
        stored = reader.read_stored([e for e, _ in items])
        return best_of(repeats, lambda: reader.decode_into(items, stored=stored))


def ours(path: Path, work: Path, level: str, repeats: int) -> tuple[int, float, float, float]:
    """(file bytes, compress s, decode s, engine decode s) at ``level``, the restore checked
    byte for byte."""
    target = work / f"{level}.tzip"
    compress = best_of(repeats, lambda: tz.compress_file(path, target, threads=1, level=level))
    decode = best_of(repeats, lambda: tz.load_file(target, threads=1))
    engine = engine_decode(target, repeats)
    back = work / f"back{path.suffix}"
    tz.decompress_file(target, back)
    if back.read_bytes() != path.read_bytes():
        raise RuntimeError(f"{path}: level {level} did not restore the file byte for byte")
    back.unlink()
    return target.stat().st_size, compress, decode, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = ["| file | tensor bytes | ZipNN | default | max | max vs default | decode MB/s (1 thread): ZipNN / "
            "default / max | max decode / default | engine decode MB/s: default / max (ratio) | encode MB/s: "
            "ZipNN / default / max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(dir=SCRATCH) as scratch:
        work = Path(scratch)
        for label, path in cases():
            total, theirs, z_compress, z_decode = zipnn_run(path, args.repeats)
            d_size, d_compress, d_decode, d_engine = ours(path, work, "default", args.repeats)
            m_size, m_compress, m_decode, m_engine = ours(path, work, "max", args.repeats)

            def rate(seconds: float, total: int = total) -> str:
                return f"{total / seconds / 1e6:,.0f}"

            rows.append(f"| {label} | {total:,} | {theirs:,} | {d_size:,} | {m_size:,} | "
                        f"{100 * (m_size / d_size - 1):+.2f}% | {rate(z_decode)} / {rate(d_decode)} / "
                        f"{rate(m_decode)} | {d_decode / m_decode:.2f} | {rate(d_engine)} / {rate(m_engine)} "
                        f"({d_engine / m_engine:.2f}) | {rate(z_compress)} / {rate(d_compress)} / {rate(m_compress)} |")
            print(rows[-1], flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Levels: `--level max` against `default` and ZipNN (`benchmarks/run_levels.py`, issue 22)", "",
        f"- Machine: {describe()}; {stamp}; zipnn {package_version('zipnn')}. Reproduce: "
        "`python benchmarks/run_levels.py`.",
        "- Bytes: each level's whole .tzip (header included; every restore checked byte for byte). ZipNN: each "
        "float dtype's tensors joined into one buffer, coded with that dtype; other tensors zstd-19; no header.",
        "- Decode: `tz.load_file(threads=1)` of the whole file into memory (what a user's call costs, fresh output "
        "memory included); engine decode: `TzipReader.decode_into` every tensor into arrays allocated and touched "
        "once, stored bytes read once (the codec alone); encode: `compress_file(threads=1)` to tmpfs; ZipNN's "
        f"decompress/compress with `threads=1`; MB/s of tensor bytes, best of {args.repeats}.",
        "", *rows])
    write_section(BENCH / "RESULTS.md", "levels", text)


if __name__ == "__main__":
    main()
