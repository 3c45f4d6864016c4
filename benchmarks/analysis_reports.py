"""The example reports of ``tensorzip analyze`` committed in ``docs/examples/``:
the all-MiniLM-L6-v2 checkpoint (FP32) and 30,000 MiniLM embeddings of real text
(``embedding_data.py``), labelled by source (man-page section, Python docstrings,
Python topics), plus a screenshot of each for the README, taken in headless
Chromium by the same driver the tests use.

Run ``python benchmarks/analysis_reports.py`` (needs chromium for the screenshots).
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from data import prepare
from embedding_data import prepare_embeddings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "examples"
sys.path.insert(0, str(ROOT / "tests"))

from browser import capture  # noqa: E402  (the tests' Chromium driver)
from tensorzip.analysis.analyze import analyze  # noqa: E402
from tensorzip.analysis.report_html import render_report  # noqa: E402


def source_labels(passages: Path) -> tuple[np.ndarray, list[str]]:
    """One class per collection row: its man-page section (man1..man8) or its Python source."""
    record = json.loads(passages.read_text())
    documents = record["collection_document"]
    documents = json.loads(documents) if isinstance(documents, str) else documents
    sources = record["collection_source"]
    sources = json.loads(sources) if isinstance(sources, str) else sources
    names = [doc.split("/")[0] if src == "man_pages" else src for doc, src in zip(documents, sources, strict=True)]
    classes = sorted(set(names))
    return np.array([classes.index(n) for n in names], np.int64), classes


def png_of(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` (height, width, 3), no filtering."""
    height, width, _ = pixels.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b""))


def write(record: dict, stem: str, height: int) -> None:
    html = OUT / f"{stem}.html"
    html.write_text(render_report(record), encoding="utf-8")
    (OUT / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    shot = capture(html)
    assert all(url.startswith(("file://", "data:", "about:")) for url in shot.requests), shot.requests
    # The README shows the top of the page, where the summary and first plots are.
    (OUT / f"{stem}.png").write_bytes(png_of(shot.pixels[:height]))
    print(f"{html.relative_to(ROOT)}: {len(shot.plots)} plots, screenshot {stem}.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    checkpoint = prepare()["fp32"]
    record = analyze(checkpoint)
    record["source"] = "all-MiniLM-L6-v2 model.safetensors (FP32)"
    write(record, "minilm-checkpoint", 1500)

    paths = prepare_embeddings()
    labels, classes = source_labels(paths["passages"])
    record = analyze(paths["collection"], labels=labels)
    record["source"] = (f"30,000 all-MiniLM-L6-v2 embeddings of man pages and Python documentation; labels: "
                        f"source ({', '.join(classes)})")
    write(record, "minilm-embeddings", 1500)


if __name__ == "__main__":
    main()
