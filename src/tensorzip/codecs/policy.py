"""Which codec a tensor gets when the caller does not say.

1. A wide float tensor that holds only narrower values is stored narrow
   (``narrowed_float``): an exact test, sampled first, then on every value.
2. A tensor of multi-byte elements whose sample is at least 20% zeros is coded
   both ways on that sample (``sparse`` and ``byte_planes``) and gets the
   smaller; trying costs two encodes of at most 64K elements.
3. Everything else gets ``byte_planes`` with its dtype's measured layout; at the ``max`` level
   with its context model allowed (plane 1 given plane 0, used per chunk where it codes
   smaller; issue 22).

The choice is recorded in the tensor's codec config, so files stay decodable
whatever later policies choose.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DTypeSpec
from ..errors import TensorzipError
from .base import Codec, EncodeJob
from .byte_planes import BytePlanesCodec
from .narrowed_float import NarrowedFloatCodec, hides_narrower
from .sparse import SparseCodec

# Compression levels, like zstd's: `default` is speed first (plane 1 of 16-bit floats stored
# raw); `max` codes the top mantissa bits given the exponent, smaller by 0.5% on BF16 weights
# and slower to decode (benchmarks/RESULTS.md, "Levels"). A `fast` level was measured and
# dropped: `default` already codes nothing but the exponent plane in 92-93% of MiniLM's chunks.
LEVELS = ("default", "max")
DEFAULT_LEVEL = "default"

SPARSE_MIN_ZERO_FRACTION = 0.2
SAMPLE_ELEMENTS = 1 << 16


def sample_of(array: np.ndarray) -> np.ndarray:
    """Up to SAMPLE_ELEMENTS elements in a few contiguous runs spread over the tensor."""
    flat = np.asarray(array).reshape(-1)  # a plain view: slicing a np.memmap costs a Python call per slice
    if flat.size <= SAMPLE_ELEMENTS:
        return flat
    runs, run = 16, SAMPLE_ELEMENTS // 16
    starts = np.linspace(0, flat.size - run, runs).astype(np.int64)
    return np.concatenate([flat[s : s + run] for s in starts])


def stored_size(codec: Codec, sample: np.ndarray, spec: DTypeSpec) -> int:
    """Bytes ``codec`` stores ``sample`` in (one thread): how the policy and the residual choices compare."""
    return stored_sizes([EncodeJob(codec, sample, spec)])[0]


def stored_sizes(jobs: list[EncodeJob], threads: int = 1) -> list[int]:
    """Bytes each job's codec stores its array in, the jobs of one codec class coded in one
    native call on ``threads`` threads. A size does not depend on the threads (each chunk is
    coded alone), so neither does any choice made from it."""
    sizes = [0] * len(jobs)
    by_class: dict[type[Codec], list[int]] = {}
    for index, job in enumerate(jobs):
        by_class.setdefault(type(job.codec), []).append(index)
    for cls, indices in by_class.items():
        for index, encoded in zip(indices, cls.encode_batch([jobs[i] for i in indices], threads), strict=True):
            sizes[index] = encoded.stored_bytes
    return sizes


def checked_level(level: object) -> str:
    """``level`` if it is one of LEVELS; else a clear error naming the choices."""
    if level not in LEVELS:
        raise TensorzipError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return level  # type: ignore[return-value]


def choose_codec(array: np.ndarray, spec: DTypeSpec, level: str = DEFAULT_LEVEL) -> Codec:
    narrow = hides_narrower(array)
    if narrow is not None:
        return NarrowedFloatCodec.for_narrow_dtype(narrow)
    planes = BytePlanesCodec.for_dtype(spec, context_planes=checked_level(level) == "max")
    if spec.itemsize >= 2 and array.size and _zero_fraction(array, spec) >= SPARSE_MIN_ZERO_FRACTION:
        sample = np.ascontiguousarray(sample_of(array))
        sparse = SparseCodec(rotate_bits=planes.rotate_bits, chunk_elements=planes.chunk_elements)
        planes_sample = planes.without_context()  # the comparison is about zeros, not the context model
        if stored_size(sparse, sample, spec) < stored_size(planes_sample, sample, spec):
            return sparse
    return planes


def _zero_fraction(array: np.ndarray, spec: DTypeSpec) -> float:
    """Share of all-zero elements in four runs of 1024 spread over the tensor.

    Runs rather than a stride: on a memory-mapped checkpoint a stride would touch
    a new page per element, which costs more than the test is worth.
    """
    flat = array.reshape(-1).view(f"u{spec.itemsize}")
    run = 1024
    if flat.size <= 4 * run:
        return 1.0 - np.count_nonzero(flat) / flat.size
    step = (flat.size - run) // 3
    nonzero = sum(np.count_nonzero(flat[k * step : k * step + run]) for k in range(4))
    return 1.0 - nonzero / (4 * run)
