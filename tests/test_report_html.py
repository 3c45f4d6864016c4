"""The HTML report of ``tensorzip analyze``: escaping, no external references, robustness
to missing keys, and (in headless Chromium) that every plot is drawn and nothing is fetched."""

from __future__ import annotations

import copy
import math
import os
import random
import re
import sys
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tensorzip.analysis.report_html import render_report

from . import browser

SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'
EVIL = "<script>alert(1)</script>"

# ------------------------------------------------------------------ synthetic data


def _normal_exponents(scale: float, elements: int, zeros: float = 0.0) -> dict[str, list[int]]:
    """Exponent histogram of N(0, scale^2) values: P(2^e <= |x| < 2^(e+1)), zeros at -127."""
    exps, counts = [], []
    for e in range(-40, 4):
        lo, hi = 2.0**e / scale / math.sqrt(2), 2.0 ** (e + 1) / scale / math.sqrt(2)
        count = round(elements * (1 - zeros) * (math.erf(hi) - math.erf(lo)))
        if count:
            exps.append(e)
            counts.append(count)
    if zeros:
        exps.insert(0, -127)
        counts.insert(0, round(elements * zeros))
    return {"exponent": exps, "count": counts}


def _tensor(name: str, dtype: str, shape: list[int], rng: random.Random, scale: float = 0.02) -> dict[str, Any]:
    elements = math.prod(shape)
    width = {"float32": 4, "bfloat16": 2, "float16": 2, "int64": 8}[dtype]
    top = 2.9 + rng.uniform(-0.4, 0.6) if scale < 0.5 else 1.2 + rng.uniform(0, 0.8)
    planes = {
        "float32": [top, 7.9 + rng.uniform(-0.1, 0.08), 7.99, 8.0],
        "bfloat16": [top, 7.6 + rng.uniform(-0.3, 0.3)],
        "float16": [top + 1.5, 7.8 + rng.uniform(-0.2, 0.2)],
        "int64": [0, 0, 0, 0, 0, 0, 1.1, 7.9],
    }[dtype]
    order0 = sum(planes)
    context = order0 - rng.uniform(0.2, 0.9)
    achieved = order0 * (1 + rng.uniform(0.001, 0.006)) + (64 / elements)
    is_float = dtype != "int64"
    zeros = 0.002 if name.endswith("mlp.down.weight") and "layers.3." in name else 0.0
    return {
        "name": name,
        "dtype": dtype,
        "shape": shape,
        "bytes": elements * width,
        "plane_bits": planes,
        "order0_bits": order0,
        "context_bits": context,
        "achieved_bits": achieved,
        "exponent_histogram": _normal_exponents(scale, min(elements, 1 << 20), zeros) if is_float else None,
        "zeros": zeros,
        "denormals": 1e-7 if is_float and rng.random() < 0.1 else 0.0,
        "nans": 0.0,
        "infs": 0.0,
        "hidden": "bfloat16" if dtype == "float32" and rng.random() < 0.15 else None,
        "sampled": elements > (1 << 20),
    }


