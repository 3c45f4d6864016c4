"""Floats within a stated error on every element (``tz.compress(x, max_abs_error=E)``; issue 21).

The tensor is rounded to a uniform grid of step ``step`` (integers ``q = rint(x / step)``);
optionally each integer less its channel's offset (``offsets[i % len(offsets)]``: the median
integer of each column of the last axis, where activations carry channels of different means)
and optionally each integer is predicted by the one ``stride`` elements before it in its chunk
(the previous token of a sequence, the previous row: activations correlate along some axis)
and only the difference is kept; the integers are zigzag-coded to the narrowest unsigned
symbols and coded with the byte-plane codec. Decoding is ``(q * step)`` in float64, rounded
once to the tensor's dtype.

The bound is guaranteed, not assumed: ``choose`` picks the step, rounds every element as the
decoder will (same arithmetic, so the same result on every machine) and checks
``|decoded - x| <= max_abs_error`` on every element in the output dtype, shrinking the step
where the dtype's own rounding breaks it. Where no step can meet the bound (the bound is below
half the dtype's spacing at the tensor's values, or the values hold NaN or infinity), the
tensor is stored losslessly instead, which meets any bound.

Why a grid and not a transform (ZFP) or interpolation (SZ3): activations, gradients and
optimizer states are not smooth fields; neighbours along the hidden axis are nearly
independent, so the gain is in the quantization and the entropy coder, and a prediction is
kept only where the measured size says it pays.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import _native, dtypes
from ..errors import TensorzipError
from .base import ChunkDecodeError, Codec, DecodeJob, EncodedTensor, EncodeJob
from .byte_planes import BytePlanesCodec

SYMBOL_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Symbols per chunk (a multiple of every stride used, so a prediction restarts with each chunk).
DEFAULT_CHUNK_ROWS_ELEMENTS = 1 << 18
# Elements the prediction choice is measured on (a prefix of the tensor).
SAMPLE_ELEMENTS = 1 << 18
# Longest prediction stride (a chunk holds whole rows of it).
MAX_STRIDE = 1 << 16
# Most channels given offsets (each costs a few header bytes), and the fewest rows of the
# sample their medians are taken over.
MAX_OFFSET_COLUMNS = 1 << 14
MIN_OFFSET_ROWS = 32
OFFSET_ROWS = 2048  # rows, spread over the tensor, the medians are taken over
# Offsets are kept where the sample's coded size shrinks by more than this fraction: a
# per-channel centre that changes nothing is not worth a header list.
OFFSET_GAIN = 0.002
# Shrinking steps tried when the output dtype's rounding breaks the bound.
_SHRINK = 1.0 - 2.0**-16
_SHRINK_TRIES = 64


class BoundedCodec(Codec):
    """Uniform grid + optional prediction + byte planes; lossy within ``max_abs_error``."""

    codec_id: ClassVar[str] = "tensorzip.bounded"
    lossy: ClassVar[bool] = True

    def __init__(self, max_abs_error: float, step: float, symbols: str = "uint16", stride: int = 0,
                 chunk_elements: int = DEFAULT_CHUNK_ROWS_ELEMENTS, achieved_max_abs_error: float | None = None,
                 offsets: Sequence[int] | None = None):
        if not _positive_number(step):
            raise TensorzipError(f"step must be a positive finite number, got {step!r}")
        if not _positive_number(max_abs_error):
            raise TensorzipError(f"max_abs_error must be a positive finite number, got {max_abs_error!r}")
        if achieved_max_abs_error is not None and not (_positive_number(achieved_max_abs_error)
                                                       or achieved_max_abs_error == 0):
            raise TensorzipError(f"achieved_max_abs_error must be a non-negative number, "
                                 f"got {achieved_max_abs_error!r}")
        if symbols not in SYMBOL_DTYPES:
            raise TensorzipError(f"symbols must be one of {sorted(SYMBOL_DTYPES)}, got {symbols!r}")
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            raise TensorzipError(f"stride must be a non-negative integer, got {stride!r}")
        if not isinstance(chunk_elements, int) or isinstance(chunk_elements, bool) or chunk_elements < 1:
            raise TensorzipError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
        if stride and chunk_elements % stride:
            raise TensorzipError(f"chunk_elements ({chunk_elements}) must be a multiple of stride ({stride})")
        if offsets is not None and not (
                isinstance(offsets, (list, tuple)) and 1 <= len(offsets) <= MAX_OFFSET_COLUMNS
                and all(isinstance(v, int) and not isinstance(v, bool) and -(1 << 30) < v < 1 << 30 for v in offsets)):
            raise TensorzipError(f"offsets must be a list of 1 to {MAX_OFFSET_COLUMNS} integers within +-2^30")
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int32)
        self.max_abs_error = float(max_abs_error)
        self.step = float(step)
        self.symbols = symbols
        self.stride = stride
        self.achieved_max_abs_error = achieved_max_abs_error
        symbol_spec = dtypes.by_name(symbols)
        self.inner = BytePlanesCodec(rotate_bits=0, chunk_elements=chunk_elements)
        self.inner._native_layout(symbol_spec)  # the chunk fits the native limit

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"id": self.codec_id, "max_abs_error": self.max_abs_error, "step": self.step,
                                  "symbols": self.symbols, "stride": self.stride,
                                  "chunk_elements": self.inner.chunk_elements}
        if self.achieved_max_abs_error is not None:
            config["achieved_max_abs_error"] = self.achieved_max_abs_error
        if self.offsets is not None:
            config["offsets"] = self.offsets.tolist()
        return config

    def chunk_count(self, elements: int) -> int | None:
        return self.inner.chunk_count(elements)

    def elements_per_chunk(self) -> int | None:
        return self.inner.chunk_elements

    # -- the transform -------------------------------------------------------------------

    def symbols_of(self, array: np.ndarray, threads: int = 0) -> np.ndarray:
        """The stored symbols of ``array`` (its grid integers, predicted, zigzag-coded)."""
        prepared = getattr(self, "_prepared", None)
        if prepared is not None and prepared[0] is array:
            return prepared[1]  # computed by ``choose`` for this very array
        codes, _, _ = grid_codes(array, self.step, self.stride, self.inner.chunk_elements, threads, self.offsets)
        return codes.astype(SYMBOL_DTYPES[self.symbols])

    def _symbol_spec(self) -> dtypes.DTypeSpec:
        return dtypes.by_name(self.symbols)

    # -- Codec -----------------------------------------------------------------------------

    @classmethod
    def _inner_jobs(cls, jobs: Sequence[EncodeJob]) -> list[EncodeJob]:
        inner = []
        for job in jobs:
            if job.spec.name not in FLOAT_DTYPES:
                raise TensorzipError(f"codec {cls.codec_id} codes floating-point tensors, not {job.spec.name}")
            inner.append(EncodeJob(job.codec.inner, job.codec.symbols_of(job.array), job.codec._symbol_spec()))
        return inner

    @classmethod
    def encode_batch(cls, jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]:
        return BytePlanesCodec.encode_batch(cls._inner_jobs(jobs), threads)

    @classmethod
    def batch_encoder(cls, threads: int) -> Callable[[Sequence[EncodeJob]], list[EncodedTensor]]:
        inner = BytePlanesCodec.batch_encoder(threads)
        return lambda jobs: inner(cls._inner_jobs(jobs))

    @classmethod
    def decode_batch(cls, jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None:
        symbol_outs, inner_jobs = [], []
        for number, job in enumerate(jobs):
            if job.spec.name not in FLOAT_DTYPES:
                raise ChunkDecodeError(f"codec {cls.codec_id} decodes to floating-point tensors, not "
                                       f"{job.spec.name} (a damaged or crafted header)", number, 0)
            spec = job.codec._symbol_spec()
            out = np.empty(job.out.size, dtype=spec.numpy_dtype)
            symbol_outs.append(out)
            inner_jobs.append(DecodeJob(job.codec.inner, job.source, job.chunks, out, spec))
        BytePlanesCodec.decode_batch(inner_jobs, threads, verify_checksums)
        for job, symbols in zip(jobs, symbol_outs, strict=True):
            grid_values(symbols, job.codec.step, job.codec.stride, job.codec.inner.chunk_elements, job.out.dtype,
                        threads, out=job.out.reshape(-1), offsets=job.codec.offsets)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _working(array: np.ndarray) -> np.ndarray:
    """The values as the native kernels take them: float32 or float64 (FP16/BF16 widened, exactly)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat if flat.dtype in (np.float32, np.float64) else flat.astype(np.float32)


