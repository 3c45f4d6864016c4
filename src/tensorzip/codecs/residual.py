"""Coding a tensor against the same tensor of a base checkpoint (fine-tunes, training runs).

A fine-tune moves most weights by a few units in the last place, so what changes
is far smaller than the weights. Two residuals are bit-exact to undo for every
dtype and every bit pattern (NaNs included), because both are integer operations
on the raw bits:

- ``xor``: ``bits(tensor) ^ bits(base)``. Sign and exponent usually cancel, so the
  float's byte planes (rotated as for the dtype) see mostly zeros up top.
- ``sub``: the difference of the two values' positions on the number line, in
  units in the last place, zigzag-coded (small steps of either sign become small
  unsigned numbers) and stored as plain integer byte planes. Floats are first
  mapped to integers whose order is the float order (sign-magnitude to two's
  complement), so a step across zero or across a binade stays small.

Both run natively (``csrc/delta.cpp``), threaded, without the GIL.

Which of plain, ``xor`` and ``sub`` a tensor gets is decided by coding a sample
each way and keeping the smallest (``choose_delta``).

The same residuals code a tensor against another tensor *of the same file* (a
``Reference``): mixed-precision training keeps the model in BF16 and the FP32 master
weights it was rounded from, so each is the other to within a rounding. The reference is
first converted to the tensor's dtype (``convert``: widening is exact; narrowing rounds to
nearest even, NaN to one canonical NaN, defined here bit for bit so every machine agrees).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import blake3
import numpy as np

from .. import _native
from ..dtypes import DTypeSpec
from ..errors import HeaderError
from . import BytePlanesCodec, Codec, choose_codec
from .base import EncodeJob, delta_mode_number
from .policy import SAMPLE_ELEMENTS, sample_of, stored_sizes

MODES = ("xor", "sub")
# A pin names its hash: "sha256-128:" (files before the ``blake3-pins`` feature) or
# "blake3-128:" (what new files record: BLAKE3 runs about 4x faster than SHA-256 here, 5
# against 1.15 GB/s on one core, and a base's first use hashes every tensor it lends).
# Both are cryptographic, truncated to 128 bits, so a wrong base cannot pass by accident.
SHA256_PINS = "sha256-128:"
BLAKE3_PINS = "blake3-128:"
PIN_SCHEMES = (SHA256_PINS, BLAKE3_PINS)
NEW_PINS = BLAKE3_PINS
# Arrays at least this large are hashed on every core (BLAKE3 splits its tree); smaller ones
# on the calling thread, which callers already run several of.
_THREADED_HASH_BYTES = 8 << 20


@dataclass(frozen=True)
class Delta:
    """How a stored tensor is undone: which base tensor, pinned by its content hash."""

    mode: str
    base_tensor: str
    base_digest: str

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "base_tensor": self.base_tensor, "base_digest": self.base_digest}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Delta:
        if not isinstance(doc, dict) or set(doc) != {"mode", "base_tensor", "base_digest"}:
            raise HeaderError(f"{where}: 'delta' must be an object with mode, base_tensor, base_digest")
        mode, tensor, digest_text = doc["mode"], doc["base_tensor"], doc["base_digest"]
        if mode not in MODES:
            raise HeaderError(f"{where}: unknown delta mode {mode!r} (known: {', '.join(MODES)})")
        if not isinstance(tensor, str):
            raise HeaderError(f"{where}: delta base_tensor must be a string")
        scheme = pin_scheme(digest_text) if isinstance(digest_text, str) else None
        if scheme is None or len(digest_text) != len(scheme) + 32 or not _is_hex(digest_text[len(scheme):]):
            raise HeaderError(f"{where}: delta base_digest must be one of {', '.join(map(repr, PIN_SCHEMES))} "
                              "and 32 hex digits")
        return cls(mode, tensor, digest_text)


def pin_scheme(pin: str) -> str | None:
    """The hash a pin names (one of PIN_SCHEMES), or None."""
    return next((scheme for scheme in PIN_SCHEMES if pin.startswith(scheme)), None)


def digest_like(array: np.ndarray, pin: str) -> str:
    """``array``'s content hash by the hash ``pin`` names: the value to compare ``pin`` with."""
    return digest(array, pin_scheme(pin) or NEW_PINS)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def digest(array: np.ndarray, scheme: str = NEW_PINS) -> str:
    """Content hash of a tensor's bytes, first 128 bits: what pins a base tensor. ``scheme``:
    one of PIN_SCHEMES (a pin is checked with the hash it names)."""
    flat = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    if scheme == BLAKE3_PINS:
        threads = blake3.blake3.AUTO if flat.nbytes >= _THREADED_HASH_BYTES else 1
        return BLAKE3_PINS + blake3.blake3(flat, max_threads=threads).hexdigest(16)
    if scheme == SHA256_PINS:
        return SHA256_PINS + hashlib.sha256(flat).hexdigest()[:32]
    raise ValueError(f"unknown pin scheme {scheme!r}")