def checkpoint_analysis(layers: int = 24, seed: int = 0) -> dict[str, Any]:
    """A plausible transformer checkpoint: 8 tensors a layer, 8 more (24 layers: 200 tensors)."""
    rng = random.Random(seed)
    d, ff = 1024, 4096
    tensors = [
        _tensor("embeddings.word_embeddings.weight", "float32", [30522, d], rng),
        _tensor("embeddings.position_ids", "int64", [1, 512], rng),
        _tensor("embeddings.norm.weight", "float32", [d], rng, scale=1.0),
    ]
    for i in range(layers):
        dtype = "bfloat16" if i >= layers // 2 else "float32"
        p = f"encoder.layers.{i}."
        tensors += [
            _tensor(p + "attn.qkv.weight", dtype, [3 * d, d], rng),
            _tensor(p + "attn.qkv.bias", dtype, [3 * d], rng, scale=0.01),
            _tensor(p + "attn.out.weight", dtype, [d, d], rng),
            _tensor(p + "norm1.weight", dtype, [d], rng, scale=1.0),
            _tensor(p + "mlp.up.weight", dtype, [ff, d], rng, scale=0.03),
            _tensor(p + "mlp.down.weight", dtype, [d, ff], rng, scale=0.015),
            _tensor(p + "mlp.down.bias", dtype, [d], rng, scale=0.01),
            _tensor(p + "norm2.weight", dtype, [d], rng, scale=1.0),
        ]
    tensors += [
        _tensor("encoder.final_norm.weight", "float32", [d], rng, scale=1.0),
        _tensor("encoder.final_norm.bias", "float32", [d], rng, scale=0.01),
        _tensor("pooler.dense.weight", "float32", [d, d], rng),
        _tensor("pooler.dense.bias", "float32", [d], rng, scale=0.01),
        _tensor("classifier.weight", "float32", [2, d], rng, scale=0.05),
    ]
    stored = sum(t["bytes"] for t in tensors)
    params = sum(math.prod(t["shape"]) for t in tensors)

    def total(key: str) -> float:
        return sum(t[key] * math.prod(t["shape"]) / 8 for t in tensors)

    achieved = round(total("achieved_bits"))
    dtypes: dict[str, int] = {}
    for t in tensors:
        dtypes[t["dtype"]] = dtypes.get(t["dtype"], 0) + 1
    return {
        "tensorzip_analysis": 1,
        "kind": "checkpoint",
        "source": "models/encoder-large/model.safetensors",
        "generated": "2026-11-23 19:00 UTC",
        "tensorzip_version": "0.1.0",
        "notes": ["Tensors over 1,048,576 elements were measured on a uniform sample of 1,048,576 elements."],
        "summary": {
            "tensors": len(tensors),
            "parameters": params,
            "bytes": stored,
            "order0_bytes": total("order0_bits"),
            "context_bytes": total("context_bits"),
            "achieved_bytes": achieved,
            "ratio": stored / achieved,
            "gap_to_order0": achieved / total("order0_bits") - 1,
            "dtypes": dtypes,
        },
        "tensors": tensors,
    }


def representations_analysis(dims: int = 768, labels: bool = True) -> dict[str, Any]:
    """A representation matrix with a power-law spectrum, as from a sentence encoder."""
    raw = [(k + 1) ** -1.2 + 0.02 * math.exp(-k / 3) for k in range(dims)]
    spectrum = [v / sum(raw) for v in raw]
    cumulative = np.cumsum(spectrum)
    ks = [2**i for i in range(int(math.log2(dims)) + 1)]
    entropy = -sum(p * math.log(p) for p in spectrum)
    return {
        "tensorzip_analysis": 1,
        "kind": "representations",
        "source": "embeddings/corpus-train.npy",
        "generated": "2026-11-23 19:00 UTC",
        "tensorzip_version": "0.1.0",
        "notes": ["TwoNN dimension estimated on 5,000 of the 120,000 rows."],
        "representations": {
            "rows": 120000,
            "dims": dims,
            "dtype": "float32",
            "effective_rank": math.exp(entropy),
            "stable_rank": 1 / spectrum[0],
            "spectrum": spectrum,
            "energy": {"k": ks, "fraction": [float(cumulative[k - 1]) for k in ks]},
            "components_for": {q: int(np.searchsorted(cumulative, float(q)) + 1) for q in ("0.9", "0.95", "0.99")},
            "anisotropy": 0.214,
            "twonn_dimension": 17.3,
            "labels": (
                {
                    "classes": 20,
                    "nc1": 3.412,
                    "nc2_equinorm": 0.118,
                    "nc2_equiangular": 0.052,
                    "nc2_max_angle": 0.31,
                    "coding_rate_reduction": 41.7,
                    "coding_rate": 212.4,
                    "eps2": 0.5,
                }
                if labels
                else None
            ),
            "sampled": True,
            "notes": ["Spectrum computed on a sample of 20,000 rows."],
        },
    }


