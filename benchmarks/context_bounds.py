"""How far below the order-0 bound could context models take BF16 weights?

Groundwork for the context-model issue: before building a model, measure the
conditional entropies it would reach, in plain numpy, on the real checkpoint.
Side information (tables, per-row statistics) is NOT included except where a
row says so, so each figure is an upper bound on the gain.

The second part measures what the models would actually achieve: row groups
are compressed for real by tensorzip (each group of rows as its own tensor, so
every group gets its own per-chunk tables), and a parametric model (a Gaussian
whose scale is set per row and column) estimates what a coder that knew each
weight's scale could reach at best.

Run ``python benchmarks/context_bounds.py`` (writes ``benchmarks/CONTEXT_BOUNDS.md``).
"""

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.special import ndtr

from bounds import rotl
from data import prepare
from machine import describe
from stfile import parse

OUT = Path(__file__).resolve().parent / "CONTEXT_BOUNDS.md"


def entropy_bits(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float((c * np.log2(c.sum() / c)).sum())


def conditional_bits(context: np.ndarray, symbols: np.ndarray) -> float:
    """H(symbols | context) x count, contexts and symbols given element-wise."""
    context = context.astype(np.int64).ravel()
    joint = np.unique(context * 256 + symbols.astype(np.int64).ravel(), return_counts=True)[1]
    return entropy_bits(joint) - entropy_bits(np.unique(context, return_counts=True)[1])


def measure(data: bytes) -> tuple[int, dict[str, float]]:
    """Bits over all bf16 tensors for each model, and the element count."""
    _, tensors = parse(data)
    totals: dict[str, float] = {}
    count = 0

    def add(key: str, bits: float) -> None:
        totals[key] = totals.get(key, 0.0) + bits

    for t in tensors:
        if t.dtype != "BF16":
            continue
        words = rotl(np.frombuffer(data[t.start : t.end], dtype="<u2"), 1)
        exponent = (words >> 8).astype(np.int64)
        mantissa = (words & 0xFF).astype(np.int64)
        count += words.size
        order0_exponent = entropy_bits(np.bincount(exponent, minlength=256))
        add("exponent, order-0 per tensor", order0_exponent)
        add("sign+mantissa, order-0 per tensor", entropy_bits(np.bincount(mantissa, minlength=256)))
        add("sign+mantissa given exponent", conditional_bits(exponent, mantissa))
        if len(t.shape) == 2 and t.shape[1] >= 64:
            rows, cols = t.shape
            e = exponent.reshape(rows, cols)
            median = np.median(e, axis=1, keepdims=True).astype(np.int64)
            row_max = e.max(axis=1, keepdims=True)
            add("exponent given row (a table per row, tables not counted)",
                conditional_bits(np.repeat(np.arange(rows), cols), e))
            add("exponent given column (a table per column, tables not counted)",
                conditional_bits(np.tile(np.arange(cols), rows), e))
            add("exponent given row median", conditional_bits(np.broadcast_to(median, e.shape), e))
            add("exponent - row median, one table (+ medians, counted)",
                entropy_bits(np.bincount((e - median + 128).ravel(), minlength=256))
                + entropy_bits(np.bincount(median.ravel(), minlength=256)))
            add("row max - exponent, one table (+ maxima, counted)",
                entropy_bits(np.bincount((row_max - e).ravel(), minlength=256))
                + entropy_bits(np.bincount(row_max.ravel(), minlength=256)))
            previous = np.concatenate([np.zeros((rows, 1), np.int64), e[:, :-1]], axis=1)
            add("exponent given previous exponent in the row", conditional_bits(previous, e))
        else:
            for key in ("exponent given row (a table per row, tables not counted)",
                        "exponent given column (a table per column, tables not counted)",
                        "exponent given row median",
                        "exponent - row median, one table (+ medians, counted)",
                        "row max - exponent, one table (+ maxima, counted)",
                        "exponent given previous exponent in the row"):
                add(key, order0_exponent)
    return count, totals


def cluster_rows(symbols: np.ndarray, groups: int, iterations: int = 6) -> np.ndarray:
    """Assign each row to one of ``groups`` tables, by code length (k-means on row histograms)."""
    histograms = np.stack([np.bincount(row, minlength=256) for row in symbols]).astype(np.float64)
    mean = histograms @ np.arange(256) / symbols.shape[1]
    assign = np.empty(len(symbols), np.int64)
    assign[np.argsort(mean, kind="stable")] = np.arange(len(symbols)) * groups // len(symbols)
    for _ in range(iterations):
        tables = np.zeros((groups, 256))
        np.add.at(tables, assign, histograms)
        probabilities = (tables + 0.02) / (tables + 0.02).sum(axis=1, keepdims=True)
        assign = (histograms @ -np.log2(probabilities).T).argmin(axis=1)
    return assign


def row_groups_achieved(path: Path, groups: int) -> tuple[int, float]:
    """tensorzip's real output size when each large 2-D tensor is split into row groups.

    Returns the compressed file size and the side information the decoder would
    also need (one group id per row, at log2(groups) bits).
    """
    import tensorzip

    tensors = load_file(path)
    out: dict[str, np.ndarray] = {}
    side_bits = 0.0
    for name, array in tensors.items():
        if groups > 1 and array.ndim == 2 and array.size >= 65536 and array.dtype == ml_dtypes.bfloat16:
            exponent = (rotl(array.view(np.uint16), 1) >> 8).astype(np.int64)
            assign = cluster_rows(exponent, groups)
            for g in range(groups):
                rows = np.flatnonzero(assign == g)
                if rows.size:
                    out[f"{name}.group{g}"] = np.ascontiguousarray(array[rows])
            side_bits += len(array) * np.log2(groups)
        else:
            out[name] = array
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split.safetensors"
        save_file(out, split, metadata={"format": "pt"})
        report = tensorzip.compress_file(split, Path(tmp) / "split.tzip", threads=1)
    return report.compressed_bytes, side_bits / 8


def gaussian_bits(data: bytes) -> tuple[int, dict[str, float]]:
    """Code length of each large 2-D BF16 tensor under Gaussian models of its values.

    Each value is charged -log2 of the model's probability of its rounding
    interval (halfway to both BF16 neighbours). The scale is the tensor's RMS,
    each row's RMS, or row RMS x column RMS; the scales themselves are not
    charged, so this is an optimistic estimate of what per-weight scale
    modelling could reach.
    """
    _, tensors = parse(data)
    totals: dict[str, float] = {}
    count = 0
    for t in tensors:
        if t.dtype != "BF16" or len(t.shape) != 2 or t.shape[0] * t.shape[1] < 65536:
            continue
        words = np.frombuffer(data[t.start : t.end], dtype="<u2")
        values = words.view(ml_dtypes.bfloat16).astype(np.float64)
        # BF16 words are sign-magnitude: word+1 is one step further from zero.
        further = (words.astype(np.int32) + 1).astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
        nearer = (words.astype(np.int32) - 1).astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
        a, b = (values + further) / 2, (values + nearer) / 2
        zero = values == 0
        a[zero], b[zero] = further[zero] / 2, -further[zero] / 2
        low, high = np.minimum(a, b), np.maximum(a, b)
        matrix = values.reshape(t.shape)
        row = np.sqrt((matrix**2).mean(axis=1, keepdims=True)) + 1e-30
        column = np.sqrt(((matrix / row) ** 2).mean(axis=0, keepdims=True))
        count += words.size
        totals["order-0 of the whole 16-bit word (table not counted)"] = totals.get(
            "order-0 of the whole 16-bit word (table not counted)", 0.0) + entropy_bits(np.bincount(words))
        for label, scale in (("one scale per tensor", np.full(t.shape, np.sqrt((matrix**2).mean()))),
                             ("a scale per row", np.broadcast_to(row, t.shape)),
                             ("a scale per row x per column", row * column)):
            s = scale.ravel()
            p = np.maximum(ndtr(high / s) - ndtr(low / s), 1e-12)
            key = f"Gaussian, {label} (scales not counted)"
            totals[key] = totals.get(key, 0.0) + float(-np.log2(p).sum())
    return count, totals


def achieved_lines(path: Path) -> list[str]:
    base_size, _ = row_groups_achieved(path, 1)
    lines = [
        "",
        "## Achieved: row groups compressed for real",
        "",
        "Each large BF16 matrix is split into row groups (rows clustered by their exponent histogram),",
        "each group compressed by tensorzip as its own tensor; the group ids per row are side",
        "information a decoder would also need.",
        "",
        "| row groups | tensorzip file (B) | + group ids (B) | vs one group |",
        "|---:|---:|---:|---:|",
        f"| 1 | {base_size:,} | 0 | +0.00% |",
    ]
    for groups in (2, 4, 8):
        size, side = row_groups_achieved(path, groups)
        lines.append(f"| {groups} | {size:,} | {side:,.0f} | {100 * ((size + side) / base_size - 1):+.2f}% |")
    return lines


def gaussian_lines(data: bytes) -> list[str]:
    count, totals = gaussian_bits(data)
    lines = [
        "",
        "## What per-weight scale models could reach at best",
        "",
        f"The {count:,} weights of the large 2-D BF16 matrices, whole values (exponent and mantissa) coded:",
        "",
        "| model | bits / weight |",
        "|---|---:|",
    ]
    lines += [f"| {key} | {bits / count:.4f} |" for key, bits in totals.items()]
    return lines


def main() -> None:
    path = prepare()["bf16"]
    count, totals = measure(path.read_bytes())
    baseline = totals["exponent, order-0 per tensor"] + totals["sign+mantissa, order-0 per tensor"]
    lines = [
        "# Context-model bounds on all-MiniLM-L6-v2 BF16",
        "",
        f"- Machine: {describe()}; {datetime.now(timezone.utc):%Y-%m-%d} UTC",
        "- Reproduce: `python benchmarks/context_bounds.py`",
        "- Layout: rotate left 1 bit, plane 0 = exponent, plane 1 = mantissa (7 bits) + sign.",
        f"- Baseline: the per-tensor order-0 bound of both planes, {baseline / 8:,.0f} bytes.",
        "- 'vs baseline' = the file's bound if that model replaced the order-0 model of its plane.",
        "",
        "| model | bits / weight | vs baseline |",
        "|---|---:|---:|",
    ]
    exponent0 = totals["exponent, order-0 per tensor"]
    mantissa0 = totals["sign+mantissa, order-0 per tensor"]
    for key, bits in totals.items():
        other = mantissa0 if key.startswith(("exponent", "row max")) else exponent0
        change = (bits + other) / baseline - 1 if bits not in (exponent0, mantissa0) else 0.0
        lines.append(f"| {key} | {bits / count:.4f} | {100 * change:+.2f}% |")
    lines += achieved_lines(path)
    lines += gaussian_lines(path.read_bytes())
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