_NO_OFFSETS = np.empty(0, dtype=np.int32)
# The native kernels' codes for the type decoded values are rounded to.
_GRID_TYPES = {"float32": 0, "float64": 1, "bfloat16": 2, "float16": 3}


def _grid_type(dtype: np.dtype) -> int:
    return _GRID_TYPES[dtypes.by_numpy(np.dtype(dtype)).name]


def grid_codes(array: np.ndarray, step: float, stride: int, chunk_elements: int,
               threads: int = 0, offsets: np.ndarray | None = None,
               decoded: np.dtype | None = None) -> tuple[np.ndarray, float, int]:
    """(uint32 zigzag codes of the grid integers less their column's offset, predicted with
    ``stride`` within chunks; the max error of the decoded values in ``decoded`` (default: the
    array's dtype; a float32 ``array`` may hold a BF16/FP16 tensor widened), as the decoder
    rounds them (inf: out of range; NaN: a value is not finite); the largest code), in one
    native pass."""
    values = _working(array)
    codes = np.empty(values.size, dtype=np.uint32)
    error, largest, finite = _native.grid_encode(values, values.itemsize, step, stride, chunk_elements,
                                                 _NO_OFFSETS if offsets is None else offsets, codes, threads,
                                                 _grid_type(array.dtype if decoded is None else decoded))
    return codes, (error if finite else math.nan), int(largest)