# ------------------------------------------------------------------ static checks


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.style if self._in_style else self.text).append(data)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def assert_self_contained(page: str) -> None:
    """Nothing in the page can make the browser fetch anything."""
    parsed = _parse(page)
    assert not {"script", "link", "img", "iframe", "object", "embed", "image", "use", "video", "audio"} & set(
        parsed.tags
    )
    for tag, name, value in parsed.attrs:
        # the SVG namespace is a name, not a request; anything else that could address a resource is refused
        if name == "xmlns":
            assert (tag, value) == ("svg", "http://www.w3.org/2000/svg")
            continue
        assert name not in {"src", "href", "xlink:href", "srcset", "action", "poster", "data", "background"}, (
            tag,
            name,
        )
        assert not name.startswith("on"), (tag, name)
    css = "".join(parsed.style)
    assert "url(" not in css and "@import" not in css
    without_ns = page.replace(SVG_NS, "")
    assert "http://" not in without_ns and "https://" not in without_ns


def test_checkpoint_report_structure():
    analysis = checkpoint_analysis(layers=4)
    page = render_report(analysis)
    assert page.startswith("<!DOCTYPE html>")
    assert_self_contained(page)
    ids = re.findall(r'<figure class="plot" id="([^"]+)">', page)
    assert ids == ["bits-per-tensor", "exponent-histogram", "exponent-largest"]
    assert page.count("<svg") == 3 and page.count("<figcaption>") == 3
    parsed = _parse(page)
    text = " ".join(parsed.text)
    for needed in ("models/encoder-large/model.safetensors", "2026-11-23 19:00 UTC", "tensorzip 0.1.0", "Sampling",
                   "uniform sample", "holds bfloat16", "order-0 bound", "context-model bound"):  # fmt: skip
        assert needed in text, needed
    # one table row per tensor, with its index and name
    assert page.count('<td class="name">') == len(analysis["tensors"])
    assert "encoder.<wbr>layers.<wbr>3.<wbr>mlp.<wbr>down.<wbr>weight" in page


def test_representations_report_structure():
    page = render_report(representations_analysis())
    assert_self_contained(page)
    ids = re.findall(r'<figure class="plot" id="([^"]+)">', page)
    assert ids == ["spectrum", "cumulative-variance"]
    text = " ".join(_parse(page).text)
    for needed in ("Effective rank", "Stable rank", "TwoNN dimension", "Anisotropy", "NC1", "Coding-rate reduction",
                   "Components for 95 %", "Spectrum computed on a sample", "TwoNN dimension estimated"):  # fmt: skip
        assert needed in text, needed
    assert "Label structure" not in render_report(representations_analysis(labels=False))


def _set_every_string(value: Any, evil: str) -> Any:
    if isinstance(value, str):
        return evil
    if isinstance(value, list):
        return [_set_every_string(v, evil) for v in value]
    if isinstance(value, dict):
        return {k: (v if k == "kind" else _set_every_string(v, evil)) for k, v in value.items()}
    return value


@pytest.mark.parametrize("kind", ["checkpoint", "representations"])
def test_every_string_escaped(kind):
    analysis = checkpoint_analysis(layers=2) if kind == "checkpoint" else representations_analysis()
    if kind == "checkpoint":
        analysis["tensors"][0]["name"] = EVIL
    else:
        analysis["notes"][0] = EVIL
    page = render_report(analysis)
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    # every string in the data (source, names, dtypes, notes, dict keys...) replaced by markup or by a URL
    for evil in (EVIL, '"><img src=x onerror=alert(1)>', "https://example.com/x.png"):
        hostile = _set_every_string(copy.deepcopy(analysis), evil)
        if kind == "checkpoint":
            hostile["summary"]["dtypes"] = {evil: 3}
        else:
            hostile["representations"]["components_for"] = {evil: 3, "0.9": 5}
        page = render_report(hostile)
        assert "<script" not in page and "<img" not in page
        parsed = _parse(page)
        assert not {"script", "img"} & set(parsed.tags)
        assert all(not name.startswith("on") for _, name, _ in parsed.attrs)
        assert evil in " ".join(parsed.text)  # shown, as text
        # and only ever as text or a tooltip, never as something to load
        assert all(evil not in (value or "") or name in {"aria-label", "title"} for _, name, value in parsed.attrs)


