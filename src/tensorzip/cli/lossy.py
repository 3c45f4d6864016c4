"""``tensorzip compress --lossy``: a checkpoint in a stated number of bytes (see
``tensorzip.lossy``), and the decompression of such files. One module per command group."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .. import lossy
from ..container.kinds import load_npz
from ..errors import TensorzipError
from ..outputs.atomic import refuse_output_over_inputs
from .common import number_in, progress_bar

MAX_RELATIVE_ERROR = 0.5  # a tensor's relative RMS error above which --lossy refuses unless told


def add_arguments(compress: argparse.ArgumentParser) -> None:
    """The ``--lossy`` options of ``tensorzip compress``."""
    group = compress.add_argument_group("lossy (only with --lossy)")
    group.add_argument("--lossy", action="store_true",
                       help="quantize the weight matrices to meet --budget or --bits-per-weight (error measured "
                            "and recorded per tensor); everything else stays exact")
    group.add_argument("--budget", type=number_in(float, 0, 1, low_open=True),
                       help="the output's size as a fraction of the input's, in (0, 1], e.g. 0.15")
    group.add_argument("--bits-per-weight", "--bits", dest="bits_per_weight",
                       type=number_in(float, 0, 32, low_open=True),
                       help="the output's size in bits per parameter, in (0, 32], e.g. 3.5")
    group.add_argument("--allow-large-errors", action="store_true",
                       help=f"write the file even when a tensor's relative RMS error exceeds {MAX_RELATIVE_ERROR} "
                            "(refused by default: its weights would be mostly lost)")
    group.add_argument("--calibration", help="a .npz mapping matrix names to the mean square of their input "
                                             "columns on calibration data: minimise output error, not weight MSE")


def _sensitivity(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    return load_npz(path, "per-column sensitivities")


def cmd_compress(args: argparse.Namespace, target: str) -> dict[str, Any]:
    if args.base or args.scheduler or args.archive:
        raise TensorzipError("--lossy does not combine with --base, --scheduler or --archive")
    if (args.budget is None) == (args.bits_per_weight is None):
        raise TensorzipError("--lossy needs exactly one target: --budget (the output's size as a fraction of the "
                             "input's, e.g. 0.15) or --bits-per-weight (e.g. 3.5)")

    refuse_output_over_inputs(target, args.calibration)

    with progress_bar("searching the budget", not args.json) as progress:
        report = lossy.compress_file(args.input, target, budget=args.budget, bits=args.bits_per_weight,
                                     sensitivity=_sensitivity(args.calibration), threads=args.threads,
                                     overwrite=args.force, progress=progress,
                                     max_relative_error=None if args.allow_large_errors else MAX_RELATIVE_ERROR)
    if not args.json:
        grid = {n: t for n, t in report.tensors.items() if t["mode"] == "grid"}
        worst = max(grid, key=lambda n: grid[n]["relative_rms_error"])
        print(f"{report.source} -> {report.target}: {report.original_bytes / 1e6:,.2f} MB -> "
              f"{report.compressed_bytes / 1e6:,.2f} MB (budget {report.budget_bytes / 1e6:,.2f} MB), ratio "
              f"{report.ratio:.2f}, {report.bits_per_parameter:.2f} bits per parameter")
        print(f"  {len(grid)} matrices quantized (relative RMS error up to {grid[worst]['relative_rms_error']:.4f}, "
              f"in {worst}); {len(report.tensors) - len(grid)} tensors exact")
    return report.to_json()


def cmd_decompress(args: argparse.Namespace, target: str) -> dict[str, Any]:
    report = lossy.decompress_file(args.input, target, threads=args.threads, overwrite=args.force)
    if not args.json:
        print(f"{args.input} -> {target}: {report.output_bytes / 1e6:,.2f} MB, a lossy checkpoint decoded to its "
              "original dtypes and layout (its target and achieved errors: tensorzip info FILE)")
    return {**report.to_json(), "lossy": True}
