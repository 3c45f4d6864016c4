"""What coding the top bits of plane 1 given plane 0 would save, per chunk, everything counted.

    python benchmarks/context_gain.py          (writes a section of benchmarks/CONTEXT_BOUNDS.md)

The measurement issue 22's ``max`` level starts from. The default level stores plane 1 of a
16-bit float raw in nearly every chunk (its order-0 gain is under the 0.5% rule), and plane 0
(the exponent for BF16 and FP32; exponent and the top 3 mantissa bits for FP16) with rANS.
The model measured here codes the top ``k`` bits of plane 1 with rANS under a table chosen by
plane 0's byte, the other ``8 - k`` bits raw. Counted as a real chunk would carry them, per
chunk of the default size: a 12-bit frequency per symbol and a context byte for each table
(contexts with at least 512 elements get their own, the rest share one), and the rANS stream's
32 states (128 bytes). The saving is against the default .tzip's size on the same file,
so it reads as "max would be this much smaller" before any coder inefficiency.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tensorzip as tz  # noqa: E402
from data import prepare  # noqa: E402
from machine import describe  # noqa: E402
from results_file import write_section  # noqa: E402
from tensorzip.codecs import BytePlanesCodec  # noqa: E402
from tensorzip.dtypes import by_name  # noqa: E402

OWN_TABLE_ELEMENTS = 512
STATE_BYTES = 32 * 4


def _coded_bits(counts: np.ndarray) -> float:
    present = counts[counts > 0]
    return float(-(present * np.log2(present / present.sum())).sum())


def chunk_saving(context: np.ndarray, symbols: np.ndarray, k: int) -> float:
    """Bytes saved on one chunk against storing the ``k`` bits raw (never below 0: a chunk
    where the model does not pay keeps the raw plane)."""
    order = np.argsort(context, kind="stable")
    groups = np.split(symbols[order], np.flatnonzero(np.diff(context[order])) + 1)
    saved, tables, pooled = 0.0, 0, np.zeros(1 << k)
    for group in groups:
        counts = np.bincount(group, minlength=1 << k).astype(np.float64)
        if group.size >= OWN_TABLE_ELEMENTS:
            saved += group.size * k - _coded_bits(counts)
            tables += 1
        else:
            pooled += counts
    if pooled.sum():
        saved += pooled.sum() * k - _coded_bits(pooled)
        tables += 1
    net = saved / 8 - tables * ((1 << k) * 12 + 8) / 8 - STATE_BYTES
    return max(0.0, net)


def file_saving(path: Path, dtype: str, k: int) -> float:
    """Bytes the model saves over every float tensor of ``path``, chunk by chunk."""
    spec = by_name(dtype)
    width = spec.itemsize * 8
    codec = BytePlanesCodec.for_dtype(spec)
    unsigned = np.uint16 if spec.itemsize == 2 else np.uint32
    total = 0.0
    for array in load_file(str(path)).values():
        if array.dtype.itemsize != spec.itemsize or array.dtype.kind not in "fV":
            continue
        bits = np.ascontiguousarray(array).reshape(-1).view(unsigned).astype(np.uint64)
        rotated = ((bits << codec.rotate_bits) | (bits >> (width - codec.rotate_bits))) & ((1 << width) - 1)
        plane0 = ((rotated >> (width - 8)) & 0xFF).astype(np.int64)
        plane1_top = (((rotated >> (width - 16)) & 0xFF) >> (8 - k)).astype(np.int64)
        for start in range(0, bits.size, codec.chunk_elements):
            stop = start + codec.chunk_elements
            total += chunk_saving(plane0[start:stop], plane1_top[start:stop], k)
    return total


def main() -> None:
    paths = prepare()
    rows = ["| file | default .tzip (B) | top 2 bits | top 3 bits | top 4 bits |", "|---|---:|---:|---:|---:|"]
    for tag, dtype in (("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32")):
        with tempfile.TemporaryDirectory() as folder:
            packed = Path(folder) / "default.tzip"
            tz.compress_file(paths[tag], packed)
            size = os.path.getsize(packed)
        cells = []
        for k in (2, 3, 4):
            saved = file_saving(paths[tag], dtype, k)
            cells.append(f"{saved:,.0f} B ({saved / size:.2%})")
        rows.append(f"| MiniLM {tag.upper()} | {size:,} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Top bits of plane 1 given plane 0, per chunk, tables and rANS states counted (issue 22's `max`)", "",
        f"- {describe()}; {stamp}. Reproduce: `python benchmarks/context_gain.py`.",
        "- The saving a chunk-local model would make against the default .tzip of the same file: the top k bits "
        "of plane 1 coded under a table chosen by plane 0's byte (contexts of 512+ elements their own table, the "
        "rest one shared), the other bits raw; per table a 12-bit frequency per symbol and a context byte, per "
        "chunk 32 rANS states. A chunk where it does not pay keeps its raw plane.",
        "- FP16 gains nothing: its plane 0 already holds the exponent with the top 3 mantissa bits (coded "
        "jointly today), and what is left of the mantissa is nearly uniform given it.",
        "", *rows])
    write_section(Path(__file__).resolve().parent / "CONTEXT_BOUNDS.md", "context-gain", text)


if __name__ == "__main__":
    main()
