"""The self-contained HTML report of ``tensorzip analyze``.

:func:`render_report` turns the analysis dict (see the CLI) into one HTML document
with everything inline: the style sheet, and the plots as SVG drawn here. The page
runs no script and fetches nothing, so it can be mailed, archived or opened
offline. Every string taken from the data is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .svg_plots import Axis, Hover, Series, esc, nice_max, panel, shorten, svg

__all__ = ["render_report"]

WIDTH = 1080  # drawing width of a full-width plot; the page shows it at about this many CSS pixels

ACHIEVED = "#9cc3e6"
ORDER0 = "#d1495b"
CONTEXT = "#2e8b57"
SPECTRUM = "#3b6ea8"
QUANTILES = {"0.9": "#e8a33d", "0.95": "#d1495b", "0.99": "#7b4fa0"}
DTYPE_COLOURS = {
    "float32": "#3b6ea8",
    "bfloat16": "#7b4fa0",
    "float16": "#e8a33d",
    "float64": "#2e8b57",
}
OTHER_COLOURS = ("#2a9d8f", "#8d6e63", "#c0392b", "#546e7a")

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f5f8; color: #24292f; font: 14px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 32px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; font-weight: 650; }
header .source { font: 14px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
header .meta { color: #57606a; font-size: 13px; margin-top: 2px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 8px; padding: 18px 20px 20px;
  margin: 18px 0; }
section > h2 { font-size: 18px; margin: 0 0 12px; font-weight: 620; }
section > p.lead { margin: -6px 0 14px; color: #57606a; }
.notice { background: #fff8e1; border-color: #e9c46a; }
.notice h2 { font-size: 15px; margin: 0 0 6px; }
.notice ul { margin: 0; padding-left: 20px; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
.tile { flex: 1 1 150px; border: 1px solid #e1e6eb; border-radius: 6px; padding: 10px 14px; background: #fafbfc; }
.tile .label { color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 22px; font-weight: 620; font-variant-numeric: tabular-nums; }
.tile .sub { color: #57606a; font-size: 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #d8dee4; font-weight: 600; font-size: 12.5px; color: #3d444d;
  white-space: nowrap; }
tbody td { border-bottom: 1px solid #eef1f4; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.explain { color: #57606a; }
.scroll { overflow-x: auto; }
table.tensors { font-size: 12.5px; width: 100%; }
table.tensors th, table.tensors td { padding: 5px 6px; }
table.tensors td.name { min-width: 290px; }
table.tensors td.planes { text-align: right; min-width: 7em; }
table.tensors td.special { min-width: 7.5em; }
table.tensors td.special span.v { white-space: nowrap; }
table.tensors td.name code { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
table.summary td:first-child { white-space: nowrap; }
table.tensors tbody tr:nth-child(even) { background: #fafbfc; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11px; line-height: 18px;
  white-space: nowrap; margin: 1px 2px 1px 0; }
.badge.hidden { background: #ede4f7; color: #5a3a85; }
.badge.sampled { background: #e6eef8; color: #2f5c8f; }
.dim { color: #8c959f; }
figure.plot { margin: 8px 0 20px; }
figure.plot svg { display: block; width: 100%; height: auto; }
figcaption { color: #57606a; font-size: 13px; margin-top: 6px; max-width: 900px; }
.legend-note { color: #57606a; font-size: 12.5px; margin: 8px 0 0; }
"""


# ----------------------------------------------------------------- formatting


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_int(value: Any) -> str:
    v = _number(value)
    return "—" if v is None else f"{round(v):,}"


def fmt_bytes(value: Any) -> str:
    v = _number(value)
    if v is None:
        return "—"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= size:
            return f"{v / size:,.2f} {unit}"
    return f"{v:,.0f} B"


def fmt_float(value: Any, digits: int = 2) -> str:
    v = _number(value)
    return "—" if v is None else f"{v:,.{digits}f}"


def fmt_fraction(value: Any) -> str:
    """A fraction of elements as a percentage; exact zero stays visibly distinct from tiny shares."""
    v = _number(value)
    if v is None:
        return "—"
    if v == 0:
        return "0"
    pct = 100 * v
    if pct < 0.01:
        return "&lt;0.01 %"
    return f"{pct:.2f} %" if pct < 10 else f"{pct:.1f} %"


