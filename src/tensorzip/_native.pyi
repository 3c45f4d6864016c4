"""Type stubs for tensorzip's private native core (csrc/bindings.cpp). Users never
import this module; the package's Python modules wrap it."""

from collections.abc import Buffer, Sequence

import numpy as np
import numpy.typing as npt

PROBABILITY_BITS: int
MAX_CHUNK_BYTES: int

class CorruptStreamError(ValueError): ...

class ChunkError(ValueError):
    """args = (message, job index, chunk index)."""

EncodeJob = tuple[Buffer, int, int, int]  # (data, width, rotate, chunk_elements)
# ([chunk arrays], [crc32c], plane histograms (width x 256), order-0 bound in bytes)
EncodedTensor = tuple[list[npt.NDArray[np.uint8]], list[int], npt.NDArray[np.uint64], float]
DecodeJob = tuple[Buffer, Sequence[tuple[int, int, int]], Buffer, int, int, int]

def encode_tensors(jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]: ...
def decode_tensors(jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None: ...
def plane_histograms(data: Buffer, width: int, rotate: int) -> npt.NDArray[np.uint64]: ...
def crc32c(data: Buffer, previous: int = 0) -> int: ...
def unzigzag_to_float(symbols: Buffer, symbol_bytes: int, out: Buffer) -> None: ...
def symbol_scores(symbols: Buffer, symbol_bytes: int, dims: int, count: int, start: int, stop: int,
                  weights: Buffer, queries: int, out: Buffer, threads: int) -> None: ...

class StreamingEncoder:
    def __init__(self, threads: int) -> None: ...
    def encode(
        self, jobs: Sequence[EncodeJob]
    ) -> list[tuple[list[memoryview], list[int], npt.NDArray[np.uint64], float]]: ...

def delta_residual(
    a: Buffer, base: Buffer, out: Buffer, width: int, mode: int, is_float: bool, threads: int
) -> None: ...
def delta_restore(stored: Buffer, base: Buffer, width: int, mode: int, is_float: bool, threads: int) -> None: ...
def simd_paths() -> dict[str, str]: ...
