"""Small static SVG charts for the HTML analysis report: lines, step areas, bars and
points on linear or logarithmic axes, with ticks, axis titles and legends.

Everything is computed here, so a chart is plain markup with no script and nothing
to fetch. Text is sized in the SVG's own units; the report draws a chart about as
wide as it is shown, so 12 units are about 12 CSS pixels on screen. Every string
that ends up in the markup goes through :func:`esc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = 12
CHAR_WIDTH = 0.6  # average glyph width of a sans-serif font, in units of its size
TEXT = "#24292f"
MUTED = "#57606a"
GRID = "#e6e8eb"
AXIS = "#8c959f"


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def text_width(text: str, size: float = FONT) -> float:
    """An estimate of the width of ``text`` (no font metrics are available here)."""
    return len(text) * size * CHAR_WIDTH


def shorten(text: str, width: float, size: float = FONT) -> str:
    """``text`` cut in the middle with an ellipsis so that it fits ``width``."""
    fit = int(width / (size * CHAR_WIDTH))
    if len(text) <= fit:
        return text
    keep = max(fit - 1, 2)
    head = keep // 3
    return text[:head] + "…" + text[len(text) - (keep - head) :]


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


@dataclass(frozen=True)
class Axis:
    """An axis from ``lo`` to ``hi``: linear, or logarithmic with ``log`` as the base (2 or 10)."""

    title: str
    lo: float
    hi: float
    log: int = 0
    integer: bool = False  # ticks only at whole numbers

    def position(self, value: float) -> float:
        """Where ``value`` falls, 0 at ``lo`` and 1 at ``hi``, clamped to the axis."""
        if self.log:
            lo, hi = math.log(self.lo), math.log(self.hi)
            value = math.log(value) if value > 0 else lo
        else:
            lo, hi = self.lo, self.hi
        if hi == lo:
            return 0.5
        return min(max((value - lo) / (hi - lo), 0.0), 1.0)

    def ticks(self, most: int) -> list[tuple[float, str]]:
        """At most ``most`` tick positions with their labels (SVG text markup)."""
        if self.log:
            return _log_ticks(self.lo, self.hi, self.log, most)
        return _linear_ticks(self.lo, self.hi, most, self.integer)


def _linear_ticks(lo: float, hi: float, most: int, integer: bool = False) -> list[tuple[float, str]]:
    if not hi > lo:
        return [(lo, esc(_num(lo)))]
    raw = (hi - lo) / max(most - 1, 1)
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    decimals = next((d for d in range(8) if abs(round(step, d) - step) <= step * 1e-6), 8)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for i in range(first, first + most + 2):
        value = i * step
        if value > hi + step * 1e-9:
            break
        label = f"{value:,.{decimals}f}" if decimals else f"{round(value):,}"
        ticks.append((value, esc(label.replace("-", "−"))))
    return ticks


def _log_ticks(lo: float, hi: float, base: int, most: int) -> list[tuple[float, str]]:
    first = math.ceil(math.log(lo, base) - 1e-9)
    last = math.floor(math.log(hi, base) + 1e-9)
    every = max(1, math.ceil((last - first + 1) / most))
    ticks = []
    for power in range(first, last + 1, every):
        if base == 10 and not 0 <= power <= 3:
            label = f'10<tspan dy="-0.45em" font-size="0.75em">{esc(str(power).replace("-", "−"))}</tspan>'
        else:
            label = esc(_num(base**power))
        ticks.append((float(base) ** power, label))
    return ticks


@dataclass(frozen=True)
class Series:
    """One layer of a chart.

    kind: "line" (points joined), "step" (a level per x, from x - 0.5 to x + 0.5),
    "area" (a filled step from the bottom of the axis), "bars" (one bar per x,
    ``width`` x-units wide) or "points" (circles).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str
    kind: str = "line"
    width: float = 1.75
    dash: str | None = None
    legend: bool = True


@dataclass(frozen=True)
class Hover:
    """A band of the x axis that shows ``text`` as a tooltip."""

    x_lo: float
    x_hi: float
    text: str


class _Frame:
    """The plot area of one panel and its mapping from data to SVG coordinates."""

    def __init__(self, left: float, top: float, width: float, height: float, x: Axis, y: Axis) -> None:
        self.left, self.top, self.width, self.height, self.x_axis, self.y_axis = left, top, width, height, x, y

    def px(self, value: float) -> float:
        return self.left + self.x_axis.position(value) * self.width

    def py(self, value: float) -> float:
        return self.top + (1 - self.y_axis.position(value)) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height


def _finite(x: Sequence[float], y: Sequence[float], log_y: bool) -> list[tuple[float, float]]:
    points = []
    for a, b in zip(x, y, strict=False):
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue
        if log_y and b <= 0:
            continue
        points.append((float(a), float(b)))
    return points