def _plane(bits: Any) -> str:
    v = _number(bits)
    return "—" if v is None else ("0" if v == 0 else f"{v:.1f}")


def fmt_gap(value: Any) -> str:
    v = _number(value)
    return "—" if v is None else f"{100 * v:+.2f} %"


def fmt_shape(shape: Any) -> str:
    if not isinstance(shape, (list, tuple)):
        return "—"
    return "scalar" if not shape else " × ".join(str(int(d)) for d in shape)


def _numel(shape: Any) -> int | None:
    if not isinstance(shape, (list, tuple)):
        return None
    return math.prod(int(d) for d in shape)


# ---------------------------------------------------------------- page pieces


def _table(head: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """An HTML table: ``head`` is (label, css class) per column, rows hold ready markup."""
    classes = [f' class="{c}"' if c else "" for _, c in head]
    out = [f'<table class="{cls}"><thead><tr>' if cls else "<table><thead><tr>"]
    out += [f"<th{c}>{label}</th>" for c, (label, _) in zip(classes, head, strict=True)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = zip(classes, row, strict=False)
        out.append("<tr>" + "".join(f"<td{c}>{cell}</td>" for c, cell in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(title: str, body: str, lead: str = "", cls: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section class="{cls}"><h2>{esc(title)}</h2>{lead_html}{body}</section>'


def _figure(fig_id: str, svg_markup: str, caption: str) -> str:
    return f'<figure class="plot" id="{esc(fig_id)}">{svg_markup}<figcaption>{caption}</figcaption></figure>'


def _tiles(items: Sequence[tuple[str, str, str]]) -> str:
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><div class="label">{label}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>'
            for label, value, sub in items
        )
        + "</div>"
    )


def _header(analysis: dict[str, Any]) -> str:
    kind = analysis.get("kind") or "analysis"
    meta = []
    if analysis.get("generated"):
        meta.append(f"generated {esc(analysis['generated'])}")
    if analysis.get("tensorzip_version"):
        meta.append(f"tensorzip {esc(analysis['tensorzip_version'])}")
    return (
        f"<header><h1>tensorzip analysis: {esc(kind)}</h1>"
        f'<div class="source">{esc(analysis.get("source") or "(unnamed source)")}</div>'
        f'<div class="meta">{" · ".join(meta)}</div></header>'
    )


def _notice(analysis: dict[str, Any]) -> str:
    notes = [str(n) for n in analysis.get("notes") or []]
    reps = analysis.get("representations")
    if isinstance(reps, dict):
        notes += [str(n) for n in reps.get("notes") or [] if str(n) not in notes]
    tensors = analysis.get("tensors") or []
    sampled = sum(1 for t in tensors if isinstance(t, dict) and t.get("sampled"))
    if sampled and not notes:
        notes.append(f"{sampled} tensor(s) were measured on a sample of their elements.")
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f'<section class="notice"><h2>Sampling</h2><ul>{items}</ul></section>'


# ----------------------------------------------------------------- checkpoint


def _dtype_colour(name: str, seen: dict[str, str]) -> str:
    if name not in seen:
        seen[name] = DTYPE_COLOURS.get(name) or OTHER_COLOURS[len(seen) % len(OTHER_COLOURS)]
    return seen[name]


def _checkpoint_summary(summary: dict[str, Any], tensors: list[dict[str, Any]]) -> str:
    params = _number(summary.get("parameters"))
    stored = _number(summary.get("bytes"))

    def per_weight(nbytes: Any) -> str:
        v = _number(nbytes)
        return "—" if v is None or not params else f"{8 * v / params:.3f}"

    def share(nbytes: Any) -> str:
        v = _number(nbytes)
        return "—" if v is None or not stored else f"{100 * v / stored:.1f} %"

    ratio = _number(summary.get("ratio"))
    dtypes = summary.get("dtypes") or {}
    dtype_text = ", ".join(f"{esc(k)} × {fmt_int(v)}" for k, v in dtypes.items()) if isinstance(dtypes, dict) else ""
    hidden = sum(1 for t in tensors if t.get("hidden"))
    tiles = _tiles(
        [
            ("Compression ratio", "—" if ratio is None else f"{ratio:.3f}×", "stored bytes / achieved bytes"),
            ("Achieved size", fmt_bytes(summary.get("achieved_bytes")), f"of {fmt_bytes(stored)} stored"),
            ("Gap to order-0 bound", fmt_gap(summary.get("gap_to_order0")), "above the byte-plane entropy"),
            ("Tensors", fmt_int(summary.get("tensors")), dtype_text or "&nbsp;"),
            ("Parameters", fmt_int(params), f"{hidden} hold values of a narrower float" if hidden else "&nbsp;"),
        ]
    )
    rows = [
        ("Stored", "as in the checkpoint", summary.get("bytes")),
        ("Achieved (tensorzip)", "what the codec wrote", summary.get("achieved_bytes")),
        ("Order-0 bound", "entropy of each byte plane under its own static model", summary.get("order0_bytes")),
        (
            "Context-model bound",
            "second byte plane given the first, and for matrices the first given its row; model tables not counted",
            summary.get("context_bytes"),
        ),
    ]
    table = _table(
        [("", ""), ("Bytes", "num"), ("Size", "num"), ("Bits / weight", "num"), ("Of stored", "num"), ("", "")],
        (
            (
                f"<strong>{label}</strong>",
                fmt_int(b),
                fmt_bytes(b),
                per_weight(b),
                share(b),
                f'<span class="dim">{why}</span>',
            )
            for label, why, b in rows
        ),
        "summary",
    )
    return _section("Summary", tiles + table)


def _bits_plot(tensors: list[dict[str, Any]]) -> str:
    n = len(tensors)
    xs = list(range(n))
    columns = {key: [_number(t.get(key)) for t in tensors] for key in ("achieved_bits", "order0_bits", "context_bits")}
    top = nice_max(max((v for col in columns.values() for v in col if v is not None), default=1.0) * 1.04)
    series = [
        Series("achieved (tensorzip)", xs, columns["achieved_bits"], ACHIEVED, kind="area"),
        Series("order-0 bound", xs, columns["order0_bits"], ORDER0, kind="step", width=1.6),
        Series("context-model bound", xs, columns["context_bits"], CONTEXT, kind="step", width=1.6),
    ]
    hover = [
        Hover(
            i - 0.5,
            i + 0.5,
            f"#{i} {t.get('name', '')}\nachieved {fmt_float(t.get('achieved_bits'))}, "
            f"order-0 {fmt_float(t.get('order0_bits'))}, context {fmt_float(t.get('context_bits'))} bits/weight",
        )
        for i, t in enumerate(tensors)
    ]
    height = 360
    body = panel(
        0,
        0,
        WIDTH,
        height,
        x=Axis("tensor index (as numbered in the table below)", -0.5, n - 0.5, integer=True),
        y=Axis("bits per weight", 0, top),
        series=series,
        hover=hover,
        x_ticks=12,
    )
    caption = (
        "Bits per weight for every tensor, in checkpoint order. The shaded area is what tensorzip wrote; "
        "the lines are the order-0 bound (each byte plane coded on its own) and the context-model bound. "
        "Hover over the plot for a tensor's name and figures."
    )
    return _figure("bits-per-tensor", svg(WIDTH, height, body, "bits per weight by tensor"), caption)


def _histogram(hist: Any, elements: int | None) -> dict[int, float]:
    """exponent -> count, scaled to the tensor's element count when the histogram is a sample."""
    if not isinstance(hist, dict):
        return {}
    exps, counts = hist.get("exponent") or [], hist.get("count") or []
    pairs = [
        (int(e), float(c))
        for e, c in zip(exps, counts, strict=False)
        if _number(e) is not None and _number(c) is not None and float(e).is_integer()
    ]
    total = sum(c for _, c in pairs)
    scale = elements / total if elements and total > 0 else 1.0
    out: dict[int, float] = {}
    for e, c in pairs:
        out[e] = out.get(e, 0.0) + c * scale
    return out


def _split_outliers(hist: dict[int, float]) -> tuple[list[int], str]:
    """The exponents to draw, and a note on those left out.

    Zeros and denormals sit at the lowest exponent, far below trained weights; drawn
    on one axis they would squeeze the bulk into a few pixels. A group below a gap
    of more than 8 exponents that holds under 2 % of the elements is left out.
    """
    exps = sorted(e for e, c in hist.items() if c > 0)
    total = sum(hist[e] for e in exps) or 1.0
    cut, below = 0, 0.0
    for j in range(len(exps) - 1):
        below += hist[exps[j]]
        if exps[j + 1] - exps[j] > 8 and below / total < 0.02:
            cut = j + 1
    if not cut:
        return exps, ""
    share = 100 * sum(hist[e] for e in exps[:cut]) / total
    where = f"exponent {exps[0]}" if cut == 1 else f"exponents {exps[0]} to {exps[cut - 1]}"
    return exps[cut:], f"{share:.2g} % at {where} not drawn".replace("-", "−")


def _exponent_panel(
    left: float,
    top: float,
    width: float,
    height: float,
    hist: dict[int, float],
    colour: str,
    title: str,
    font: float,
    subtitle: str = "",
) -> str:
    total = sum(hist.values()) or 1.0
    exps, note = _split_outliers(hist)
    exps = exps or [0]
    shares = [100 * hist.get(e, 0.0) / total for e in exps]
    subtitle = " · ".join(p for p in (subtitle, note) if p)
    return panel(
        left,
        top,
        width,
        height,
        x=Axis("exponent", exps[0] - 0.5, exps[-1] + 0.5, integer=True),
        y=Axis("% of elements", 0, nice_max(max(shares) * 1.05)),
        series=[Series("", exps, shares, colour, kind="bars", width=1.0, legend=False)],
        title=title,
        subtitle=shorten(subtitle, width - 6, font * 0.92) if subtitle else None,
        legend=None,
        font=font,
        x_ticks=8 if width > 500 else 6,
        y_ticks=5,
    )


def _exponent_plots(tensors: list[dict[str, Any]], colours: dict[str, str]) -> str:
    floats = [t for t in tensors if isinstance(t.get("exponent_histogram"), dict)]
    if not floats:
        return ""
    by_dtype: dict[str, dict[int, float]] = {}
    members: dict[str, int] = {}
    for t in floats:
        dtype = str(t.get("dtype") or "?")
        agg = by_dtype.setdefault(dtype, {})
        members[dtype] = members.get(dtype, 0) + 1
        for e, c in _histogram(t["exponent_histogram"], _numel(t.get("shape"))).items():
            agg[e] = agg.get(e, 0.0) + c
    columns = min(len(by_dtype), 3)
    rows = math.ceil(len(by_dtype) / columns)
    cell_w, cell_h = WIDTH / columns, 290
    parts = []
    for i, (dtype, hist) in enumerate(by_dtype.items()):
        left, top = (i % columns) * cell_w, (i // columns) * cell_h
        count = members[dtype]
        title = f"{dtype} · {count} tensor{'s' if count != 1 else ''}"
        gap = 24 if columns > 1 else 0
        parts.append(
            _exponent_panel(
                left,
                top,
                cell_w - gap,
                cell_h - 10,
                hist,
                _dtype_colour(dtype, colours),
                shorten(title, cell_w - gap),
                12,
                f"{fmt_int(sum(hist.values()))} elements",
            )
        )
    aggregate = _figure(
        "exponent-histogram",
        svg(WIDTH, rows * cell_h, "".join(parts), "exponent histogram by dtype"),
        "Share of elements by binary exponent, over all tensors of each float dtype (sampled tensors weighted by "
        "their full element count). A narrow peak means the exponent byte compresses well.",
    )

    numbered = [(i, t) for i, t in enumerate(tensors) if isinstance(t.get("exponent_histogram"), dict)]
    largest = sorted(numbered, key=lambda it: -(_number(it[1].get("bytes")) or 0))[:6]
    columns = 3
    rows = math.ceil(len(largest) / columns)
    cell_w, cell_h = WIDTH / columns, 250
    parts = []
    for i, (index, t) in enumerate(largest):
        left, top = (i % columns) * cell_w, (i // columns) * cell_h
        dtype = str(t.get("dtype") or "?")
        title = f"#{index} {t.get('name', '')}"
        hist = _histogram(t["exponent_histogram"], _numel(t.get("shape")))
        sub = f"{dtype}, {fmt_shape(t.get('shape'))}, {fmt_bytes(t.get('bytes'))}"
        parts.append(
            _exponent_panel(
                left,
                top,
                cell_w - 24,
                cell_h - 12,
                hist,
                _dtype_colour(dtype, colours),
                shorten(title, cell_w - 30, 12),
                12,
                sub,
            )
        )
    multiples = _figure(
        "exponent-largest",
        svg(WIDTH, rows * cell_h, "".join(parts), "exponent histograms of the largest tensors"),
        f"The same histogram for the {len(largest)} largest float tensors (numbers as in the table below).",
    )
    return aggregate + multiples


def _special_values(t: dict[str, Any]) -> str:
    """The shares of zeros, denormals, NaNs and infinities that are not zero; "none" if all are."""
    parts = []
    for key, label in (("zeros", "zeros"), ("denormals", "denormals"), ("nans", "NaN"), ("infs", "Inf")):
        v = _number(t.get(key))
        if v:
            parts.append(f'{label} <span class="v">{fmt_fraction(v)}</span>')
    if parts:
        return "<br>".join(parts)
    return '<span class="dim">none</span>' if any(k in t for k in ("zeros", "denormals", "nans", "infs")) else "—"


def _tensor_table(tensors: list[dict[str, Any]]) -> str:
    head = [
        ("#", "num"), ("Name", "name"), ("dtype", ""), ("Shape", "num"), ("Size", "num"),
        ("Achieved", "num"), ("Order-0", "num"), ("Context", "num"), ("Gap", "num"),
        ("Byte planes", "planes"), ("Special values", "special"),
    ]  # fmt: skip

    def row(i: int, t: dict[str, Any]) -> list[str]:
        achieved, order0 = _number(t.get("achieved_bits")), _number(t.get("order0_bits"))
        gap = (achieved - order0) / order0 if achieved is not None and order0 else None
        planes = t.get("plane_bits") if isinstance(t.get("plane_bits"), list) else []
        badges = ""
        if t.get("hidden"):
            hidden = esc(t["hidden"])
            badges += (
                f'<span class="badge hidden" title="every value is exactly a {hidden} number, stored in a wider '
                f'type">holds {hidden}</span>'
            )
        if t.get("sampled"):
            badges += '<span class="badge sampled" title="measured on a sample of the elements">sampled</span>'
        name = esc(t.get("name", "")).replace(".", ".<wbr>")
        name = f"<code>{name}</code><br>{badges}" if badges else f"<code>{name}</code>"
        return [
            str(i), name, esc(t.get("dtype") or "—"), fmt_shape(t.get("shape")), fmt_bytes(t.get("bytes")),
            fmt_float(achieved), fmt_float(order0), fmt_float(t.get("context_bits")), fmt_gap(gap),
            " ".join(_plane(p) for p in planes) or "—", _special_values(t),
        ]  # fmt: skip

    table = _table(head, (row(i, t) for i, t in enumerate(tensors)), "tensors")
    note = (
        '<p class="legend-note">Achieved, order-0 and context are bits per element; gap is achieved over the order-0 '
        "bound; byte planes give each plane's order-0 bits per element, most significant first; the shares of "
        "special values are of all elements. "
        "<em>holds bfloat16</em> (or float16) marks a wider tensor whose every value is exactly a number of the "
        "narrower type.</p>"
    )
    return _section("Tensors", f'<div class="scroll">{table}</div>{note}')


def _checkpoint(analysis: dict[str, Any]) -> list[str]:
    tensors = [t for t in analysis.get("tensors") or [] if isinstance(t, dict)]
    summary = analysis.get("summary")
    out = []
    if isinstance(summary, dict):
        out.append(_checkpoint_summary(summary, tensors))
    if tensors:
        colours: dict[str, str] = {}
        out.append(_section("Bits per weight by tensor", _bits_plot(tensors)))
        exponents = _exponent_plots(tensors, colours)
        if exponents:
            out.append(_section("Exponent histogram", exponents))
        out.append(_tensor_table(tensors))
    return out


# ------------------------------------------------------------ representations

MEASURES = [
    ("rows", "Rows", fmt_int, "vectors measured"),
    ("dims", "Dimensions", fmt_int, "width of each vector"),
    ("dtype", "dtype", None, "as stored"),
    ("effective_rank", "Effective rank", fmt_float, "exp of the entropy of the normalised spectrum"),
    ("stable_rank", "Stable rank", fmt_float, "total variance over the largest component's variance"),
    (
        "anisotropy",
        "Anisotropy",
        lambda v: fmt_float(v, 3),
        "mean cosine similarity between rows (0: no shared direction)",
    ),
    ("twonn_dimension", "TwoNN dimension", fmt_float, "intrinsic dimension from nearest-neighbour distance ratios"),
]
LABEL_MEASURES = [
    ("classes", "Classes", fmt_int, "distinct labels"),
    ("nc1", "NC1", lambda v: fmt_float(v, 4), "within-class over between-class variability (0: fully collapsed)"),
    ("nc2_equinorm", "NC2 equinorm", lambda v: fmt_float(v, 4), "spread of the class-mean norms (0: equal norms)"),
    ("nc2_equiangular", "NC2 equiangular", lambda v: fmt_float(v, 4),
     "spread of the cosines between class means (0: equal angles)"),
    ("nc2_max_angle", "NC2 max-angle", lambda v: fmt_float(v, 4),
     "distance of those cosines from −1/(C−1), the simplex value (0: maximally separated)"),
    ("coding_rate_reduction", "Coding-rate reduction", lambda v: fmt_float(v, 3),
     "coding rate of all rows minus the class-weighted rate of each class (higher: more discriminative)"),
    ("coding_rate", "Coding rate", lambda v: fmt_float(v, 3), "bits to code all rows up to the distortion below"),
    ("eps2", "Distortion ε²", lambda v: fmt_float(v, 4), "squared distortion used by the coding rates"),
]  # fmt: skip


def _measure_rows(data: dict[str, Any], measures: Sequence[tuple[str, str, Any, str]]) -> list[list[str]]:
    rows = []
    for key, label, fmt, explain in measures:
        if key not in data:
            continue
        value = data[key]
        shown = esc(value if value is not None else "—") if fmt is None else fmt(value)
        rows.append([f"<strong>{label}</strong>", shown, esc(explain)])
    return rows


def _spectrum_plot(reps: dict[str, Any]) -> str:
    spectrum = [v for v in (_number(x) for x in reps.get("spectrum") or []) if v is not None]
    positive = [v for v in spectrum if v > 0]
    if not positive:
        return ""
    high = 10 ** math.ceil(math.log10(max(positive)))
    low = max(10 ** math.floor(math.log10(min(positive))), high * 1e-12)
    ks = list(range(1, len(spectrum) + 1))
    series = [Series("share of variance", ks, spectrum, SPECTRUM, kind="line", width=2)]
    if len(spectrum) <= 48:
        series.append(Series("", ks, spectrum, SPECTRUM, kind="points", width=3, legend=False))
    for key, label, colour in (
        ("effective_rank", "effective rank", "#2a9d8f"),
        ("stable_rank", "stable rank", "#8d6e63"),
    ):
        r = _number(reps.get(key))
        if r is not None and 1 <= r <= len(spectrum):
            series.append(Series(f"{label} {r:.1f}", [r, r], [low, high], colour, width=1.5, dash="5 4"))
    height = 340
    body = panel(
        0, 0, WIDTH, height,
        x=Axis("component (largest first)", 0, max(len(spectrum), 2), integer=True),
        y=Axis("share of variance", low, high, log=10),
        series=series,
        legend="top",
    )  # fmt: skip
    caption = (
        "Eigenvalue spectrum of the covariance, each eigenvalue as a share of the total variance (log scale). "
        "A steep fall means a few directions carry most of the variance."
    )
    return _figure("spectrum", svg(WIDTH, height, body, "spectrum"), caption)


def _cumulative_plot(reps: dict[str, Any]) -> str:
    spectrum = [v for v in (_number(x) for x in reps.get("spectrum") or []) if v is not None]
    energy = reps.get("energy") if isinstance(reps.get("energy"), dict) else {}
    if spectrum:
        ks, total, cumulative = list(range(1, len(spectrum) + 1)), 0.0, []
        for v in spectrum:
            total += v
            cumulative.append(total)
    else:
        given = zip(energy.get("k") or [], energy.get("fraction") or [], strict=False)
        pairs = [(_number(k), _number(f)) for k, f in given]
        pairs = [(k, f) for k, f in pairs if k is not None and f is not None and k >= 1]
        if not pairs:
            return ""
        ks, cumulative = [k for k, _ in pairs], [f for _, f in pairs]
    top_k = max(max(ks), 2)
    x_hi = 2 ** math.ceil(math.log2(top_k))
    series = [Series("cumulative explained variance", ks, cumulative, SPECTRUM, kind="line", width=2)]
    if not spectrum:
        series.append(Series("", ks, cumulative, SPECTRUM, kind="points", width=3, legend=False))
    components = reps.get("components_for") if isinstance(reps.get("components_for"), dict) else {}
    for q, colour in QUANTILES.items():
        k = _number(components.get(q))
        if k is None:
            continue
        level = float(q)
        series.append(Series("", [k, k], [0, level], colour, width=1.25, dash="4 3", legend=False))
        series.append(Series(f"{100 * level:g} % at k = {k:,.0f}", [k], [level], colour, kind="points", width=5))
    height = 340
    body = panel(
        0, 0, WIDTH, height,
        x=Axis("number of components k (log scale)", 1, x_hi, log=2),
        y=Axis("explained variance", 0, 1),
        series=series,
        legend="top",
        x_ticks=14,
    )  # fmt: skip
    caption = (
        "Fraction of the variance captured by the k largest components; the marks give the fewest components "
        "for 90 %, 95 % and 99 %."
    )
    return _figure("cumulative-variance", svg(WIDTH, height, body, "cumulative explained variance"), caption)


def _representations(reps: Any) -> list[str]:
    if not isinstance(reps, dict):
        return [_section("Representations", "<p>No representation measures in this analysis.</p>")]
    rows = _measure_rows(reps, MEASURES)
    components = reps.get("components_for") if isinstance(reps.get("components_for"), dict) else {}
    for q in sorted(components, key=lambda s: _number(_float_or_none(s)) or 0):
        level = _float_or_none(q)
        label = f"{100 * level:g} %" if level is not None else esc(q)
        rows.append([f"<strong>Components for {label}</strong>", fmt_int(components[q]),
                     "fewest leading components that explain this share of the variance"])  # fmt: skip
    out = []
    if rows:
        table = _table([("Measure", ""), ("Value", "num"), ("What it says", "explain")], rows)
        sampled = " Measured on a sample of the rows." if reps.get("sampled") else ""
        out.append(_section("Summary", table, lead=f"Geometry of the representation matrix.{sampled}"))
    plots = _spectrum_plot(reps) + _cumulative_plot(reps)
    if plots:
        out.append(_section("Spectrum", plots))
    labels = reps.get("labels")
    if isinstance(labels, dict):
        table = _table(
            [("Measure", ""), ("Value", "num"), ("What it says", "explain")], _measure_rows(labels, LABEL_MEASURES)
        )
        out.append(
            _section("Label structure", table, lead="Neural-collapse and coding-rate measures of the labelled classes.")
        )
    return out


def _float_or_none(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- entry


def render_report(analysis: dict[str, Any]) -> str:
    """One self-contained HTML document showing ``analysis`` (the dict ``tensorzip analyze`` builds).

    >>> page = render_report({"kind": "checkpoint", "source": "a<b>.safetensors", "tensors": []})
    >>> page.startswith("<!DOCTYPE html>"), "a&lt;b&gt;.safetensors" in page
    (True, True)
    """
    kind = analysis.get("kind")
    sections = [_notice(analysis)]
    if kind == "checkpoint":
        sections += _checkpoint(analysis)
    elif kind == "representations":
        sections += _representations(analysis.get("representations"))
    else:
        sections.append(_section("Nothing to show", f"<p>Unknown analysis kind {esc(repr(kind))}.</p>"))
    title = f"tensorzip analysis · {analysis.get('source') or kind or ''}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{_header(analysis)}{''.join(sections)}</main></body></html>\n"
    )