def test_missing_optional_keys():
    minimal_checkpoint = {"kind": "checkpoint", "tensors": [{"name": "w"}, {"name": "b", "shape": [], "bytes": 4}]}
    page = render_report(minimal_checkpoint)
    assert_self_contained(page)
    assert '<figure class="plot" id="bits-per-tensor">' in page
    for analysis in (
        {},
        {"kind": "checkpoint"},
        {"kind": "checkpoint", "summary": {}, "tensors": []},
        {"kind": "checkpoint", "summary": {"ratio": None, "dtypes": None}, "tensors": [{"exponent_histogram": {}}]},
        {"kind": "checkpoint", "tensors": [{"achieved_bits": float("nan"), "plane_bits": None, "shape": None}]},
        {"kind": "representations"},
        {"kind": "representations", "representations": None},
        {"kind": "representations", "representations": {}},
        {"kind": "representations", "representations": {"spectrum": [1.0], "energy": {"k": [1], "fraction": [1]}}},
        {"kind": "representations", "representations": {"spectrum": [], "energy": {"k": [1, 2], "fraction": [0.5, 1]}}},
        {"kind": "representations", "representations": {"labels": {}, "components_for": {"0.9": 3}}},
        {"kind": "something else", "notes": None},
    ):
        page = render_report(analysis)
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        assert_self_contained(page)


def test_numbers_formatted():
    page = render_report(checkpoint_analysis(layers=1))
    assert "1,024 × 1,024" not in page and "1024 × 1024" in page  # shapes plain
    assert re.search(r"\d\.\d{3}×", page)  # ratio tile
    assert not re.search(r">\s*[-−]?(nan|inf)\b", page, re.IGNORECASE)  # no unformatted non-finite numbers


# ------------------------------------------------------------------ PNG decoder


def _encode_png(pixels: np.ndarray, filters: list[int]) -> bytes:
    """A PNG of ``pixels`` whose rows use the given filter types (for the decoder's own test)."""
    height, width, channels = pixels.shape
    bpp = channels
    rows = pixels.reshape(height, width * channels).astype(np.int64)
    raw = bytearray()
    prev = np.zeros(width * channels, np.int64)
    for y in range(height):
        cur, kind = rows[y], filters[y % len(filters)]
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        raw.append(kind)
        raw += ((cur - pred) % 256).astype(np.uint8).tobytes()
        prev = cur
    colour = 2 if channels == 3 else 6

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour, 0, 0, 0])
    body = zlib.compress(bytes(raw))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", body[:50])
        + chunk(b"IDAT", body[50:])
        + (chunk(b"IEND", b""))
    )


@pytest.mark.parametrize("channels", [3, 4])
def test_png_decoder_all_filters(channels):
    rng = np.random.default_rng(channels)
    # smooth gradients plus noise, so that every predictor has something to do
    y, x = np.mgrid[0:23, 0:17]
    base = np.stack([(x * 9 + y * 5) % 256, (x * y) % 256, (200 - 3 * y) % 256, (x * 31) % 256][:channels], axis=-1)
    pixels = ((base + rng.integers(0, 40, base.shape)) % 256).astype(np.uint8)
    png = _encode_png(pixels, [0, 1, 2, 3, 4, 4, 3, 1])
    assert np.array_equal(browser.decode_png(png), pixels)


def test_png_decoder_rejects_what_it_cannot_read():
    with pytest.raises(ValueError):
        browser.decode_png(b"GIF89a")
    png = bytearray(_encode_png(np.zeros((2, 2, 3), np.uint8), [0]))
    png[24] = 16  # bit depth
    with pytest.raises(ValueError):
        browser.decode_png(bytes(png))


# ------------------------------------------------------------------ in a browser