def _series_markup(frame: _Frame, s: Series) -> str:
    points = _finite(s.x, s.y, bool(frame.y_axis.log))
    if not points:
        return ""
    color = esc(s.color)
    dash = f' stroke-dasharray="{esc(s.dash)}"' if s.dash else ""
    title = f"<title>{esc(s.label)}</title>"
    if s.kind == "points":
        dots = "".join(f'<circle cx="{frame.px(a):.1f}" cy="{frame.py(b):.1f}" r="{s.width:g}"/>' for a, b in points)
        return f'<g fill="{color}" stroke="#fff" stroke-width="1.5">{title}{dots}</g>'
    if s.kind == "line":
        coords = " ".join(f"{frame.px(a):.1f},{frame.py(b):.1f}" for a, b in points)
        return (
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="{s.width:g}"'
            f' stroke-linejoin="round"{dash}>{title}</polyline>'
        )
    if s.kind == "bars":
        base = frame.bottom
        parts = []
        for a, b in points:
            x0, x1 = frame.px(a - s.width / 2), frame.px(a + s.width / 2)
            gap = min(1.0, (x1 - x0) * 0.15)
            top = frame.py(b)
            parts.append(f"M{x0 + gap / 2:.1f},{base:.1f}V{top:.1f}H{x1 - gap / 2:.1f}V{base:.1f}Z")
        return f'<path d="{"".join(parts)}" fill="{color}">{title}</path>'
    # "step" and "area": a level for each x from x - 0.5 to x + 0.5. Where a level is
    # under 3 pixels wide, a step line would be mostly vertical strokes: draw the
    # levels as separate short dashes instead.
    dense = s.kind == "step" and frame.px(1) - frame.px(0) < 3
    path = []
    for i, (a, b) in enumerate(points):
        x0, x1, level = frame.px(a - 0.5), frame.px(a + 0.5), frame.py(b)
        joined = i and points[i - 1][0] == a - 1 and not dense
        path.append(f"{'L' if joined else 'M'}{x0:.1f},{level:.1f}H{x1:.1f}")
    if s.kind == "step":
        cap = ' stroke-linecap="square"' if dense else ""
        return (
            f'<path d="{"".join(path)}" fill="none" stroke="{color}" stroke-width="{s.width:g}"'
            f' stroke-linejoin="round"{cap}{dash}>{title}</path>'
        )
    base = frame.bottom
    first, last = frame.px(points[0][0] - 0.5), frame.px(points[-1][0] + 0.5)
    outline = "".join(path).replace("M", "L")
    return f'<path d="M{first:.1f},{base:.1f}{outline}L{last:.1f},{base:.1f}Z" fill="{color}">{title}</path>'


def _swatch(s: Series, x: float, y: float) -> str:
    color = esc(s.color)
    if s.kind in ("area", "bars"):
        return f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="14" height="10" rx="1.5" fill="{color}"/>'
    if s.kind == "points":
        return f'<circle cx="{x + 7:.1f}" cy="{y:.1f}" r="4.5" fill="{color}"/>'
    dash = f' stroke-dasharray="{esc(s.dash)}"' if s.dash else ""
    return (
        f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" stroke="{color}"'
        f' stroke-width="{max(s.width, 2):g}"{dash}/>'
    )


def _legend_row(series: Sequence[Series], x: float, y: float, font: float) -> str:
    parts = []
    for s in series:
        parts.append(_swatch(s, x, y))
        parts.append(f'<text x="{x + 24:.1f}" y="{y:.1f}" dominant-baseline="central">{esc(s.label)}</text>')
        x += 24 + text_width(s.label, font) + 22
    return "".join(parts)


def _legend_box(series: Sequence[Series], frame: _Frame, font: float) -> str:
    """A boxed, stacked legend in the lower right corner of the plot area."""
    line = font * 1.6
    width = 36 + max(text_width(s.label, font) for s in series)
    height = line * len(series) + 10
    x, y = frame.left + frame.width - width - 10, frame.bottom - height - 10
    parts = [
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" rx="4" fill="#fff"'
        f' fill-opacity="0.92" stroke="{GRID}"/>'
    ]
    for i, s in enumerate(series):
        row = y + 5 + line * (i + 0.5)
        parts.append(_swatch(s, x + 8, row))
        parts.append(f'<text x="{x + 32:.1f}" y="{row:.1f}" dominant-baseline="central">{esc(s.label)}</text>')
    return "".join(parts)


