"""A KV cache (keys and values of every layer) as a .tzip file.

Per tensor (keys, values): the most recent ``window`` tokens are kept exact (they
are the ones attention weighs most, and cheap); the ``outliers`` channels of
largest magnitude per layer are set aside and stored exact (in values, whose
groups run across channels, one strong channel would otherwise widen every
token's range); the rest is quantized, on one grid per layer (``grid.py``, the
default: a step, or a per-element bound) or in min-max groups (``groups.py``,
KIVI's layout, when ``levels`` is given), optionally corrected by a
rank-``rank`` approximation of the quantization residual per layer, batch and
head (the GEAR recipe). The integers are entropy-coded with one table per layer
(the context measured to pay at these sizes: a table per channel would cost more
than it saves on a few hundred tokens). Everything stored is counted in the file
size: symbols, grid steps and offsets or group minima and steps, window,
low-rank factors, header.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import dtypes
from ..container.records import KV_KEY
from ..errors import FormatError, TargetUnreachableError, TensorzipError
from ..quantization import LayerFormat, layer_bytes, open_layer, read_layer
from .grid import MAX_REFINE, GridQuantized, quantize_grid
from .groups import CHANNELS_AXIS, TOKENS_AXIS, Quantized, quantize_levels

# 1: min-max groups only (max_abs_error was a grid from each group's minimum).
# 2: adds the per-layer grid ("quantizer": "grid"), used for step and max_abs_error.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
LAYER = LayerFormat(KV_KEY, "a KV cache", FORMAT_VERSION, READABLE_FORMATS,
                    (("shape", list), ("dtype", str), ("config", dict)))
PARTS = ("keys", "values")
# Values' step relative to keys' when only one step is asked for: an error in a value
# reaches the attention output directly, an error in a key only through the softmax.
# Measured on MiniLM caches (benchmarks/run_kv.py); a search with queries tries others.
DEFAULT_VALUE_STEP_RATIO = 0.35


@dataclass(frozen=True)
class KVConfig:
    """How a cache is quantized. Exactly one of ``levels``, ``step`` and ``max_abs_error``."""

    levels: int | None = None  # min-max groups: integers per group (4 = 2 bits); any value 2..65536
    group: int = 32  # elements per min-max group
    window: int = 0  # most recent tokens kept exact
    rank: int = 0  # low-rank correction of the residual (0: none)
    outliers: int = 0  # channels (of heads x head_dim) per layer stored exact, by largest magnitude
    max_abs_error: float | None = None  # per element, on the quantized part (a grid of step ~2x this)
    step: float | None = None  # the keys' grid step; values get step * value_step_ratio
    value_step_ratio: float = DEFAULT_VALUE_STEP_RATIO

    @property
    def quantizer(self) -> str:
        """The record's name of the quantizer: "groups" (min-max, KIVI) or "grid"."""
        return "groups" if self.levels is not None else "grid"

    def check(self) -> None:
        """Refuse a contradictory or out-of-range configuration (TensorzipError) before any work."""
        if sum(option is not None for option in (self.levels, self.step, self.max_abs_error)) != 1:
            raise TensorzipError("give exactly one of levels, step and max_abs_error")
        if self.step is not None and not (_positive_finite(self.step) and _positive_finite(self.value_step_ratio)):
            raise TensorzipError(f"step and value_step_ratio must be positive numbers up to {MAX_STEP:g}, got "
                                 f"{self.step}, {self.value_step_ratio}")
        if self.levels is not None and not (_integer(self.levels) and 2 <= self.levels <= 1 << 16):
            raise TensorzipError(f"levels must be an integer in 2..65536, got {self.levels!r}")
        if self.max_abs_error is not None and not _positive_finite(self.max_abs_error):
            raise TensorzipError(f"max_abs_error must be a positive number up to {MAX_STEP:g}, "
                                 f"got {self.max_abs_error}")
        if not all(_integer(n) for n in (self.group, self.window, self.rank, self.outliers)):
            raise TensorzipError("group, window, rank and outliers must be integers, got "
                                 f"{self.group!r}, {self.window!r}, {self.rank!r}, {self.outliers!r}")
        if self.group < 1 or self.window < 0 or self.rank < 0 or self.outliers < 0:
            raise TensorzipError("group must be >= 1, window, rank and outliers >= 0")
        if self.max_abs_error is not None and self.rank:
            raise TensorzipError("a low-rank correction cannot be combined with a per-element bound")


MAX_STEP = 1e30  # grid steps are float32: a larger one overflows (an int times it is inf, 0 times it NaN)


