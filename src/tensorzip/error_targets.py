"""Targets met by searching the error bound: ``tz.compress(x, psnr=P)`` and ``bits=B`` (issue 21).

Both are measured on what the blob decodes to, never assumed: the search (the one every lossy
target uses, ``quantization.bisect``) tries max-abs bounds on a log scale, codes the array
with the error-bounded codec at each, and keeps the largest bound whose decoded array reaches
the PSNR, or whose blob fits the bit budget. The figure reached is recorded in the blob's
metadata (``tensorzip.error_target``) beside the bound in the codec's config.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .codecs import bounded
from .codecs.registry import codec_from_config
from .container.kinds import open_data
from .container.records import ERROR_TARGET_KEY
from .container.writer import one_tensor_image
from .errors import TargetUnreachableError, TensorzipError
from .quantization import TargetNotMet, bisect

SEARCH_STEPS = 24  # bisection halvings of the log2 bound: far finer than any figure's noise


def compress_to_target(data: np.ndarray, metadata: dict[str, str], threads: int | None, *,
                       psnr: float | None, bits: float | None) -> bytes:
    """The blob of ``data`` meeting ``psnr`` or ``bits`` with the largest max-abs bound."""
    if data.dtype.kind != "f" and data.dtype.name != "bfloat16":
        raise TensorzipError(f"an error target applies to floating-point arrays; this one is {data.dtype}")
    _check_number(psnr if psnr is not None else bits, "psnr" if psnr is not None else "bits")
    values = np.asarray(data, dtype=np.float64)
    finite = bool(values.size) and bool(np.isfinite(values).all())
    reach = float(np.abs(values).max()) if finite else 0.0
    span = float(values.max() - values.min()) if finite else 0.0
    if not finite or reach == 0.0 or span == 0.0:
        # Nothing to search (empty, constant, or NaN/infinity, which no grid holds): stored exactly,
        # which meets any PSNR; a bit budget still has to hold.
        exact = one_tensor_image(data, metadata, threads)
        if bits is not None:
            _check_fits(bits * data.size / 8.0, len(exact) + _RECORD_ALLOWANCE, bits, data.size)
            return _recorded(data, metadata, threads, exact, "bits", bits, _data_bits(exact, data.size))
        return _recorded(data, metadata, threads, exact, "psnr", psnr, math.inf)

    def coded(bound: float) -> bytes:
        return one_tensor_image(data, metadata, threads, bounded.choose(data, bound).codec)

    fine, coarse = math.log2(max(reach * 2.0**-40, 1e-300)), math.log2(4.0 * reach)
    if psnr is not None:
        def measured_psnr(bound: float) -> tuple[float, bytes]:
            blob = coded(bound)
            error = np.asarray(_decoded(blob), dtype=np.float64) - values
            rmse = float(np.sqrt(np.mean(error * error)))
            return (math.inf if rmse == 0.0 else 20.0 * math.log10(span / rmse)), blob

        found = bisect(measured_psnr, at_least=float(psnr), feasible_end=fine, best_end=coarse,
                       max_iterations=SEARCH_STEPS, tolerance=0.01, log_scale="log2")
        return _recorded(data, metadata, threads, found.result, "psnr", psnr, found.figure)
    assert bits is not None
    budget = bits * data.size / 8.0

    def measured_bytes(bound: float) -> tuple[float, bytes]:
        blob = coded(bound)
        return float(len(blob) + _RECORD_ALLOWANCE), blob

    try:
        found = bisect(measured_bytes, at_most=budget, feasible_end=coarse, best_end=fine,
                       max_iterations=SEARCH_STEPS, tolerance=0.01, log_scale="log2")
    except TargetNotMet as error:
        _check_fits(budget, error.figure, bits, data.size)
        raise
    # The figure recorded is the coded data's bits per element (the chunks: measured exactly; the
    # whole blob's is len(blob) x 8 / elements, which the record's own digits would change); the
    # budget is checked on the whole blob, record included.
    blob = _recorded(data, metadata, threads, found.result, "bits", bits, _data_bits(found.result, data.size))
    _check_fits(budget, len(blob), bits, data.size)
    return blob


def _data_bits(blob: bytes, elements: int) -> float:
    with open_data(blob, "tz.compress") as reader:
        return 8.0 * sum(e.stored_bytes for e in reader.header.tensors.values()) / max(1, elements)


def _check_fits(budget: float, size: float, bits: float, elements: int) -> None:
    if size > budget:
        raise TargetUnreachableError(
            f"{bits} bits per element ({budget:,.0f} bytes for {elements:,} elements) is below what even the "
            f"coarsest grid takes ({size:,.0f} bytes with its header); give more bits")


# Bytes the target record adds to the blob after the search measured it (JSON of four short
# fields, zlib-compressed with the header): counted while searching so the budget holds.
_RECORD_ALLOWANCE = 96


def _recorded(data: np.ndarray, metadata: dict[str, str], threads: int | None, blob: bytes, target: str,
              asked: float, achieved: float) -> bytes:
    """``blob``'s codec again, with the target and the figure measured recorded in the metadata."""
    with open_data(blob, "tz.compress") as reader:
        codec_config = reader.entry("").codec_config
    record: dict[str, Any] = {"target": target, "asked": asked,
                              "achieved": round(achieved, 6) if math.isfinite(achieved) else None}
    return one_tensor_image(data, {**metadata, ERROR_TARGET_KEY: json.dumps(record)}, threads,
                            codec_from_config(codec_config))


def _decoded(blob: bytes) -> np.ndarray:
    with open_data(blob, "tz.compress") as reader:
        return reader.get_tensor("")


def _check_number(value: Any, name: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise TensorzipError(f"{name} must be a positive number, got {value!r}")
