"""The lossy checkpoint file: layout, the budget search, and decoding back to an
ordinary .safetensors checkpoint.

A lossy file is a .tzip whose metadata key ``tensorzip.lossy`` holds a record
(format, budget, the shared step scale, the source's safetensors header, and per
tensor: how it is stored and the error achieved). Matrices are stored as
``lossy/NAME/symbols`` (uint8/uint16/uint32), ``lossy/NAME/row_offset`` (int32),
``lossy/NAME/row_step`` and ``lossy/NAME/column_step`` (float32; weight (i, j) has
the step ``row_step[i] * column_step[j]``); every other tensor as ``exact/NAME``,
losslessly. Decoding writes the original header verbatim and each tensor in its
original dtype, so loaders see the checkpoint they know.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import dtypes
from ..container.records import LOSSY_WEIGHTS_KEY
from ..errors import FormatError, InputFileError, TargetUnreachableError, TensorzipError
from ..files import DecompressionReport, SizeAndSpeed
from ..inputs.safetensors import SafetensorsFile, parse_header, write_prefix
from ..outputs.atomic import atomic_output, refuse_output_over_inputs
from ..quantization import LayerFormat, TargetNotMet, bisect, layer_bytes, read_layer, write_layer
from .grid import GridMatrix, grid_steps, matrix_errors, quantize_matrix

FORMAT_VERSION = 1
LAYER = LayerFormat(LOSSY_WEIGHTS_KEY, "a lossy checkpoint", FORMAT_VERSION, (FORMAT_VERSION,),
                    (("tensors", dict),))
MIN_MATRIX_SIDE = 16  # smaller matrices (and every non-matrix) are kept exact: they cost little
# ~0.002 octaves of delta over the 36-octave bracket: within ~1% of the budget (the most measurements;
# the size is nearly linear in log2 delta, so interpolating between the bracket's ends gets there in ~6)
_BISECTION_STEPS = 14
_FIT_ATTEMPTS = 4  # searches, each with what the error figures were found to add
_NEAR_OCTAVES = 0.25  # a search again looks this far either side of the last file
_ALLOWANCE_SLACK = 8  # bytes the error figures' length may vary by from one step to the next
_ALLOWANCE_SHARE = 1e-4  # of the budget, left unused rather than searched for again
_BRACKET_OCTAVES = 36  # from the finest delta whose integers fit 31 bits to one that leaves almost nothing

PathOrBytes = str | os.PathLike[str] | bytes | bytearray | memoryview


@dataclass(frozen=True)
class LossyReport(SizeAndSpeed):
    """What ``compress_file`` did: the budget, the size reached, the step scale found, and
    each tensor's mode and measured error (as the file's record holds them)."""

    source: str
    target: str
    original_bytes: int
    compressed_bytes: int
    budget_bytes: float
    delta: float
    seconds: float
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def bits_per_parameter(self) -> float:
        """Stored bits (every byte of the file) per parameter of the checkpoint."""
        parameters = sum(math.prod(t["shape"]) for t in self.tensors.values())
        return 8 * self.compressed_bytes / max(1, parameters)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``tensorzip compress --lossy --json``)."""
        return {**asdict(self), "ratio": self.ratio, "bits_per_parameter": self.bits_per_parameter}


@dataclass(frozen=True)
class LossyDecompressionReport(DecompressionReport):
    """What ``decompress_file`` wrote: an ordinary .safetensors checkpoint of ``output_bytes``
    (a ``tz.DecompressionReport``, as ``tz.decompress_file`` returns)."""


def _is_matrix(array: np.ndarray) -> bool:
    spec = dtypes.by_numpy(array.dtype)
    return spec.is_float and spec.itemsize >= 2 and array.ndim == 2 and min(array.shape) >= MIN_MATRIX_SIDE


def _errors(original: np.ndarray, q: GridMatrix) -> dict[str, float]:
    """The achieved errors; a decode that is not finite where the original is is refused
    here, before any file is written (a grid step that overflowed)."""
    relative, largest, finite = matrix_errors(original, q)
    if not finite:
        raise TargetUnreachableError("the grid decodes to values that are not finite (a step that overflowed); "
                                     "scale the sensitivities or choose another budget")
    return {"relative_rms_error": relative, "max_abs_error": largest}


