"""``tensorzip ls`` (what any input holds, tensor by tensor) and ``tensorzip salvage`` (the
readable tensors of a damaged .tzip)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..salvage import salvage_file
from ..summary import contents
from .common import output_path

# A salvage that wrote a file but lost tensors: not 0, so a script never takes it for a
# complete restore, and not 1, which means nothing was written.
PARTIAL = 3


def cmd_ls(args: argparse.Namespace) -> dict[str, Any]:
    rows = contents(args.input)
    if not args.json:
        folder = any("file" in row for row in rows)
        for row in rows:
            shape = "x".join(map(str, row["shape"])) if row["shape"] else "scalar"
            stored = f"{row['stored_bytes']:>12,}" if row.get("stored_bytes") is not None else f"{'':>12}"
            place = f"{row['file']}: " if folder else ""
            print(f"{place}{row['name']}\t{row['dtype']}\t{shape}\t{row['original_bytes']:,}\t{stored.strip()}")
    return {"file": args.input, "tensors": rows}


def cmd_salvage(args: argparse.Namespace) -> dict[str, Any]:
    target = output_path(args.output, args.input, ".salvaged.safetensors", args.force)
    report = salvage_file(args.input, target, threads=args.threads, overwrite=args.force, base=args.base)
    if not args.json:
        print(f"{report.source} -> {report.target}: {len(report.recovered)} tensors recovered, "
              f"{len(report.lost)} lost")
        for name, why in report.lost.items():
            print(f"  lost {name}: {why}", file=sys.stderr)
    if report.lost:
        args.exit_status = PARTIAL
    return report.to_json()


def add_commands(commands: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    sub = add("ls", cmd_ls, "list the tensors of any input (.safetensors, PyTorch, .npy, .tzip of any kind, model "
                            "or compressed folders): name, dtype, shape, bytes, stored bytes (and an archive's files)",
              threads=False)
    sub.add_argument("input", metavar="INPUT", help="a file or folder of any kind tensorzip reads or writes")

    sub = add("salvage", cmd_salvage, "write every tensor of a damaged .tzip whose chunks still check out as a "
                                      ".safetensors, listing each lost tensor and why; exit status 3 when any "
                                      "was lost. A truncated file has lost its header (it is at the end) and "
                                      "cannot be salvaged")
    sub.add_argument("input", metavar="INPUT", help="the damaged .tzip checkpoint or archive")
    sub.add_argument("-o", "--output", help="the .safetensors to write (default: INPUT with .salvaged.safetensors)")
    sub.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    sub.add_argument("--base", help="the base the file was coded against (default: beside INPUT)")
