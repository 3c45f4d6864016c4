"""How far below the order-0 bound could context models take BF16 weights?

Groundwork for the context-model issue: before building a model, measure the
conditional entropies it would reach, in plain numpy, on the real checkpoint.
Side information (tables, per-row statistics) is NOT included except where a
row says so, so each figure is an upper bound on the gain.

Run ``python benchmarks/context_bounds.py`` (writes ``benchmarks/CONTEXT_BOUNDS.md``).
"""

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

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
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
