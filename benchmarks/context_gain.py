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


def _table_bytes(counts: np.ndarray) -> float:
    return 2 + 1.5 * np.count_nonzero(counts)


def plane0_context_saving(symbols: np.ndarray, context: np.ndarray) -> float:
    """Bytes saved on one chunk by coding plane 0 (full bytes) under a table per context
    (contexts from the first to the last with 2,048+ elements their own, the rest one shared:
    the max level's range rule) against its order-0 table, tables counted; never below 0."""
    plain = np.bincount(symbols, minlength=256)
    before = _coded_bits(plain) / 8 + _table_bytes(plain)
    per_context = np.bincount(context, minlength=256)
    own = np.flatnonzero(per_context >= 2048)
    if own.size == 0:
        return 0.0
    inside = (context >= own[0]) & (context <= own[-1])
    after = 0.0
    for c in range(own[0], own[-1] + 1):
        counts = np.bincount(symbols[context == c], minlength=256)
        if counts.sum():
            after += _coded_bits(counts) / 8 + _table_bytes(counts)
    rest = np.bincount(symbols[~inside], minlength=256)
    if rest.sum():
        after += _coded_bits(rest) / 8 + _table_bytes(rest)
    return max(0.0, before - after)


def fp16_candidates(path: Path) -> list[str]:
    """Other contexts for FP16, whose plane 0 already holds the top mantissa bits: plane 0
    given plane 0 of element i - 32 (the same rANS lane's previous symbol: decodable with
    32 lanes), and plane 0 given its row's / column's median plane 0 (side information: a
    byte per row / column, counted)."""
    rows = []
    lane, by_row, by_column, side_row, side_column = 0.0, 0.0, 0.0, 0, 0
    chunk = BytePlanesCodec.for_dtype(by_name("float16")).chunk_elements
    for array in load_file(str(path)).values():
        if array.dtype != np.float16 or array.size < 4096:
            continue
        bits = array.reshape(-1).view(np.uint16).astype(np.uint32)
        plane0 = ((((bits << 1) | (bits >> 15)) & 0xFFFF) >> 8).astype(np.int64)
        previous = np.concatenate([np.zeros(32, np.int64), plane0[:-32]])
        contexts = [previous]
        if array.ndim == 2:
            grid = plane0.reshape(array.shape)
            row = np.broadcast_to(np.median(grid, axis=1).astype(np.int64)[:, None], array.shape).reshape(-1)
            column = np.broadcast_to(np.median(grid, axis=0).astype(np.int64)[None, :], array.shape).reshape(-1)
            contexts += [row, column]
            side_row += array.shape[0]
            side_column += array.shape[1]
        for start in range(0, plane0.size, chunk):
            part = slice(start, start + chunk)
            saved = [plane0_context_saving(plane0[part], c[part]) for c in contexts]
            lane += saved[0]
            if len(saved) == 3:
                by_row += saved[1]
                by_column += saved[2]
    rows.append(f"| plane 0 given plane 0 of element i - 32 (the lane's previous symbol) | {lane:,.0f} | 0 |")
    rows.append(f"| plane 0 given its row's median plane 0 | {by_row:,.0f} | {side_row:,} |")
    rows.append(f"| plane 0 given its column's median plane 0 | {by_column:,.0f} | {side_column:,} |")
    return rows


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
        "", *rows, "",
        "FP16, other contexts (MiniLM FP16; bytes saved against the order-0 plane 0 of the same chunks, "
        "tables counted, and the side information the context needs). None saves more than it costs, so "
        "`--level max` leaves FP16 files as the default level writes them:", "",
        "| context | saved (B) | side information (B) |", "|---|---:|---:|",
        *fp16_candidates(paths["fp16"])])
    write_section(Path(__file__).resolve().parent / "CONTEXT_BOUNDS.md", "context-gain", text)


if __name__ == "__main__":
    main()