def grid_values(symbols: np.ndarray, step: float, stride: int, chunk_elements: int, dtype: np.dtype,
                threads: int = 0, out: np.ndarray | None = None, offsets: np.ndarray | None = None) -> np.ndarray:
    """``(q * step)`` in float64 rounded once (to nearest even) to ``dtype``, q from the stored
    symbols (their column's offset added back): the decoder's arithmetic, native, straight
    into ``out``."""
    symbols = np.ascontiguousarray(symbols)
    dtype = np.dtype(dtype)
    if out is None:
        out = np.empty(symbols.size, dtype=dtype)
    _native.grid_decode(symbols, symbols.itemsize, step, stride, chunk_elements,
                        _NO_OFFSETS if offsets is None else offsets, out, _grid_type(dtype), threads)
    return out


@dataclass(frozen=True)
class Choice:
    """What ``choose`` decided for one tensor."""

    codec: Codec
    achieved_max_abs_error: float  # measured on every element, in the output dtype
    lossless: bool  # no step meets the bound (or non-finite values): stored exactly


def choose(array: np.ndarray, max_abs_error: float, *, strides: Sequence[int] | None = None,
           size_of: Callable[[int, np.ndarray], float] | None = None) -> Choice:
    """The codec for ``array`` under ``max_abs_error``: the largest grid step whose decoded
    values, in the array's dtype, are all within the bound (checked on every element), and of
    the predictions in ``strides`` (default: none, the last axis' length, 1) the one whose
    symbols code smallest on a prefix of the tensor (``size_of(stride, codes)``; default: the
    order-0 entropy of their byte planes)."""
    if not (isinstance(max_abs_error, (int, float)) and not isinstance(max_abs_error, bool)
            and math.isfinite(max_abs_error) and max_abs_error > 0):
        raise TensorzipError(f"max_abs_error must be a positive finite number, got {max_abs_error!r}")
    spec = dtypes.by_numpy(array.dtype)
    if spec.name not in FLOAT_DTYPES:
        raise TensorzipError(f"an error bound applies to floating-point tensors; this one is {spec.name} "
                             "(compress it without max_abs_error: integers are stored exactly)")
    from .policy import choose_codec  # the lossless codec for the fallback

    found = _meeting_step(array, float(max_abs_error)) if array.size else None
    if found is None:
        return Choice(choose_codec(array, spec), 0.0, True)
    step, achieved, searched = found
    if strides is None:
        last = array.shape[-1] if array.ndim >= 2 else 0
        strides = [s for s in (0, last, 1) if s == 0 or 1 <= s <= min(array.size - 1, MAX_STRIDE)]
    sample = np.ascontiguousarray(array).reshape(-1)[:SAMPLE_ELEMENTS]
    best: tuple[float, int] | None = None
    for stride in dict.fromkeys(strides):
        codes, _, _ = grid_codes(sample, step, stride, _chunk_elements(stride))
        size = size_of(stride, codes) if size_of is not None else _order0_bytes(codes)
        if best is None or size < best[0]:
            best = (size, stride)
    assert best is not None
    centred = _paying_offsets(array, sample, step, best[0], size_of) if 0 in strides else None
    offsets, grid_bytes = (None, best[0]) if centred is None else centred
    lossless = choose_codec(sample, spec)
    if size_of is None and grid_bytes >= _lossless_bytes(sample, lossless):
        # The grid costs more than the values themselves (a bound far below the dtype's
        # spacing: the integers need more bits than the dtype): store them exactly.
        return Choice(choose_codec(array, spec), 0.0, True)
    stride = 0 if offsets is not None else best[1]
    chunk = _chunk_elements(stride)
    if offsets is not None:
        codes, _, largest = grid_codes(array, step, 0, chunk, offsets=offsets)
    elif stride == 0:  # the step search coded exactly this already
        codes, largest = searched, int(searched.max(initial=0))
    else:
        codes, _, largest = grid_codes(array, step, stride, chunk)
    symbols = "uint8" if largest < 1 << 8 else "uint16" if largest < 1 << 16 else "uint32"
    codec = BoundedCodec(max_abs_error, step, symbols, stride, chunk, achieved,
                         None if offsets is None else offsets.tolist())
    codec._prepared = (array, codes.astype(SYMBOL_DTYPES[symbols]))  # the encoder's symbols, computed once
    return Choice(codec, achieved, False)