@dataclass(frozen=True)
class Reference:
    """A tensor stored as a residual against another tensor of the same file (``tensor``,
    earlier in it), converted to this tensor's dtype first (``convert``)."""

    mode: str
    tensor: str

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "tensor": self.tensor}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Reference:
        if not isinstance(doc, dict) or set(doc) != {"mode", "tensor"}:
            raise HeaderError(f"{where}: 'reference' must be an object with mode and tensor")
        if doc["mode"] not in MODES:
            raise HeaderError(f"{where}: unknown reference mode {doc['mode']!r} (known: {', '.join(MODES)})")
        if not isinstance(doc["tensor"], str):
            raise HeaderError(f"{where}: reference tensor must be a string")
        return cls(doc["mode"], doc["tensor"])


# (from, to) dtype pairs a reference converts between; the same dtype needs no conversion.
CONVERSIONS = frozenset({("bfloat16", "float32"), ("float16", "float32"), ("float32", "bfloat16"),
                         ("float32", "float16")})
_CANONICAL_NAN = {"bfloat16": 0x7FC0, "float16": 0x7E00}


def can_convert(source: str, target: str) -> bool:
    return source == target or (source, target) in CONVERSIONS


def convert(array: np.ndarray, target: DTypeSpec) -> np.ndarray:
    """``array`` (flat, contiguous) as ``target``'s dtype, bit for bit as docs/format.md
    defines it: BF16 to FP32 exactly; FP16 to FP32 exactly on the bits (no hardware
    conversion: whether it quiets a signalling NaN or honours denormals-are-zero differs
    between machines), NaN made canonical; FP32 to BF16 rounded to nearest, ties to even, on
    the bits; FP32 to FP16 rounded to nearest even, on the bits too (the hardware cast
    follows the machine's rounding and flush-to-zero settings). Every NaN a narrowing or
    FP16 makes is the canonical NaN."""
    source = array.dtype
    flat = np.ascontiguousarray(array).reshape(-1)
    if source == target.numpy_dtype:
        return flat
    if target.name == "float32" and flat.itemsize == 2:
        bits = flat.view(np.uint16)
        if source == np.float16:
            return _half_to_float(bits)
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    bits32 = flat.view(np.uint32)
    nan = (bits32 & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if target.name == "bfloat16":
        rounded = ((bits32 + np.uint32(0x7FFF) + ((bits32 >> np.uint32(16)) & np.uint32(1)))
                   >> np.uint32(16)).astype(np.uint16)
    else:
        rounded = _float_to_half(bits32)
    rounded[nan] = _CANONICAL_NAN[target.name]
    return rounded.view(target.numpy_dtype)


def _float_to_half(bits: np.ndarray) -> np.ndarray:
    """FP32 bit patterns rounded to FP16, nearest even, by integer arithmetic alone (the
    hardware cast depends on the machine's rounding and flush-to-zero settings). NaNs are
    the caller's to replace."""
    sign = ((bits >> np.uint32(16)) & np.uint32(0x8000)).astype(np.uint16)
    magnitude = bits & np.uint32(0x7FFFFFFF)
    out = np.full(bits.shape, 0x7C00, dtype=np.uint16)  # infinity: 65520 and up round to it
    normal = (magnitude >= 0x38800000) & (magnitude < 0x47800000)
    m = magnitude[normal]  # re-biased exponent and mantissa, rounded on bit 13 (a carry may reach infinity)
    out[normal] = ((m - np.uint32(0x38000000) + np.uint32(0xFFF) + ((m >> np.uint32(13)) & np.uint32(1)))
                   >> np.uint32(13)).astype(np.uint16)
    small = magnitude < 0x38800000
    out[small] = 0
    tiny = (magnitude >= 0x33000000) & small  # at least half the smallest subnormal: a subnormal (or 2^-14)
    if tiny.any():
        m = magnitude[tiny]
        mantissa = (m & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
        shift = np.uint32(126) - (m >> np.uint32(23))  # 14..24
        kept = mantissa >> shift
        rest = mantissa & ((np.uint32(1) << shift) - np.uint32(1))
        half = np.uint32(1) << (shift - np.uint32(1))
        kept += ((rest > half) | ((rest == half) & ((kept & np.uint32(1)) == 1))).astype(np.uint32)
        out[tiny] = kept.astype(np.uint16)
    return out | sign


def _half_to_float(bits: np.ndarray) -> np.ndarray:
    """FP16 bit patterns as FP32, by integer arithmetic alone (docs/format.md)."""
    wide = bits.astype(np.uint32)
    sign = (wide & np.uint32(0x8000)) << np.uint32(16)
    exponent = (wide >> np.uint32(10)) & np.uint32(0x1F)
    mantissa = wide & np.uint32(0x3FF)
    out = sign | ((exponent + np.uint32(112)) << np.uint32(23)) | (mantissa << np.uint32(13))
    special = exponent == 0x1F
    out[special] = sign[special] | np.uint32(0x7F800000)
    out[special & (mantissa != 0)] = 0x7FC00000
    small = exponent == 0  # zero or subnormal: mantissa x 2^-24, a normal FP32 (or zero), exactly
    if small.any():
        magnitude = (mantissa[small].astype(np.float32) * np.float32(2.0**-24)).view(np.uint32)
        out[small] = sign[small] | magnitude
    return out.view(np.float32)


def _flat_bytes(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def residual(array: np.ndarray, base: np.ndarray, mode: str, spec: DTypeSpec, threads: int = 0) -> np.ndarray:
    """The stored form of ``array`` against ``base`` (same dtype and size), as ``array``'s dtype."""
    out = np.empty(array.shape, dtype=array.dtype)
    _native.delta_residual(_flat_bytes(array), _flat_bytes(base), out.reshape(-1).view(np.uint8),
                           spec.itemsize, delta_mode_number(mode), spec.is_float, threads)
    return out


def restore(stored: np.ndarray, base: np.ndarray, mode: str, spec: DTypeSpec, threads: int = 0) -> None:
    """Undo ``residual`` in place: ``stored`` (C-contiguous) becomes the original tensor."""
    _native.delta_restore(stored.reshape(-1).view(np.uint8), _flat_bytes(base), spec.itemsize,
                          delta_mode_number(mode), spec.is_float, threads)


def codec_for(mode: str | None, array: np.ndarray, spec: DTypeSpec) -> Codec:
    """The codec a residual is stored with: the dtype's planes for xor, integer planes for sub."""
    if mode == "sub":
        return BytePlanesCodec(rotate_bits=0, chunk_elements=BytePlanesCodec.for_dtype(spec).chunk_elements)
    if mode == "xor":
        return BytePlanesCodec.for_dtype(spec)
    return choose_codec(array, spec)


def choose_delta(array: np.ndarray, base: np.ndarray, spec: DTypeSpec) -> tuple[str | None, int]:
    """``None`` (plain), ``"xor"`` or ``"sub"``: whichever codes a sample of the tensor smallest,
    and the bytes coding against the base is estimated to save on the whole tensor (from the
    sample, scaled; 0 for plain), which decides whether a base is worth depending on.

    The sample is the same runs of elements in both tensors, so the residuals on
    it are the residuals of the whole tensor there.
    """
    return choose_deltas([(array, base, spec)])[0]


def choose_deltas(tensors: list[tuple[np.ndarray, np.ndarray, DTypeSpec]], threads: int = 1
                  ) -> list[tuple[str | None, int]]:
    """``choose_delta`` of each (array, base, spec), the samples of all of them coded in one
    native call on ``threads`` threads: the same choices, where one tensor at a time kept a
    second core idle and paid a native call per candidate (choosing was about half of
    writing a BF16 checkpoint against its base)."""
    jobs: list[EncodeJob] = []
    for array, base, spec in tensors:
        if array.size == 0:
            continue
        sample = np.ascontiguousarray(sample_of(array))
        base_sample = np.ascontiguousarray(sample_of(base))
        jobs.append(EncodeJob(codec_for(None, sample, spec), sample, spec))
        for mode in MODES:
            stored = residual(sample, base_sample, mode, spec, 1)
            jobs.append(EncodeJob(codec_for(mode, stored, spec), stored, spec))
    found = iter(stored_sizes(jobs, threads))
    choices: list[tuple[str | None, int]] = []
    for array, _, _ in tensors:
        if array.size == 0:
            choices.append((None, 0))
            continue
        sizes = {mode: next(found) for mode in (None, *MODES)}
        best = min(sizes, key=lambda mode: (sizes[mode], mode is not None))
        sample_bytes = min(array.size, SAMPLE_ELEMENTS) * array.itemsize
        choices.append((best, (sizes[None] - sizes[best]) * array.nbytes // max(1, sample_bytes)))
    return choices
