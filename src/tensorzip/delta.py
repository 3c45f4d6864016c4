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

Which of plain, ``xor`` and ``sub`` a tensor gets is decided by coding a sample
each way and keeping the smallest (``choose_delta``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codecs import BytePlanesCodec, Codec, EncodeJob, choose_codec
from .codecs.policy import sample_of
from .dtypes import DTypeSpec
from .errors import HeaderError

MODES = ("xor", "sub")
DIGEST_PREFIX = "sha256-128:"


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
        if not (isinstance(digest_text, str) and digest_text.startswith(DIGEST_PREFIX)
                and len(digest_text) == len(DIGEST_PREFIX) + 32):
            raise HeaderError(f"{where}: delta base_digest must be '{DIGEST_PREFIX}' and 32 hex digits")
        return cls(mode, tensor, digest_text)


def digest(array: np.ndarray) -> str:
    """Content hash of a tensor's bytes (SHA-256, first 128 bits): what pins a base tensor."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return DIGEST_PREFIX + hashlib.sha256(memoryview(flat)).hexdigest()[:32]


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(f"<u{array.dtype.itemsize}")


def _ordered(bits: np.ndarray, spec: DTypeSpec) -> np.ndarray:
    """Floats' sign-magnitude bits mapped to integers in float order (an involution);
    other dtypes are already integers."""
    if not spec.is_float:
        return bits
    width = bits.dtype.itemsize * 8
    sign = bits >> np.array(width - 1, bits.dtype)
    return bits ^ (sign * np.array((1 << (width - 1)) - 1, bits.dtype))


def residual(array: np.ndarray, base: np.ndarray, mode: str, spec: DTypeSpec) -> np.ndarray:
    """The stored form of ``array`` against ``base`` (same dtype and shape), as ``array``'s dtype."""
    a, b = _bits(array), _bits(base)
    if mode == "xor":
        out = a ^ b
    elif mode == "sub":
        width = a.dtype.itemsize * 8
        signed = f"<i{a.dtype.itemsize}"
        difference = (_ordered(a, spec) - _ordered(b, spec)).view(signed)  # wraps modulo 2^width
        out = ((difference << 1) ^ (difference >> (width - 1))).view(a.dtype)
    else:
        raise ValueError(f"unknown delta mode {mode!r}")
    return out.view(array.dtype).reshape(array.shape)


def restore(stored: np.ndarray, base: np.ndarray, mode: str, spec: DTypeSpec) -> None:
    """Undo ``residual`` in place: ``stored`` becomes the original tensor."""
    s, b = _bits(stored), _bits(base)
    if mode == "xor":
        np.bitwise_xor(s, b, out=s)
    elif mode == "sub":
        one = np.array(1, s.dtype)
        difference = (s >> one) ^ (np.zeros_like(s) - (s & one))
        s[...] = _ordered(_ordered(b, spec) + difference, spec)
    else:
        raise ValueError(f"unknown delta mode {mode!r}")


def codec_for(mode: str | None, array: np.ndarray, spec: DTypeSpec) -> Codec:
    """The codec a residual is stored with: the dtype's planes for xor, integer planes for sub."""
    if mode == "sub":
        return BytePlanesCodec(rotate_bits=0, chunk_elements=BytePlanesCodec.for_dtype(spec).chunk_elements)
    if mode == "xor":
        return BytePlanesCodec.for_dtype(spec)
    return choose_codec(array, spec)


def _stored_size(codec: Codec, array: np.ndarray, spec: DTypeSpec) -> int:
    (encoded,) = type(codec).encode_batch([EncodeJob(codec, array, spec)], 1)
    return encoded.stored_bytes


def choose_delta(array: np.ndarray, base: np.ndarray, spec: DTypeSpec) -> str | None:
    """``None`` (plain), ``"xor"`` or ``"sub"``: whichever codes a sample of the tensor smallest.

    The sample is the same runs of elements in both tensors, so the residuals on
    it are the residuals of the whole tensor there.
    """
    if array.size == 0:
        return None
    sample = np.ascontiguousarray(sample_of(array))
    base_sample = np.ascontiguousarray(sample_of(base))
    sizes = {None: _stored_size(codec_for(None, sample, spec), sample, spec)}
    for mode in MODES:
        stored = residual(sample, base_sample, mode, spec)
        sizes[mode] = _stored_size(codec_for(mode, stored, spec), stored, spec)
    return min(sizes, key=lambda mode: (sizes[mode], mode is not None))