def _positive_finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and \
        math.isfinite(value) and 0 < value <= MAX_STEP


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _quantize(x: np.ndarray, name: str, config: KVConfig, out_dtype: Any) -> Quantized | GridQuantized:
    if config.levels is not None:
        return quantize_levels(x, TOKENS_AXIS if name == "keys" else CHANNELS_AXIS, config.group, config.levels)
    try:
        if config.max_abs_error is not None:
            return _grid_within(x, config.max_abs_error, out_dtype)
        assert config.step is not None
        step = config.step * (config.value_step_ratio if name == "values" else 1.0)
        return quantize_grid(x, np.full(x.shape[0], step, np.float32), refine_tokens=name == "values")
    except TargetUnreachableError as error:
        raise TargetUnreachableError(f"KV {name}: {error}") from None
    except ValueError as error:
        raise TensorzipError(f"KV {name}: {error}") from None


def _grid_within(x: np.ndarray, bound: float, out_dtype: Any) -> GridQuantized:
    """A grid of step 2 * bound, shrunk in the layers where float32 arithmetic or the
    rounding to ``out_dtype`` breaks the bound, checked on every element."""
    step = np.full(x.shape[0], 2.0 * bound, np.float32)
    for _ in range(60):
        q = quantize_grid(x, step)
        decoded = q.decode().astype(out_dtype).astype(np.float32)
        broken = np.abs(decoded - x).reshape(x.shape[0], -1).max(axis=1, initial=0) > bound
        if not broken.any():
            return q
        step = np.where(broken, step * np.float32(0.9), step).astype(np.float32)
    raise TargetUnreachableError(f"could not meet the error bound {bound} (values too large for float32 steps?)")


