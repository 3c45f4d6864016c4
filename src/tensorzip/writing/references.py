"""Finding, for a tensor about to be written, an earlier tensor of the same file it is nearly a
copy of, so it is stored as the residual against it (``codecs.residual.Reference``).

Where this pays, measured on a BF16-with-FP32-master AdamW checkpoint of all-MiniLM-L6-v2
(benchmarks/RESULTS.md, "Training checkpoints"): the BF16 model weights are the FP32 master
weights rounded, so whichever of the two comes second costs almost nothing beyond the first
(the master against the BF16 copy: 74.6 -> ~46 MB; the BF16 copy against the master: 30 MB
-> a few KB). Candidates are found two ways, both cheap, and kept only when a sample codes
smaller against them than plainly:

- by value: the tensor's first elements, converted to an earlier tensor's dtype, equal that
  tensor's first elements (a rounded or widened copy, whatever the names);
- by name: the same name after the first dot (``model.x.weight`` and ``master.x.weight``,
  ``ema.x.weight``) and the same element count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..codecs.base import EncodeJob
from ..codecs.policy import sample_of, stored_sizes
from ..codecs.residual import MODES, Reference, can_convert, codec_for, convert, residual

MIN_ELEMENTS = 4096  # below this a reference saves less than its header entry costs
_KEY_ELEMENTS = 32
_FLOAT_NAMES = ("float32", "bfloat16", "float16")
MAX_CANDIDATES = 4


@dataclass(frozen=True)
class ReferenceChoice:
    """The earlier tensor to code against, how, and the bytes a sample says it saves."""

    reference: Reference
    converted: np.ndarray  # the earlier tensor in this tensor's dtype, flat
    saved_bytes: int


def _value_keys(array: np.ndarray, spec: dtypes.DTypeSpec) -> list[tuple[int, str, bytes]]:
    """The tensor's first elements in each float dtype it converts to (its own included): two
    tensors sharing a key round to the same values there (one is a rounded copy of the other)."""
    head = np.ascontiguousarray(array.reshape(-1)[:_KEY_ELEMENTS])
    return [(array.size, other, convert(head, dtypes.by_name(other)).tobytes())
            for other in _FLOAT_NAMES if can_convert(spec.name, other)]


def _suffix(name: str) -> str | None:
    first, dot, rest = name.partition(".")
    return rest if dot and rest else None


class ReferenceFinder:
    """Remembers the float tensors written so far; offers the one a new tensor codes best against."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[int, str, bytes], str] = {}
        self._by_suffix: dict[tuple[str, int], list[str]] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def remember(self, name: str, array: np.ndarray, spec: dtypes.DTypeSpec) -> None:
        """``name`` was written plainly or against a base: a later tensor may reference it."""
        if spec.name not in _FLOAT_NAMES or array.size < MIN_ELEMENTS:
            return
        self._arrays[name] = array
        for key in _value_keys(array, spec):
            self._by_value.setdefault(key, name)
        suffix = _suffix(name)
        if suffix is not None:
            self._by_suffix.setdefault((suffix, array.size), []).append(name)

    def _candidates(self, name: str, array: np.ndarray, spec: dtypes.DTypeSpec) -> list[str]:
        found = [self._by_value[key] for key in _value_keys(array, spec) if key in self._by_value]
        suffix = _suffix(name)
        if suffix is not None:
            found += self._by_suffix.get((suffix, array.size), [])
        return list(dict.fromkeys(found))[:MAX_CANDIDATES]

    def choose(self, name: str, array: np.ndarray, spec: dtypes.DTypeSpec) -> ReferenceChoice | None:
        """The earlier tensor and mode that code a sample of ``array`` smallest, if smaller than plainly."""
        if spec.name not in _FLOAT_NAMES or array.size < MIN_ELEMENTS:
            return None
        candidates = [n for n in self._candidates(name, array, spec)
                      if can_convert(self._arrays[n].dtype.name, spec.name)]
        if not candidates:
            return None
        sample = np.ascontiguousarray(sample_of(array))
        # Every candidate's sample coded in one native call (one call each cost more than coding
        # some of them), then compared in the same order as one at a time.
        jobs = [EncodeJob(codec_for(None, sample, spec), sample, spec)]
        tried: list[tuple[str, str]] = []
        for candidate in candidates:
            converted_sample = convert(np.ascontiguousarray(sample_of(self._arrays[candidate])), spec)
            for mode in MODES:
                stored = residual(sample, converted_sample.reshape(sample.shape), mode, spec, 1)
                jobs.append(EncodeJob(codec_for(mode, stored, spec), stored, spec))
                tried.append((candidate, mode))
        plain, *sizes = stored_sizes(jobs)
        best, choice = plain, None
        for size, candidate_mode in zip(sizes, tried, strict=True):
            if size < best:
                best, choice = size, candidate_mode
        if choice is None:
            return None
        candidate, mode = choice
        converted = convert(self._arrays[candidate], spec).reshape(array.shape)
        return ReferenceChoice(Reference(mode, candidate), converted,
                               (plain - best) * array.nbytes // max(1, sample.nbytes))
