"""``tensorzip analyze``: how much information is in these tensors, as text, JSON or a
self-contained HTML report. One module per command group."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.analyze import analyze
from ..analysis.report_html import render_report
from ..errors import OutputFileError
from ..files import files_read_by
from ..outputs.atomic import atomic_output, refuse_output_over_inputs
from .common import progress_bar


def _print_checkpoint(record: dict[str, Any]) -> None:
    s = record["summary"]
    print(f"{record['source']}: {s['tensors']} tensors, {s['parameters']:,} parameters, {s['bytes'] / 1e6:,.2f} MB")
    print(f"  tensorzip {s['achieved_bytes'] / 1e6:,.2f} MB (ratio {s['ratio']:.4f}); order-0 bound "
          f"{s['order0_bytes'] / 1e6:,.2f} MB (gap {s['gap_to_order0']:+.2%}); context-model bound "
          f"{s['context_bytes'] / 1e6:,.2f} MB")
    largest = sorted(record["tensors"], key=lambda t: -t["bytes"])[:10]
    print(f"  {'largest tensors':<48} {'dtype':>9} {'bits/w':>7} {'order-0':>7} {'context':>7}  notes")
    for t in largest:
        notes = ", ".join(n for n in (f"holds {t['hidden']}" if t["hidden"] else "",
                                      f"{t['zeros']:.0%} zeros" if t["zeros"] >= 0.01 else "",
                                      "sampled" if t["sampled"] else "") if n)
        print(f"  {t['name'][:48]:<48} {t['dtype']:>9} {t['achieved_bits']:7.3f} {t['order0_bits']:7.3f} "
              f"{t['context_bits']:7.3f}  {notes}")


def _or_na(value: Any, spec: str) -> str:
    """A measure that is undefined for this matrix (too few rows: None) reads "n/a"."""
    return "n/a" if value is None else format(value, spec)


def _print_representations(record: dict[str, Any]) -> None:
    r = record["representations"]
    print(f"{record['source']}: {r['rows']:,} x {r['dims']} {r['dtype']}")
    print(f"  effective rank {_or_na(r['effective_rank'], '.1f')}, stable rank {_or_na(r['stable_rank'], '.2f')}, "
          f"TwoNN intrinsic dimension {_or_na(r['twonn_dimension'], '.1f')}, anisotropy (mean cosine) "
          f"{_or_na(r['anisotropy'], '.3f')}")
    k = r["components_for"]
    print(f"  principal components for 90% / 95% / 99% of the variance: {k['0.9']} / {k['0.95']} / {k['0.99']}")
    labels = r.get("labels")
    if labels:
        print(f"  {labels['classes']} classes: NC1 {_or_na(labels['nc1'], '.4f')}, NC2 equinorm "
              f"{_or_na(labels['nc2_equinorm'], '.4f')}, equiangular {_or_na(labels['nc2_equiangular'], '.4f')}, "
              f"coding-rate reduction {_or_na(labels['coding_rate_reduction'], '.3f')}")


def cmd_analyze(args: argparse.Namespace) -> dict[str, Any]:

    if args.html:
        try:
            refuse_output_over_inputs(args.html, *files_read_by(args.input), args.labels)
        except OutputFileError:
            raise OutputFileError(f"report {args.html} would overwrite the input or sit inside it (the analysed "
                                  f"{args.input}, its base or --labels); choose another --html") from None
    if args.html and Path(args.html).exists() and not args.force:  # say so before the work, not after
        raise OutputFileError(f"{args.html} already exists (use --force to replace it)")
    with progress_bar("analysing", not args.json) as progress:
        record = analyze(args.input, labels=args.labels, threads=args.threads, progress=progress)
    if args.html:
        page = render_report(record)
        with atomic_output(args.html, overwrite=args.force) as handle:
            handle.write(page.encode("utf-8"))
    if not args.json:
        (_print_checkpoint if record["kind"] == "checkpoint" else _print_representations)(record)
        for note in record.get("notes", []):
            print(f"  note: {note}")
        if args.html:
            print(f"  report: {args.html}")
    return record


def add_command(commands: argparse._SubParsersAction, add_common) -> None:
    """Register ``analyze``."""
    text = "how much information is in a checkpoint or a representation matrix"
    sub = add_common(commands.add_parser("analyze", help=text, description=text.capitalize() + "."), cmd_analyze)
    sub.add_argument("input", help=".safetensors, .tzip, a folder of shards, or a .npy matrix (rows = samples)")
    sub.add_argument("--labels", help="a .npy of class labels, one per row (neural-collapse measures)")
    sub.add_argument("--html", help="also write a self-contained HTML report here")
    sub.add_argument("-f", "--force", action="store_true", help="replace an existing report")
