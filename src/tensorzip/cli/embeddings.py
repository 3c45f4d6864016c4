"""``tensorzip embeddings ...``: embedding collections at a recall target (see
``tensorzip.embeddings``). One module per command group;
thin over ``embeddings.compress_file`` / ``decompress_file``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import dtypes, embeddings
from ..container.kinds import Kind, require
from ..errors import TensorzipError
from .common import number_in, output_path, progress_bar


def cmd_compress(args: argparse.Namespace) -> dict[str, Any]:
    """``embeddings compress``: a .npy matrix of vectors to a collection at the recall asked."""
    require(args.input, "tensorzip embeddings compress (a .npy matrix of vectors)", (Kind.NUMPY,))
    target = output_path(args.output, args.input, ".tzip", args.force)
    mode = "lossless" if args.lossless else args.mode
    if mode == "transform" and args.recall is None:
        raise TensorzipError("embeddings compress needs --recall (e.g. --recall 0.95: the fewest bytes that keep "
                             "it), --lossless to keep every bit, or a fixed-level --mode")
    with progress_bar("measuring candidates", not args.json, unit=" candidates") as progress:
        report = embeddings.compress_file(args.input, target, recall=args.recall, k=args.k, metric=args.metric,
                                          mode=mode, sample_queries=args.sample, queries=args.queries,
                                          threads=args.threads, overwrite=args.force, progress=progress)
    record = report.record
    if not args.json:
        recall = record.get("recall_at_k")
        if recall is not None and record.get("recall_queries"):
            bound = record.get("recall_lower_bound")
            confidence = "" if bound is None else (
                f", at least {bound:.4f} with {record['recall_confidence']:.0%} confidence on fresh queries")
            measured = (f"recall@{record['k']} {recall:.4f} (on {record['recall_queries']} "
                        f"{record.get('recall_measured_on', 'held-out rows')}{confidence})")
        else:
            measured = f"recall@{record['k']} 1 (lossless)" if mode == "lossless" else "recall not measured"
        vector_bytes = record["dim"] * dtypes.by_name(record["dtype"]).itemsize
        print(f"{args.input} -> {target}: {record['count']:,} x {record['dim']} {record['dtype']}, mode {mode}")
        print(f"  {measured}; {report.bytes_per_vector:,.1f} bytes/vector "
              f"({vector_bytes / report.bytes_per_vector:.2f}x smaller than the input)")
    return report.to_json()


def cmd_decompress(args: argparse.Namespace) -> dict[str, Any]:
    """``embeddings decompress`` (and ``decompress`` of a collection): its vectors as a .npy file."""
    require(args.input, "tensorzip embeddings decompress", (Kind.EMBEDDINGS,))
    target = output_path(args.output, args.input, ".npy", args.force)
    report = embeddings.decompress_file(args.input, target, threads=args.threads, overwrite=args.force)
    if not args.json:
        print(f"{args.input} -> {target}: {report.shape[0]:,} x {report.shape[1]} {report.dtype}")
    return report.to_json()


COMPRESS_HELP = ("compress a .npy matrix of vectors (rows) to the smallest file whose top-k neighbours keep the "
                 "--recall asked for (measured, not assumed), or --lossless")
DECOMPRESS_HELP = "decode an embedding collection to a .npy file"


def add_commands(commands: argparse._SubParsersAction,
                 add_common: Callable[[argparse.ArgumentParser, Callable[..., Any]], argparse.ArgumentParser]) -> None:
    """Register ``embeddings compress`` and ``embeddings decompress``."""
    group = commands.add_parser("embeddings", help="embedding collections at a recall target",
                                description="Embedding collections: the fewest bytes that keep a recall@k target.")
    sub = group.add_subparsers(dest="embeddings_command", required=True)

    compress = add_common(sub.add_parser("compress", help=COMPRESS_HELP, description=COMPRESS_HELP), cmd_compress)
    compress.add_argument("input", metavar="INPUT", help="the vectors: a 2-D .npy file, one vector per row")
    compress.add_argument("-o", "--output", help="output path (default: INPUT with .tzip)")
    compress.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    compress.add_argument("--recall", type=number_in(float, 0, 1, low_open=True),
                          help="recall@k target in (0, 1], e.g. 0.95 (measured on held-out rows)")
    compress.add_argument("--k", type=number_in(int, 1, 1 << 20), default=10, help="k of recall@k (default 10)")
    compress.add_argument("--metric", choices=embeddings.METRICS, default="ip", help="similarity (default ip)")
    compress.add_argument("--mode", choices=[m for m in embeddings.MODES if m != "lossless"], default="transform",
                          help="transform (default; needs --recall) or a fixed-level quantizer")
    compress.add_argument("--lossless", action="store_true", help="keep every bit (no target needed)")
    compress.add_argument("--sample", type=number_in(int, 1, 1 << 24), default=500,
                          help="held-out rows used as queries (default 500)")
    compress.add_argument("--queries", help="a .npy sample of your queries: recall is measured on them instead")

    decompress = add_common(sub.add_parser("decompress", help=DECOMPRESS_HELP, description=DECOMPRESS_HELP),
                            cmd_decompress)
    decompress.add_argument("input", metavar="INPUT", help="an embedding collection .tzip (made by tensorzip "
                                                           "embeddings compress)")
    decompress.add_argument("-o", "--output", help="output path (default: INPUT with .npy)")
    decompress.add_argument("-f", "--force", action="store_true", help="replace an existing output")
