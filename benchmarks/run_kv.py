"""KV caches: tensorzip's quantize + entropy-code against KIVI-style fixed-width
2- and 4-bit quantization and per-token int8, bytes and attention error measured
the same way on the same real caches.

Data (``kv_data.py``): the per-layer attention queries, keys and values that
all-MiniLM-L6-v2 computes on passages of the Python documentation, 128-512 tokens.

Bytes: everything stored (integers, every scale and zero point, exact window,
header) over the elements of K and V. Error: the attention output
softmax(q k^T / sqrt(d)) v recomputed from the decoded K and V, relative
Frobenius error against the exact output (over all sequences, per layer and
overall) and the worst cosine of any output row.

Run ``python benchmarks/run_kv.py`` (writes its section of ``benchmarks/RESULTS.md``).
"""

import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import tensorzip
import tensorzip.kv as tzkv
from kv_data import prepare_kv
from machine import describe
from results_file import write_section
from tensorzip.kv.attention import attention_output
from tensorzip.kv.groups import CHANNELS_AXIS, TOKENS_AXIS, quantize_levels

HEADER_BYTES = 64  # a fixed-width format still needs its shape and settings


def load() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(q, k, v)] with arrays [layers, 1, heads, tokens, dim] float32."""
    out = []
    for path in prepare_kv():
        with np.load(path) as data:
            out.append(tuple(data[name][:, None] for name in ("q", "k", "v")))
    return out


class Accumulator:
    """Sums over sequences: bytes, elements, squared error and norm per layer, worst cosine."""

    def __init__(self, layers: int):
        self.bytes = 0
        self.elements = 0
        self.diff = np.zeros(layers)
        self.norm = np.zeros(layers)
        self.worst_cosine = 1.0

    def add(self, stored: int, q, k, v, k_hat, v_hat) -> None:
        exact, approx = attention_output(q, k, v), attention_output(q, k_hat, v_hat)
        self.bytes += stored
        self.elements += k.size + v.size
        self.diff += np.array([np.sum((exact[i] - approx[i]) ** 2) for i in range(len(exact))])
        self.norm += np.array([np.sum(exact[i] ** 2) for i in range(len(exact))])
        cos = np.einsum("...i,...i->...", exact, approx) / np.maximum(
            np.linalg.norm(exact, axis=-1) * np.linalg.norm(approx, axis=-1), 1e-30)
        self.worst_cosine = min(self.worst_cosine, float(cos.min()))

    def row(self, name: str, **extra) -> dict:
        return {"method": name, "bpe": self.bytes / self.elements, "error": float(np.sqrt(self.diff.sum() /
                self.norm.sum())), "per_layer": np.sqrt(self.diff / self.norm).tolist(),
                "cosine": self.worst_cosine, **extra}


def fixed_width_bytes(symbols_bits: int, groups: int, elements: int, exact_elements: int) -> int:
    """Packed integers + an fp16 scale and zero point per group + an fp16 exact window + header."""
    return (elements * symbols_bits + 7) // 8 + 4 * groups + 2 * exact_elements + HEADER_BYTES


def kivi(data, bits: int, group: int = 32, window: int = 0) -> dict:
    """KIVI: keys per channel (groups of tokens), values per token (groups of channels),
    2 or 4 bits, the last ``window`` tokens in fp16."""
    acc = Accumulator(data[0][1].shape[0])
    for q, k, v in data:
        cut = max(0, k.shape[TOKENS_AXIS] - window)
        stored = 0
        decoded = []
        for x, axis in ((k, TOKENS_AXIS), (v, CHANNELS_AXIS)):
            old = x[:, :, :, :cut]
            quantized = quantize_levels(old, axis, group, 1 << bits)
            recent = x[:, :, :, cut:].astype(np.float16).astype(np.float32)
            decoded.append(np.concatenate([quantized.decode(), recent], axis=TOKENS_AXIS))
            stored += fixed_width_bytes(bits, quantized.minimum.size, old.size, recent.size)
        acc.add(stored, q, k, v, *decoded)
    return acc.row(f"KIVI-{bits} (group {group}{f', fp16 window {window}' if window else ''})")


def per_token_int8(data) -> dict:
    """Symmetric int8 per (token, head) vector with an fp16 scale."""
    acc = Accumulator(data[0][1].shape[0])
    for q, k, v in data:
        decoded, stored = [], 0
        for x in (k, v):
            scale = (np.abs(x).max(axis=-1, keepdims=True) / 127).astype(np.float16).astype(np.float32)
            scale = np.where(scale > 0, scale, 1.0)
            decoded.append(np.clip(np.rint(x / scale), -127, 127) * scale)
            stored += x.size + 2 * scale.size + HEADER_BYTES
        acc.add(stored, q, k, v, *decoded)
    return acc.row("per-token int8")


def ours(data, levels: int, group: int, window: int = 0, rank: int = 0, outliers: int = 0) -> dict:
    acc = Accumulator(data[0][1].shape[0])
    fixed = 0
    for q, k, v in data:
        blob = tzkv.compress(k, v, levels=levels, group_size=group, window=window, rank=rank, outliers=outliers)
        acc.add(len(blob), q, k, v, *tzkv.decompress(blob))
        # The same integers and parameters, stored fixed-width instead of entropy-coded.
        bits = int(np.ceil(np.log2(levels)))
        cut = max(0, k.shape[TOKENS_AXIS] - window)
        for x, axis in ((k, TOKENS_AXIS), (v, CHANNELS_AXIS)):
            old = x[:, :, :, :cut]
            fixed += outliers * x.shape[0] * (x.shape[1] * cut * 4 + 4)  # exact float32 values, int32 indices
            groups = -(-old.shape[axis] // group) * (old.size // max(1, old.shape[axis]))
            fixed += fixed_width_bytes(bits, groups, old.size, x.size - old.size) + (
                2 * rank * (old.shape[TOKENS_AXIS] + old.shape[CHANNELS_AXIS]) * (old.size // max(1, old.shape[
                    TOKENS_AXIS] * old.shape[CHANNELS_AXIS])) if rank else 0)
    name = f"tensorzip {levels} levels, group {group}" + (f", window {window}" if window else "") + (
        f", rank {rank}" if rank else "") + (f", {outliers} outlier channels" if outliers else "")
    return acc.row(name, ours=True, fixed_bpe=fixed / acc.elements)


def main() -> None:
    data = load()
    tokens = [k.shape[TOKENS_AXIS] for _, k, _ in data]
    rows = [kivi(data, 2), kivi(data, 4), kivi(data, 2, window=32), kivi(data, 4, window=32), per_token_int8(data)]
    for group in (32, 64, 128):
        for levels in (3, 4, 5, 6, 8, 11, 16, 23, 32, 64, 128, 256):
            rows.append(ours(data, levels, group))
    rows += [ours(data, 4, 32, window=32), ours(data, 16, 32, window=32), ours(data, 4, 64, rank=2),
             ours(data, 6, 64, outliers=8)]
    peers = [r for r in rows if not r.get("ours")]
    mine = [r for r in rows if r.get("ours")]
    lines = [
        "## KV caches: quantize + entropy-code", "",
        f"- Machine: {describe()}; Python {platform.python_version()}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; tensorzip {tensorzip.__version__}",
        f"- Data: all-MiniLM-L6-v2 attention q/k/v (6 layers, 12 heads, head_dim 32) on {len(data)} passages of "
        f"the Python documentation, {min(tokens)}-{max(tokens)} tokens (`benchmarks/kv_data.py`).",
        "- Bytes per element: everything stored (integers, scales, zero points, exact windows, headers) over the "
        "elements of K and V (float32 input: 4 bytes). Error: the attention output recomputed from decoded K "
        "and V, relative Frobenius error (all sequences) and the worst cosine of any output row.",
        "- Reproduce: `python benchmarks/run_kv.py`.", "",
        "| method | bytes / element | relative error | worst cosine | fixed-width bytes / element | "
        "entropy coding saves |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["bpe"]):
        fixed = f"{r['fixed_bpe']:.4f} | {1 - r['bpe'] / r['fixed_bpe']:.1%}" if r.get("ours") else "– | –"
        name = f"**{r['method']}**" if r.get("ours") else r["method"]
        lines.append(f"| {name} | {r['bpe']:.4f} | {r['error']:.5f} | {r['cosine']:.5f} | {fixed} |")
    lines += ["", "Per layer (relative error of the attention output):", "",
              "| method | " + " | ".join(f"layer {i}" for i in range(len(rows[0]["per_layer"]))) + " |",
              "|---|" + "---:|" * len(rows[0]["per_layer"])]
    for r in peers + [min((m for m in mine if m["bpe"] <= p["bpe"]), key=lambda m: m["error"], default=None)
                      for p in peers]:
        if r is not None:
            lines.append(f"| {r['method']} | " + " | ".join(f"{e:.5f}" for e in r["per_layer"]) + " |")
    lines += ["", "| peer | its bytes / element, error | tensorzip at no more bytes: best error | lower error |",
              "|---|---|---|---|"]
    for p in peers:
        best = min((m for m in mine if m["bpe"] <= p["bpe"]), key=lambda m: m["error"], default=None)
        if best is None:
            lines.append(f"| {p['method']} | {p['bpe']:.4f}, {p['error']:.5f} | none as small | NO |")
            continue
        lines.append(f"| {p['method']} | {p['bpe']:.4f}, {p['error']:.5f} | {best['method']}: {best['bpe']:.4f}, "
                     f"{best['error']:.5f} | {'yes' if best['error'] < p['error'] else 'NO'} |")
    frontier = [m for m in mine if not any(o["bpe"] <= m["bpe"] and o["error"] < m["error"] for o in mine
                                           if o is not m)]
    savings = [1 - m["bpe"] / m["fixed_bpe"] for m in frontier]
    lines += ["", f"Entropy coding against the same integers stored fixed-width, on tensorzip's bytes-error frontier "
              f"({len(frontier)} configurations): saves {min(savings):.1%} to {max(savings):.1%} at identical error "
              f"({'>= 15% on all' if min(savings) >= 0.15 else 'NOT >= 15% on all'}):", "",
              "| levels | saving, by group size 32 / 64 / 128 |", "|---:|---|"]
    by_levels: dict[int, list[str]] = {}
    for m in mine:
        if not any(word in m["method"] for word in ("window", "rank", "outlier")):
            levels = int(m["method"].split()[1])
            by_levels.setdefault(levels, []).append(f"{1 - m['bpe'] / m['fixed_bpe']:.1%}")
    lines += [f"| {levels} | {' / '.join(values)} |" for levels, values in sorted(by_levels.items())]
    text = "\n".join(lines)
    print(text)
    write_section(Path(__file__).resolve().parent / "RESULTS.md", "kv", text)


if __name__ == "__main__":
    main()