def panel(
    left: float,
    top: float,
    width: float,
    height: float,
    *,
    x: Axis,
    y: Axis,
    series: Sequence[Series],
    title: str | None = None,
    subtitle: str | None = None,
    legend: str | None = "top",
    hover: Sequence[Hover] = (),
    font: float = FONT,
    x_ticks: int = 10,
    y_ticks: int = 6,
) -> str:
    """One chart in the box (left, top, width, height) of an SVG: grid, axes, data, legend.

    legend: "top" (a row above the plot area), "inside" (a box in its lower right
    corner) or None.
    """
    y_marks, x_marks = y.ticks(y_ticks), x.ticks(x_ticks)
    tick_label_width = max(text_width(_plain(label), font) for _, label in y_marks)
    # room on the right for half of a tick label at the very end of the x axis
    right_pad = (
        max(8.0, text_width(_plain(x_marks[-1][1]), font) / 2 + 2)
        if x_marks and x.position(x_marks[-1][0]) > 0.97
        else 8.0
    )
    shown = [s for s in series if s.legend and s.label]
    heading = (font * 1.5 if title else 0) + (font * 1.4 if subtitle else 0)
    plot_top = top + 4 + heading + (font * 0.6 if heading else 0) + (font * 2.0 if legend == "top" and shown else 0)
    plot_left = left + tick_label_width + (font * 2.4 if y.title else font)
    plot_bottom = top + height - font * 1.6 - (font * 1.7 if x.title else 0)
    frame = _Frame(plot_left, plot_top, left + width - right_pad - plot_left, plot_bottom - plot_top, x, y)

    out = [f'<g font-size="{font:g}" fill="{TEXT}">']
    if title:
        out.append(f'<text x="{left:.1f}" y="{top + font:.1f}" font-weight="600">{esc(title)}</text>')
    if subtitle:
        y_sub = top + font + (font * 1.4 if title else 0)
        out.append(
            f'<text x="{left:.1f}" y="{y_sub:.1f}" font-size="{font * 0.92:.1f}" fill="{MUTED}">{esc(subtitle)}</text>'
        )
    if legend == "top" and shown:
        out.append(_legend_row(shown, plot_left, plot_top - font * 1.1, font))
    # grid and y ticks
    for value, label in y_marks:
        py = frame.py(value)
        out.append(
            f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{py:.1f}" y2="{py:.1f}"'
            f' stroke="{GRID}"/>'
        )
        out.append(
            f'<text x="{frame.left - 6:.1f}" y="{py:.1f}" text-anchor="end" dominant-baseline="central"'
            f' fill="{MUTED}">{label}</text>'
        )
    # x ticks: drop labels that would run into their neighbour
    last_end = -math.inf
    for value, label in x_marks:
        px = frame.px(value)
        half = text_width(_plain(label), font) / 2
        out.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{frame.bottom:.1f}" y2="{frame.bottom + 4:.1f}" stroke="{AXIS}"/>'
        )
        if px - half > last_end + 4:
            out.append(
                f'<text x="{px:.1f}" y="{frame.bottom + 6 + font * 0.8:.1f}" text-anchor="middle" fill="{MUTED}">'
                f"{label}</text>"
            )
            last_end = px + half
    out.extend(_series_markup(frame, s) for s in series)
    out.append(
        f'<path d="M{frame.left:.1f},{frame.top:.1f}V{frame.bottom:.1f}H{frame.left + frame.width:.1f}"'
        f' fill="none" stroke="{AXIS}"/>'
    )
    if x.title:
        out.append(
            f'<text x="{frame.left + frame.width / 2:.1f}" y="{top + height - 4:.1f}" text-anchor="middle">'
            f"{esc(x.title)}</text>"
        )
    if y.title:
        cx, cy = left + font * 0.8, frame.top + frame.height / 2
        out.append(
            f'<text transform="translate({cx:.1f},{cy:.1f}) rotate(-90)" text-anchor="middle"'
            f' dominant-baseline="central">{esc(y.title)}</text>'
        )
    if legend == "inside" and shown:
        out.append(_legend_box(shown, frame, font))
    for band in hover:
        x0, x1 = frame.px(band.x_lo), frame.px(band.x_hi)
        out.append(
            f'<rect x="{x0:.1f}" y="{frame.top:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="{frame.height:.1f}"'
            f' fill="transparent"><title>{esc(band.text)}</title></rect>'
        )
    out.append("</g>")
    return "".join(out)


def _plain(label_markup: str) -> str:
    """The visible characters of a tick label (its markup without tags), for width estimates."""
    out, inside = [], False
    for ch in label_markup:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out).replace("&amp;", "&")


def svg(width: float, height: float, body: str, label: str) -> str:
    """The ``<svg>`` element: drawn in a width x height box, scaled to the width it is shown at."""
    return (
        f'<svg viewBox="0 0 {width:g} {height:g}" width="{width:g}" height="{height:g}" role="img"'
        f' aria-label="{esc(label)}" font-family="inherit">{body}</svg>'
    )


def nice_max(value: float) -> float:
    """A round number at or just above ``value``, for the top of a linear axis."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * magnitude >= value * (1 - 1e-9))