def _meeting_step(array: np.ndarray, bound: float) -> tuple[float, float, np.ndarray] | None:
    """(step, achieved max error, the codes without prediction) for the largest step tried
    whose decoded values, in the array's dtype, are all within ``bound``; None if none is
    (non-finite values, or a bound so fine against the values that the integers leave 30 bits)."""
    # Decoding rounds q * step to the dtype, adding up to half its spacing at the largest
    # magnitude: leave that room from the start (the check below still decides).
    with np.errstate(invalid="ignore", over="ignore"):  # the spacing at the dtype's largest value overflows
        reach = np.abs(array).max(initial=0)
        rounding = 0.5 * float(np.spacing(np.asarray(reach, dtype=array.dtype)).astype(np.float64)) if np.isfinite(
            float(reach)) else 0.0
    step = 2.0 * (bound - rounding) * _SHRINK if rounding < bound / 2 else 2.0 * bound
    # A step beyond twice the largest magnitude rounds everything to 0 anyway; capping it
    # keeps a huge bound (1e308) from overflowing the step to infinity.
    step = min(step, 4.0 * max(float(reach) if np.isfinite(float(reach)) else 0.0, 1e-300))
    values = _working(array)  # BF16/FP16 widened once, not on every try
    for _ in range(_SHRINK_TRIES):
        codes, error, _ = grid_codes(values, step, 0, DEFAULT_CHUNK_ROWS_ELEMENTS, decoded=array.dtype)
        if math.isnan(error) or math.isinf(error):
            return None
        if error <= bound:
            return step, error, codes
        # The grid's own rounding is at most step/2; the rest is the dtype's rounding of the
        # decoded value: leave room for it (and a little more, so one more pass usually does).
        excess = error - step / 2
        step = 2.0 * (bound - excess) * _SHRINK if 0 < excess < bound / 2 else step * 0.5
    return None