def _rows_and_columns(given: Any, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A sensitivity is a column vector (E[x_j^2] of the layer's inputs), or a pair
    (per-row weights, per-column weights), either of which may be None."""
    if given is None:
        return None, None
    if isinstance(given, (tuple, list)) and len(given) == 2 and not np.isscalar(given[0]):
        return given[0], given[1]
    return None, np.asarray(given)


class _Encoder:
    """Holds the checkpoint and the sensitivities; encodes the whole file for a given delta."""

    def __init__(self, checkpoint: SafetensorsFile, sensitivity: Mapping[str, np.ndarray] | None,
                 threads: int | None):
        self.checkpoint = checkpoint
        self.threads = threads
        self.entries = checkpoint.entries
        self.matrices = [e.name for e in self.entries if _is_matrix(checkpoint.array(e))]
        unknown = sorted(set(sensitivity or {}) - set(self.matrices))
        if unknown:
            raise TensorzipError(f"sensitivity given for tensors that are not quantized matrices: {unknown[:5]}")
        self.factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        finest = 0.0
        for e in self.entries:
            if e.name in self.matrices:
                rows, columns = _rows_and_columns((sensitivity or {}).get(e.name), e.name)
                try:
                    self.factors[e.name] = grid_steps(1.0, e.shape, rows, columns)
                except ValueError as error:
                    raise TensorzipError(f"tensor {e.name!r}: {error}") from None
                r, c = self.factors[e.name]
                w = float(np.abs(checkpoint.array(e).astype(np.float32)).max(initial=0.0))
                finest = max(finest, w / (float(r.min()) * float(c.min())))
        self.finest = math.log2(max(finest, 1e-30) * 2.2 / 2.0**30)  # log2 delta keeping integers in 31 bits

    def encode(self, delta: float, budget: float, target: Any = None, errors: bool = True
               ) -> tuple[int, dict[str, Any]]:
        """The file for ``delta`` (written to ``target``, or only measured): its size and record.

        ``errors=False`` (a trial of the search, never written): the matrices are not decoded
        to measure their errors, which costs as much as quantizing them; the size returned is
        the file's without those two figures (``errors_allowance`` estimates what they add)."""
        record = self._record(delta, budget)
        tensors: list[tuple[str, np.ndarray]] = []
        for e in self.entries:
            array = self.checkpoint.array(e)
            info = record["tensors"][e.name]
            if e.name in self.matrices:
                rows, columns = self.factors[e.name]
                q = quantize_matrix(array, (rows * np.float32(delta)).astype(np.float32), columns)
                info.update(_errors(array, q) if errors else {})
                tensors += [(f"lossy/{e.name}/symbols", q.symbols), (f"lossy/{e.name}/row_offset", q.row_offset),
                            (f"lossy/{e.name}/row_step", q.row_step), (f"lossy/{e.name}/column_step", q.column_step)]
            else:
                tensors.append((f"exact/{e.name}", array))
        size = write_layer(target if target is not None else io.BytesIO(), LAYER, record, tensors,
                           threads=self.threads)
        return size, record

    def _record(self, delta: float, budget: float) -> dict[str, Any]:
        """The file's record before the matrices' error figures are measured."""
        exact = {"mode": "exact", "relative_rms_error": 0.0, "max_abs_error": 0.0}
        return {"format": FORMAT_VERSION, "delta": delta, "budget_bytes": budget,
                "source": {"format": "safetensors", "header": self.checkpoint.header_text},
                "tensors": {e.name: {"dtype": e.spec.name, "shape": list(e.shape),
                                     **({"mode": "grid"} if e.name in self.matrices else exact)}
                            for e in self.entries}}

    def errors_allowance(self, budget: float) -> int:
        """About what the matrices' two error figures add to the file: the header with
        17-digit figures in their place against the header without (its compression counted)."""
        record = self._record(1.0, budget)
        digits = np.random.default_rng(0).random((len(record["tensors"]), 2))  # 17 digits each, none repeated
        measured = {name: dict(info, relative_rms_error=float(a) / 7, max_abs_error=float(b) / 70)
                    if info["mode"] == "grid" else info
                    for (name, info), (a, b) in zip(record["tensors"].items(), digits, strict=True)}
        return len(layer_bytes(LAYER, {**record, "tensors": measured}, [])) - len(layer_bytes(LAYER, record, []))


def _limit(checkpoint: SafetensorsFile, budget: float | None, bits: float | None) -> float:
    """The budget in bytes: a fraction of the file's size, or bits per parameter."""
    parameters = sum(math.prod(e.shape) for e in checkpoint.entries)
    limit = budget * checkpoint.size if budget is not None else bits * parameters / 8  # type: ignore[operator]
    if not limit > 0:
        raise TargetUnreachableError(f"the budget must be positive, got {budget if budget is not None else bits}")
    return limit


def compress_file(source: str | os.PathLike[str], target: str | os.PathLike[str], *, budget: float | None = None,
                  bits: float | None = None, sensitivity: Mapping[str, np.ndarray] | None = None,
                  threads: int | None = None, overwrite: bool = True,
                  progress: Callable[[int, int], None] | None = None,
                  bits_per_weight: float | None = None, max_relative_error: float | None = None) -> LossyReport:
    """Compress a .safetensors checkpoint into at most ``budget`` x its size (or ``bits``
    bits per parameter, every stored byte counted), so a model fits the storage or the
    download it must; the error that costs is measured per tensor and reported, not assumed.

    ``sensitivity`` maps a matrix's name to how much a squared error in each weight
    costs at the model's output: a vector per column (e.g. E[x_j^2] of the layer's
    inputs on calibration data, times the layer's gain), or a pair (per-row, per-column)
    of vectors (e.g. token frequencies for an embedding table's rows). The allocation
    then minimises that weighted error instead of the weights' plain MSE.

    A budget below what the coarsest grid takes raises ``TargetUnreachableError`` and
    writes nothing. ``bits_per_weight`` is the former name of ``bits`` and still works.
    ``progress(done, total)`` is called once per trial encoding. ``max_relative_error``: refuse
    (``TargetUnreachableError``, nothing written) when a tensor's relative RMS error would exceed
    it, e.g. 0.5, so a budget too small to keep the weights is never met silently.
    """
    started = time.perf_counter()
    if bits_per_weight is not None:
        if bits is not None and bits != bits_per_weight:
            raise TensorzipError("bits and bits_per_weight name the same budget; give one of them")
        bits = bits_per_weight
    if (budget is None) == (bits is None):
        raise TensorzipError("give exactly one of budget (a fraction of the file size) and bits (per weight)")
    if os.path.isdir(source):
        raise InputFileError(f"{source}: lossy compression takes one .safetensors file (not a folder) for now")
    refuse_output_over_inputs(target, source)
    checkpoint = SafetensorsFile(source)
    limit = _limit(checkpoint, budget, bits)
    encoder = _Encoder(checkpoint, sensitivity, threads)
    if not encoder.matrices:
        raise InputFileError(f"{source}: no float matrix of at least {MIN_MATRIX_SIDE}x{MIN_MATRIX_SIDE} to quantize")

    # The search measures trials without the error figures (decoding every matrix to measure
    # them costs as much as quantizing it), plus an allowance for what they add; the file is
    # then written with them and the allowance replaced by what they did add there, until the
    # file fits and the search assumed no more than that (so it lands where measuring every
    # trial whole would have, to a few bytes).
    allowance = encoder.errors_allowance(limit)
    bracket = (encoder.finest + _BRACKET_OCTAVES, encoder.finest)
    fitting: tuple[Any, io.BytesIO, int, dict[str, Any]] | None = None  # the finest file that fits so far
    for _ in range(_FIT_ATTEMPTS):
        def size_at(delta: float, allowance: int = allowance) -> tuple[float, None]:
            return encoder.encode(delta, limit, errors=False)[0] + allowance, None

        try:
            found = bisect(size_at, at_most=limit, feasible_end=bracket[0], best_end=bracket[1],
                           max_iterations=_BISECTION_STEPS, log_scale="log2", progress=progress,
                           tolerance=_BRACKET_OCTAVES / 2**_BISECTION_STEPS, interpolate=True)
        except TargetNotMet as missed:
            if bracket[0] < encoder.finest + _BRACKET_OCTAVES:  # the narrowed bracket: the whole one again
                bracket = (encoder.finest + _BRACKET_OCTAVES, encoder.finest)
                continue
            raise TargetUnreachableError(f"a budget of {limit:,.0f} bytes cannot be met: even the coarsest grid "
                                         f"takes {missed.figure:,.0f} bytes (the tensors kept exact and the header "
                                         "count too)") from None
        image = io.BytesIO()
        size, record = encoder.encode(found.parameter, limit, image)
        added = size - int(found.figure - allowance)  # what the error figures added to this file
        if size <= limit and (fitting is None or found.coordinate < fitting[0].coordinate):
            fitting = (found, image, size, record)
        slack = max(_ALLOWANCE_SLACK, _ALLOWANCE_SHARE * limit)  # bytes of budget the allowance may leave unused
        if size <= limit and added >= allowance - slack:
            break
        allowance = added + (_ALLOWANCE_SLACK if size > limit else 0)
        bracket = (found.coordinate + _NEAR_OCTAVES, found.coordinate - _NEAR_OCTAVES)
    if fitting is None:  # pragma: no cover - each search fits what the last file was found to need
        raise TensorzipError(f"{source}: no file within the budget of {limit:,.0f} bytes was found (a bug: please "
                             "report it)")
    found, image, size, record = fitting
    worst = max(record["tensors"].items(), key=lambda item: item[1].get("relative_rms_error", 0.0))
    error = worst[1].get("relative_rms_error", 0.0)
    if max_relative_error is not None and error > max_relative_error:
        raise TargetUnreachableError(
            f"{source}: at this budget tensor {worst[0]!r} would keep a relative RMS error of {error:.3f} "
            f"(above {max_relative_error:g}: its weights would be mostly lost); give a larger budget (--budget, "
            "--bits-per-weight), or accept it (--allow-large-errors; max_relative_error=None in Python)")
    with atomic_output(target, overwrite=overwrite) as handle:
        handle.write(image.getbuffer())
    return LossyReport(source=str(source), target=str(target), original_bytes=checkpoint.size, compressed_bytes=size,
                       budget_bytes=limit, delta=found.parameter, seconds=time.perf_counter() - started,
                       tensors=record["tensors"])


def _read(path: PathOrBytes, threads: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return read_layer(path, LAYER, threads)
def _decoded(record: dict[str, Any], stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    try:
        for name, info in record["tensors"].items():
            dtype = dtypes.by_name(info["dtype"]).numpy_dtype
            if info["mode"] == "grid":
                q = GridMatrix(stored[f"lossy/{name}/symbols"], stored[f"lossy/{name}/row_offset"],
                               stored[f"lossy/{name}/column_step"], stored[f"lossy/{name}/row_step"])
                array = q.decode().astype(dtype)
            elif info["mode"] == "exact":
                array = stored[f"exact/{name}"]
            else:
                raise FormatError(f"tensor {name!r}: unknown mode {info['mode']!r}")
            if list(array.shape) != list(info["shape"]):
                raise FormatError(f"tensor {name!r} decodes to {list(array.shape)}, the record says {info['shape']}")
            out[name] = array
    except (KeyError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, TensorzipError):
            raise
        raise FormatError(f"lossy record and tensors do not fit together ({type(error).__name__}: {error})") from None
    return out


def load_file(path: PathOrBytes, threads: int | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a lossy file (its path or bytes), decoded in its original dtype:
    the checkpoint as a model loads it, without writing a .safetensors file first."""
    return _decoded(*_read(path, threads))


def load(path: PathOrBytes, threads: int | None = None) -> dict[str, np.ndarray]:
    """Deprecated: the former name of ``load_file`` (the package's verb for a path)."""
    warnings.warn("tensorzip.lossy.load is now tensorzip.lossy.load_file", DeprecationWarning, stacklevel=2)
    return load_file(path, threads)


def describe(path: PathOrBytes, threads: int | None = None) -> dict[str, Any]:
    """The stored record: the budget, the step scale, and each tensor's mode and achieved
    error, so a file can be judged without decoding it."""
    record, _ = _read(path, threads)
    return {key: value for key, value in record.items() if key != "source"}


def decompress_file(source: str | os.PathLike[str], target: str | os.PathLike[str], *, threads: int | None = None,
                    overwrite: bool = True) -> LossyDecompressionReport:
    """Write the decoded checkpoint as a .safetensors file with the original header (same
    names, dtypes, shapes and layout), so any safetensors loader reads it as it read the
    original; atomically (a failure leaves no file)."""
    started = time.perf_counter()
    refuse_output_over_inputs(target, source)
    record, stored = _read(source, threads)
    tensors = _decoded(record, stored)
    header = record["source"]["header"].encode("utf-8")
    total = sum(a.nbytes for a in tensors.values())
    entries, _ = parse_header(header, str(source), total)
    if sorted(e.name for e in entries) != sorted(tensors):
        raise FormatError(f"{source}: the stored safetensors header names other tensors than the record")
    with atomic_output(target, overwrite=overwrite) as handle:
        write_prefix(handle, header)
        for e in entries:
            handle.write(np.ascontiguousarray(tensors[e.name]).tobytes())
    return LossyDecompressionReport(source=str(source), target=str(target), compressed_bytes=os.path.getsize(source),
                                    output_bytes=8 + len(header) + total, seconds=time.perf_counter() - started,
                                    threads=threads if threads and threads > 0 else (os.cpu_count() or 1))
