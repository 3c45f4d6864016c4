"""Small files: tensorzip against ZipNN and zstd on LoRA adapters and small tensors (issue 22).

    python benchmarks/lora_data.py && python benchmarks/run_small_files.py

Files (real, made here): LoRA adapters of all-MiniLM-L6-v2 at rank 8 and 16 (``lora_data.py``:
a seeded fine-tune, every attention and feed-forward projection of the six layers), in FP32,
BF16 and FP16; and a file of MiniLM's small tensors alone (its 63 biases and LayerNorm
vectors) in the same three dtypes.

Peers, on the same bytes in the same run:

- ZipNN (``zipnn``, byte input with the file's float dtype) on every tensor's bytes as one
  buffer, plus the safetensors header compressed with zstd-19: what a user gets by running ZipNN
  on the file's data, the most favourable way to run it on a small file;
- zstd-19 on the whole file.

tensorzip: ``tz.compress_file`` of the .safetensors (restores it byte for byte; checked), and
the same with every tensor coded alone (the write plan's packing turned off: what tensorzip
wrote before issue 22, but with the compressed header). "header": the .tzip header's stored
bytes. Results: the ``small-files`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zstandard
from safetensors.numpy import load_file, save

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import tensorzip as tz  # noqa: E402
from lora_data import CASTS, prepare_lora  # noqa: E402
from machine import describe, package_version  # noqa: E402
from results_file import write_section  # noqa: E402
from tensorzip import sample_data  # noqa: E402
from tensorzip.writing import plan  # noqa: E402

ZIPNN_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@contextlib.contextmanager
def each_tensor_alone() -> Iterator[None]:
    """The write plan with packing off (its ``pack_max_bytes`` default set to 0)."""
    defaults = plan.WritePlanner.__init__.__kwdefaults__
    saved = defaults["pack_max_bytes"]
    defaults["pack_max_bytes"] = 0
    try:
        yield
    finally:
        defaults["pack_max_bytes"] = saved


def zipnn_bytes(raw: bytes, dtype: str) -> int:
    from zipnn import ZipNN

    (length,) = struct.unpack("<Q", raw[:8])
    header, body = raw[8 : 8 + length], raw[8 + length :]
    codec = ZipNN(input_format="byte", bytearray_dtype=dtype)
    packed = codec.compress(bytearray(body))  # a copy: zipnn 0.5.4 rotates the bits of its input in place
    if bytes(ZipNN(input_format="byte").decompress(packed)) != body:
        raise RuntimeError("ZipNN's round trip is not bit-exact")
    return len(packed) + len(zstandard.ZstdCompressor(level=19).compress(header))


def ours(source: Path, work: Path) -> tuple[int, int, float, float]:
    """(file bytes, header bytes, compress s, decompress s) of tz.compress_file, checked."""
    target, back = work / "out.tzip", work / "back.safetensors"
    started = time.perf_counter()
    tz.compress_file(source, target, overwrite=True)
    compress = time.perf_counter() - started
    started = time.perf_counter()
    tz.decompress_file(target, back, overwrite=True)
    decompress = time.perf_counter() - started
    if back.read_bytes() != source.read_bytes():
        raise RuntimeError(f"{source}: not restored byte for byte")
    with open(target, "rb") as handle:
        header_bytes = struct.unpack_from("<Q", handle.read(40), 24)[0]
    return target.stat().st_size, header_bytes, compress, decompress


def cases() -> list[tuple[str, Path, str, int]]:
    """(label, .safetensors path, dtype tag, tensor count)."""
    found = []
    for key, path in prepare_lora().items():
        rank, tag = key.split("-")
        found.append((f"LoRA {rank}", path, tag, len(load_file(path))))
    minilm = load_file(sample_data.fetch_minilm_folder() / "model.safetensors")
    small = {k: v for k, v in minilm.items() if v.ndim == 1 and v.dtype == np.float32}
    out = BENCH / ".data" / "small"
    out.mkdir(parents=True, exist_ok=True)
    for tag, dtype in CASTS.items():
        path = out / f"minilm-small-{tag}.safetensors"
        if not path.exists():
            path.write_bytes(save({k: v.astype(dtype) for k, v in small.items()}, metadata={"format": "pt"}))
        found.append(("MiniLM small tensors", path, tag, len(small)))
    return found


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for label, path, tag, count in cases():
            raw = path.read_bytes()
            theirs = zipnn_bytes(raw, ZIPNN_DTYPES[tag])
            zstd = len(zstandard.ZstdCompressor(level=19).compress(raw))
            size, header, compress, decompress = ours(path, work)
            with each_tensor_alone():
                alone, _, _, _ = ours(path, work)
            rows.append(f"| {label} {tag.upper()} | {count} | {len(raw):,} | {zstd:,} | {theirs:,} | {alone:,} | "
                        f"{size:,} | {header:,} | {100 * (size / theirs - 1):+.1f}% | "
                        f"{len(raw) / compress / 1e6:,.0f} / {len(raw) / decompress / 1e6:,.0f} |")
            print(rows[-1], flush=True)
    text = "\n".join([
        "## Small files (`benchmarks/run_small_files.py`, issue 22)",
        "",
        f"- Machine: {describe()}; {datetime.now(timezone.utc):%Y-%m-%d}; zipnn {package_version('zipnn')}, "
        f"zstandard {package_version('zstandard')}.",
        "- Files: LoRA adapters of all-MiniLM-L6-v2 (`lora_data.py`: rank 8 and 16 on all six projections of "
        "each layer, a seeded 60-step fine-tune, FP32 cast to BF16 and FP16) and MiniLM's 63 biases and "
        "LayerNorm vectors alone, as .safetensors.",
        "- Bytes. ZipNN: every tensor's bytes as one buffer (byte input, the file's dtype) plus the safetensors "
        "header at zstd-19. tensorzip: `compress_file` (restores the file byte for byte, checked; \"alone\": the "
        "same with every tensor coded alone, i.e. without issue 22's groups); header: its stored header bytes. "
        "vs ZipNN: tensorzip's bytes over ZipNN's, minus 1 (negative is smaller). MB/s: file to file, compress / "
        "decompress, original bytes per second (small files: dominated by fixed costs).",
        "- Reproduce: `python benchmarks/lora_data.py && python benchmarks/run_small_files.py`.",
        "",
        "| file | tensors | bytes | zstd-19 | ZipNN + zstd-19 header | tensorzip, each alone | tensorzip | "
        "of which header | vs ZipNN | MB/s c / d |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])
    write_section(BENCH / "RESULTS.md", "small-files", text)



if __name__ == "__main__":
    os.environ.setdefault("TENSORZIP_CACHE", str(Path.home() / ".cache" / "tensorzip"))
    main()