def _chromium_or_skip() -> None:
    if browser.find_chromium() is None:
        message = "no Chromium on PATH (" + ", ".join(browser.CHROMIUM_NAMES) + ")"
        if os.environ.get("CI"):
            pytest.fail(message + "; the CI script installs it")
        pytest.skip(message)


def check_in_browser(page: str, path: Path, expected_plots: int) -> browser.PageCapture:
    """Open ``page`` from ``path`` in Chromium and check that it fetched nothing and drew every plot."""
    path.write_text(page, encoding="utf-8")
    shot = browser.capture(path, width=1280, timeout=30)
    path.with_suffix(".png").write_bytes(shot.png)  # for a look when this fails
    own = path.resolve().as_uri()
    strays = [u for u in shot.requests if u != own and not u.startswith(("data:", "about:"))]
    assert own in shot.requests, shot.requests
    assert not strays, f"the report requested {strays}"

    height, width, _ = shot.pixels.shape
    assert width == 1280
    assert len(shot.plots) >= expected_plots, shot.plots
    for rect in shot.plots:
        x0, y0 = math.floor(rect["x"]), math.floor(rect["y"])
        x1, y1 = math.ceil(rect["x"] + rect["width"]), math.ceil(rect["y"] + rect["height"])
        assert rect["width"] >= 300 and rect["height"] >= 100, rect
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (rect, shot.pixels.shape)
        region = shot.pixels[y0:y1, x0:x1].reshape(-1, 3)
        colours, counts = np.unique(region, axis=0, return_counts=True)
        background = colours[counts.argmax()]
        drawn = np.any(region != background, axis=1)
        assert drawn.mean() > 0.01, f"plot {rect['id']} is blank ({drawn.mean():.2%} drawn)"
        # drawn in at least two colours that are clearly not the background (not just antialiasing)
        strong = np.abs(colours.astype(int) - background.astype(int)).max(axis=1) > 60
        assert (counts[strong] >= 20).sum() >= 2, f"plot {rect['id']} has fewer than two colours"
    return shot


def test_checkpoint_report_in_browser(tmp_path):
    _chromium_or_skip()
    analysis = checkpoint_analysis(layers=24)
    assert len(analysis["tensors"]) == 200
    check_in_browser(render_report(analysis), tmp_path / "checkpoint.html", expected_plots=3)


def test_representations_report_in_browser(tmp_path):
    _chromium_or_skip()
    check_in_browser(render_report(representations_analysis()), tmp_path / "representations.html", expected_plots=2)


def test_browser_check_catches_a_blank_plot(tmp_path):
    """The in-browser check fails for a plot that draws nothing and for a page that fetches something."""
    _chromium_or_skip()
    page = render_report(representations_analysis())
    blank = re.sub(r"(<figure class=\"plot\" id=\"spectrum\"><svg[^>]*>).*?</svg>", r"\1</svg>", page, flags=re.S)
    with pytest.raises(AssertionError, match="spectrum"):
        check_in_browser(blank, tmp_path / "blank.html", expected_plots=2)
    (tmp_path / "pixel.png").write_bytes(_encode_png(np.zeros((1, 1, 3), np.uint8), [0]))
    fetching = page.replace("</main>", '<img src="pixel.png" alt=""></main>')
    with pytest.raises(AssertionError, match="requested"):
        check_in_browser(fetching, tmp_path / "fetching.html", expected_plots=2)


SLEEP = f"exec '{sys.executable}' -c 'import time; time.sleep(60)'"


@pytest.mark.parametrize(("behaviour", "message"), [(SLEEP, "in time"), ("exit 3", "closed")], ids=["stuck", "dead"])
def test_stuck_or_dead_browser_fails_fast(tmp_path, monkeypatch, behaviour, message):
    """A browser that never answers (or dies at once) raises within the timeout, and is killed."""
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{behaviour}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><title>x</title>")
    started = time.monotonic()
    with pytest.raises(browser.BrowserError, match=message):
        browser.capture(page, timeout=2)
    assert time.monotonic() - started < 10