def _paying_offsets(array: np.ndarray, sample: np.ndarray, step: float, best_bytes: float,
                    size_of: Callable[[int, np.ndarray], float] | None) -> tuple[np.ndarray, float] | None:
    """Per-channel offsets (the median grid integer of each column of the last axis, over rows
    spread across the tensor) where, without a prediction, they code the sample smaller than the
    best of the predictions (``best_bytes``) by more than OFFSET_GAIN, the header list counted:
    (offsets, the sample's size with them); else None."""
    columns = array.shape[-1] if array.ndim >= 2 else 0
    rows = sample.size // columns if columns else 0
    if not (2 <= columns <= MAX_OFFSET_COLUMNS and rows >= MIN_OFFSET_ROWS):
        return None
    table = np.ascontiguousarray(array).reshape(-1, columns)
    spread = table[:: max(1, table.shape[0] // OFFSET_ROWS)]  # rows from the whole tensor, not one batch's
    with np.errstate(invalid="ignore", over="ignore"):
        medians = np.median(np.rint(spread.astype(np.float64) / step), axis=0)
    if not np.all(np.abs(medians) < 1 << 29):
        return None
    offsets = medians.astype(np.int32)
    if not offsets.any():
        return None
    codes, _, _ = grid_codes(sample, step, 0, DEFAULT_CHUNK_ROWS_ELEMENTS, offsets=offsets)
    size = size_of(0, codes) if size_of is not None else _order0_bytes(codes)
    header = len(",".join(map(str, offsets.tolist()))) * sample.size / max(array.size, 1)  # per sample element
    return (offsets, size + header) if size + header < best_bytes * (1.0 - OFFSET_GAIN) else None


def _lossless_bytes(sample: np.ndarray, codec: Codec) -> float:
    """What the lossless codec stores for ``sample`` (encoded, measured)."""
    spec = dtypes.by_numpy(sample.dtype)
    return float(type(codec).encode_batch([EncodeJob(codec, sample, spec)], 1)[0].stored_bytes)


def _chunk_elements(stride: int) -> int:
    """Elements per chunk: about DEFAULT_CHUNK_ROWS_ELEMENTS, a multiple of ``stride``."""
    if not stride:
        return DEFAULT_CHUNK_ROWS_ELEMENTS
    return max(1, DEFAULT_CHUNK_ROWS_ELEMENTS // stride) * stride


def _order0_bytes(codes: np.ndarray) -> float:
    """The order-0 entropy of the codes' byte planes, as the byte-plane coder sees them."""
    from ..quantization.entropy import order0_bits

    width = 1 if int(codes.max(initial=0)) < 1 << 8 else 2 if int(codes.max(initial=0)) < 1 << 16 else 4
    planes = codes.astype(f"<u{width}").view(np.uint8).reshape(-1, width)
    return sum(order0_bits(planes[:, k]) for k in range(width)) / 8.0


@dataclass(frozen=True)
class TargetRules:
    """Error targets by tensor name, as the command line gives them (``--max-abs-error
    'encoder.*=1e-3'``): the first glob pattern that matches a name gives its target; a name no
    pattern matches gets ``default`` (None: stored exactly)."""

    rules: tuple[tuple[str, float], ...]
    default: float | None = None

    def __call__(self, name: str) -> float | None:
        for pattern, value in self.rules:
            if fnmatch.fnmatchcase(name, pattern):
                return value
        return self.default

    def __str__(self) -> str:
        parts = [f"{value:g} for {pattern}" for pattern, value in self.rules]
        if self.default is not None:
            parts.append(f"{self.default:g} for the rest")
        return ", ".join(parts)


Target = float | Mapping[str, float] | Callable[[str], float | None] | None


def bounds_every_tensor(*targets: Target) -> bool:
    """Whether a target gives every float tensor an error bound (a number, or rules with a
    default): then nothing is stored exactly, and a lossless level has nothing to work on."""
    return any(isinstance(t, (int, float)) and not isinstance(t, bool)
               or isinstance(t, TargetRules) and t.default is not None for t in targets)


def targets_per_tensor(max_abs_error: Target, max_rel_error: Target) -> Any:
    """``error_bound(name, array)`` for the write plan from targets for all tensors, per name
    (a mapping) or by rule (a callable such as ``TargetRules``); None when no target is given."""
    if max_abs_error is None and max_rel_error is None:
        return None

    def pick(target: Target, name: str) -> float | None:
        if isinstance(target, Mapping):
            return target.get(name)
        return target(name) if callable(target) else target

    return lambda name, array: error_bound(array, pick(max_abs_error, name), pick(max_rel_error, name))


def error_bound(data: Any, max_abs_error: float | None, max_rel_error: float | None) -> float | None:
    """The absolute error bound a caller asked for (``max_rel_error`` is relative to the
    array's root mean square), or None for lossless."""
    if max_abs_error is not None and max_rel_error is not None:
        raise TensorzipError("give max_abs_error or max_rel_error, not both")
    if max_rel_error is None:
        return max_abs_error
    if not (isinstance(max_rel_error, (int, float)) and not isinstance(max_rel_error, bool) and max_rel_error > 0):
        raise TensorzipError(f"max_rel_error must be a positive number, got {max_rel_error!r}")
    values = np.asarray(data, dtype=np.float64)
    finite = values[np.isfinite(values)]
    rms = float(np.sqrt(np.mean(finite * finite))) if finite.size else 0.0
    if rms == 0.0:
        return None  # all zero (or nothing finite): stored exactly
    return min(max_rel_error * rms, np.finfo(np.float64).max)  # a huge relative bound stays finite
