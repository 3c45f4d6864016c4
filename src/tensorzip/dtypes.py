"""One descriptor per supported dtype: its name in files, its numpy dtype, and its
default byte-plane layout.

The layouts were chosen by measuring the per-tensor order-0 bound on real weights
(all-MiniLM-L6-v2 in FP32, BF16 and FP16, ``benchmarks/layouts.py``): rotating a
float's bits left by one puts the whole exponent (bf16, fp32) or the exponent and
the top mantissa bits (fp16) in the first plane, which lowers the bound; integer
and bool types have no sign/exponent split and keep plain byte planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import UnsupportedDtypeError


@dataclass(frozen=True)
class DTypeSpec:
    """How one dtype is named in files and split into byte planes."""

    name: str  # tensorzip's name, as written in .tzip headers
    safetensors_name: str
    numpy_dtype: np.dtype
    rotate_bits: int  # default layout: rotate each element left by this many bits before splitting

    @property
    def is_float(self) -> bool:
        """Sign-magnitude floating point (FP8 included), as opposed to integers and bool."""
        return self.name.startswith(("float", "bfloat"))

    @property
    def itemsize(self) -> int:
        return self.numpy_dtype.itemsize


def _spec(name: str, safetensors_name: str, dtype: object, rotate_bits: int) -> DTypeSpec:
    return DTypeSpec(name, safetensors_name, np.dtype(dtype), rotate_bits)


_SPECS: tuple[DTypeSpec, ...] = (
    _spec("bfloat16", "BF16", ml_dtypes.bfloat16, 1),
    _spec("float16", "F16", np.float16, 1),
    _spec("float32", "F32", np.float32, 1),
    _spec("float64", "F64", np.float64, 1),
    _spec("float8_e4m3fn", "F8_E4M3", ml_dtypes.float8_e4m3fn, 0),
    _spec("float8_e5m2", "F8_E5M2", ml_dtypes.float8_e5m2, 0),
    _spec("int8", "I8", np.int8, 0),
    _spec("int16", "I16", np.int16, 0),
    _spec("int32", "I32", np.int32, 0),
    _spec("int64", "I64", np.int64, 0),
    _spec("uint8", "U8", np.uint8, 0),
    _spec("uint16", "U16", np.uint16, 0),
    _spec("uint32", "U32", np.uint32, 0),
    _spec("uint64", "U64", np.uint64, 0),
    _spec("bool", "BOOL", np.bool_, 0),
)

_BY_NAME = {s.name: s for s in _SPECS}
_BY_SAFETENSORS = {s.safetensors_name: s for s in _SPECS}
_BY_NUMPY = {s.numpy_dtype: s for s in _SPECS}

SUPPORTED_DTYPES: tuple[str, ...] = tuple(s.name for s in _SPECS)


def by_name(name: str) -> DTypeSpec:
    """The spec for a tensorzip dtype name, as found in a header."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise UnsupportedDtypeError(
            f"unsupported dtype {name!r}; supported: {', '.join(SUPPORTED_DTYPES)}"
        ) from None


def by_safetensors_name(name: str) -> DTypeSpec:
    """The spec for a safetensors dtype string such as ``"BF16"``."""
    try:
        return _BY_SAFETENSORS[name]
    except (KeyError, TypeError):
        raise UnsupportedDtypeError(
            f"unsupported safetensors dtype {name!r}; supported: {', '.join(sorted(_BY_SAFETENSORS))}"
        ) from None


def by_numpy(dtype: np.dtype) -> DTypeSpec:
    """The spec for a numpy dtype (native byte order only)."""
    dtype = np.dtype(dtype)
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian):
        raise UnsupportedDtypeError(f"big-endian arrays are not supported ({dtype}); convert with .astype('<...')")
    spec = _BY_NUMPY.get(dtype.newbyteorder("=")) if dtype.byteorder == "<" else _BY_NUMPY.get(dtype)
    if spec is None:
        raise UnsupportedDtypeError(
            f"unsupported dtype {dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
        )
    return spec