def _low_rank(residual: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors (u: [..., tokens, r], w: [..., d, r]) of the best rank-r approximation, float16."""
    u, s, vt = np.linalg.svd(residual.astype(np.float32), full_matrices=False)
    r = min(rank, s.shape[-1])
    return (u[..., :r] * s[..., None, :r]).astype(np.float16), np.swapaxes(vt[..., :r, :], -1, -2).astype(np.float16)


def _outlier_channels(x: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the ``count`` channels (flattened heads x head_dim) of largest magnitude:
    their indices [layers, count] (int32) and values [layers, batch, tokens, count]."""
    layers, batch, heads, tokens, dim = x.shape
    flat = np.moveaxis(x, 2, 3).reshape(layers, batch, tokens, heads * dim)
    count = min(count, heads * dim)
    strength = np.abs(flat).max(axis=(1, 2))
    index = np.sort(np.argsort(-strength, axis=1, kind="stable")[:, :count], axis=1).astype(np.int32)
    return index, np.take_along_axis(flat, index[:, None, None, :], axis=3)


def _with_channels(x: np.ndarray, index: np.ndarray, replacement) -> np.ndarray:
    """``x`` with the channels at ``index`` (per layer) set to ``replacement`` (a scalar or
    [layers, batch, tokens, count] values)."""
    layers, batch, heads, tokens, dim = x.shape
    flat = np.moveaxis(x, 2, 3).reshape(layers, batch, tokens, heads * dim).copy()
    values = np.broadcast_to(np.asarray(replacement, dtype=flat.dtype), flat.shape[:3] + (index.shape[1],))
    np.put_along_axis(flat, np.broadcast_to(index[:, None, None, :], values.shape), values, axis=3)
    return np.moveaxis(flat.reshape(layers, batch, tokens, heads, dim), 3, 2)


def encode(keys: np.ndarray, values: np.ndarray, config: KVConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors to store and the record describing them."""
    config.check()
    tensors: dict[str, np.ndarray] = {}
    tokens = keys.shape[TOKENS_AXIS]
    cut = max(0, tokens - config.window)
    for name, x in (("keys", keys), ("values", values)):
        old = np.asarray(x[:, :, :, :cut], dtype=np.float32)
        if cut < tokens:
            tensors[f"{name}.window"] = np.ascontiguousarray(x[:, :, :, cut:])
        if old.size == 0:
            continue
        if config.outliers:
            index, exact = _outlier_channels(old, config.outliers)
            tensors[f"{name}.outlier_index"] = index
            tensors[f"{name}.outlier_values"] = exact.astype(np.asarray(x).dtype)
            old = _with_channels(old, index, 0.0)
        q = _quantize(old, name, config, np.asarray(x).dtype)
        tensors[f"{name}.symbols"] = np.ascontiguousarray(q.symbols)
        if isinstance(q, GridQuantized):
            tensors[f"{name}.grid_offset"], tensors[f"{name}.grid_step"] = q.offset, q.step
            if q.refine is not None:
                tensors[f"{name}.grid_refine"] = q.refine
        else:
            tensors[f"{name}.minimum"], tensors[f"{name}.step"] = q.minimum, q.step
        if config.rank:
            u, w = _low_rank(old - q.decode(), config.rank)
            tensors[f"{name}.u"], tensors[f"{name}.w"] = u, w
    record = {"format": FORMAT_VERSION, "quantizer": config.quantizer, "config": asdict(config),
              "shape": list(keys.shape),
              "dtype": dtypes.by_numpy(keys.dtype).name, "values_shape": list(values.shape)}
    return tensors, record


def decode(tensors: dict[str, np.ndarray], record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``encode``; a file whose parts do not fit together raises FormatError."""
    try:
        return _decode(tensors, record)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, TensorzipError):
            raise
        raise FormatError(
            f"KV cache record and tensors do not fit together ({type(error).__name__}: {error})"
        ) from None


def _decode(tensors: dict[str, np.ndarray], record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    config = KVConfig(**record["config"])
    config.check()
    # Format 1 knew only groups (its max_abs_error files too).
    quantizer = record["quantizer"] if record["format"] >= 2 else "groups"
    out = []
    parts_of = (("keys", TOKENS_AXIS, record["shape"]), ("values", CHANNELS_AXIS, record["values_shape"]))
    for name, axis, shape in parts_of:
        window = tensors.get(f"{name}.window")
        dtype = dtypes.by_name(record["dtype"]).numpy_dtype
        parts = []
        if f"{name}.symbols" in tensors:
            old = _dequantize(tensors, name, axis, config, quantizer)
            if f"{name}.u" in tensors:
                old += tensors[f"{name}.u"].astype(np.float32) @ np.swapaxes(tensors[f"{name}.w"], -1, -2).astype(
                    np.float32)
            if f"{name}.outlier_index" in tensors:
                index = tensors[f"{name}.outlier_index"]
                if index.size and (index.min() < 0 or index.max() >= old.shape[2] * old.shape[4]):
                    raise FormatError(f"KV {name}: outlier channel index out of range")
                old = _with_channels(old, index, tensors[f"{name}.outlier_values"].astype(np.float32))
            parts.append(old)
        if window is not None:
            parts.append(window.astype(np.float32))
        if not parts and math.prod(shape) != 0:  # checked before allocating what the record declares
            raise FormatError(f"KV {name}: the record says {shape} but the file holds no tensors for it")
        x = np.concatenate(parts, axis=TOKENS_AXIS) if parts else np.zeros(shape, np.float32)
        if list(x.shape) != list(shape):
            raise FormatError(f"KV {name} decode to {list(x.shape)}, the record says {shape}")
        out.append(x.astype(dtype))
    return out[0], out[1]


def _dequantize(tensors: dict[str, np.ndarray], name: str, axis: int, config: KVConfig,
                quantizer: str) -> np.ndarray:
    symbols = tensors[f"{name}.symbols"]
    if quantizer == "grid":
        q = GridQuantized(symbols, tensors[f"{name}.grid_offset"], tensors[f"{name}.grid_step"],
                          tensors.get(f"{name}.grid_refine"))
        expected = symbols.shape[:TOKENS_AXIS] + (1,) + symbols.shape[TOKENS_AXIS + 1:]
        if q.offset.shape != expected or q.step.shape != symbols.shape[:1]:
            raise FormatError(f"KV {name}: grid parameters of shapes {q.offset.shape} and {q.step.shape}, "
                              f"expected {expected} and {symbols.shape[:1]}")
        if q.refine is not None and (q.refine.shape != symbols.shape[:-1] + (1,) or q.refine.max(initial=0) >
                                     MAX_REFINE):
            raise FormatError(f"KV {name}: token refinement of shape {q.refine.shape} or beyond {MAX_REFINE}")
        return q.decode()
    if quantizer != "groups":
        raise FormatError(f"KV {name}: unknown quantizer {quantizer!r}")
    g = Quantized(symbols, tensors[f"{name}.minimum"], tensors[f"{name}.step"], axis, config.group)
    groups = -(-symbols.shape[axis] // config.group)
    expected = symbols.shape[:axis] + (groups,) + symbols.shape[axis + 1:]
    if g.minimum.shape != expected or g.step.shape != expected:
        raise FormatError(f"KV {name}: group parameters of shape {g.minimum.shape}, expected {expected}")
    return g.decode()


def to_bytes(tensors: dict[str, np.ndarray], record: dict[str, Any], threads: int | None = None) -> bytes:
    """The .tzip file of ``encode``'s tensors and record: the integers with one entropy
    table per layer (chunks of a whole layer's symbols), everything else as is."""
    symbols = [name for name in tensors if name.endswith(".symbols")]
    return layer_bytes(LAYER, record, tensors, table_per_row=symbols, threads=threads)


def from_bytes(source: bytes | bytearray | memoryview | str | os.PathLike[str],
               threads: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(tensors, record) of a KV file (its bytes or its path), the record's key and format checked."""
    record, tensors = read_layer(source, LAYER, threads)
    return tensors, record


def read_record(source: bytes | bytearray | memoryview | str | os.PathLike[str]) -> dict[str, Any]:
    """The record of a KV file, checked, without decoding its tensors."""
    with open_layer(source, LAYER) as (_, record):
        return record
