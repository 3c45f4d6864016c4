"""The interface every tensorzip codec implements.

A codec turns whole tensors into independently decodable chunks and back. Its
configuration is plain JSON (``get_config``/``from_config``), stored per tensor in
the .tzip header, so a file names everything needed to decode it. Equality and
``repr`` come from the config, as in numcodecs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..dtypes import DTypeSpec
from ..errors import CorruptDataError, TensorzipError

MAX_THREADS = 1024  # native worker threads one call may start (the CLI allows 256)


def checked_threads(threads: Any) -> int:
    """``threads`` as every native call takes it: 0 (or None) for all cores, else 1 to
    ``MAX_THREADS``; anything else is refused here, before a native thread pool is asked
    for 2^40 threads (which aborts the process) or given a float."""
    if threads is None:
        return 0
    if not isinstance(threads, int) or isinstance(threads, bool) or not 0 <= threads <= MAX_THREADS:
        raise TensorzipError(f"threads must be a whole number from 1 to {MAX_THREADS} (or 0 / None for all cores), "
                             f"got {threads!r}")
    return threads


_DELTA_MODE_NUMBERS = {"xor": 0, "sub": 1}  # the native core's numbering (csrc/delta.hpp)


def delta_mode_number(mode: str | None) -> int:
    """A residual mode's number in the native core."""
    try:
        return _DELTA_MODE_NUMBERS[mode]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown delta mode {mode!r}") from None


@dataclass(frozen=True)
class EncodedTensor:
    """What a codec produced for one tensor: its chunks in order, and their checksums."""

    chunks: list[Any]  # bytes-like (uint8 arrays or memoryviews), one per chunk
    chunk_crc32c: list[int]
    # Per byte plane, the byte counts of the coded stream, and the order-0 bound
    # they give (sum over planes of length x entropy), without a second pass.
    plane_histograms: np.ndarray
    order0_bound_bytes: float
    # The codec to record when it is not the job's: a `max`-level codec none of whose chunks
    # used its context model records the plain config, which every reader knows.
    codec: Codec | None = None

    @property
    def stored_bytes(self) -> int:
        return sum(chunk.nbytes for chunk in self.chunks)


@dataclass(frozen=True)
class ChunkRef:
    """Where one stored chunk lies inside a buffer handed to ``decode_into``."""

    offset: int
    length: int
    crc32c: int


def order0_bound_bytes(plane_histograms: np.ndarray) -> float:
    """Sum over planes of (plane length x its empirical order-0 entropy), in bytes."""
    counts = np.asarray(plane_histograms, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.where(counts > 0, counts * np.log2(totals / counts), 0.0)
    return float(bits.sum() / 8.0)


@dataclass(frozen=True)
class EncodeJob:
    """One tensor to encode with one codec."""

    codec: Codec
    array: np.ndarray
    spec: DTypeSpec


@dataclass(frozen=True)
class DecodeJob:
    """One tensor to decode: its chunks inside ``source`` (a bytes-like) go to ``out``."""

    codec: Codec
    source: Any
    chunks: Sequence[ChunkRef]
    out: np.ndarray  # C-contiguous, of the tensor's dtype and shape
    spec: DTypeSpec
    # The chunks hold a residual (codecs/residual.py, mode ``delta_mode``) against ``base`` (the
    # tensor's dtype and size): a codec that can restores each chunk as it decodes it; the
    # reader restores the others after the batch (``restores_while_decoding``).
    base: np.ndarray | None = None
    delta_mode: str | None = None


class ChunkDecodeError(CorruptDataError):
    """A chunk failed its checksum or did not decode.

    ``job`` is the index of the tensor in the batch and ``chunk`` the chunk's index
    in that tensor; the container turns them into the file, tensor and offset.
    """

    def __init__(self, reason: str, job: int, chunk: int):
        super().__init__(reason)
        self.reason = reason
        self.job = job
        self.chunk = chunk


class Codec(ABC):
    """A tensor codec with a JSON configuration.

    Coding works on batches of tensors (all of one codec class) so that the native
    thread pool sees every chunk of the batch at once.
    """

    codec_id: ClassVar[str]
    # Whether decode_batch restores jobs that carry a base (DecodeJob.base) itself; read from
    # the class's own namespace (the reader does not trust a subclass to inherit it).
    restores_while_decoding: ClassVar[bool] = False
    # A lossy codec decodes to the tensor itself within a bound its config states (an
    # error-bounded codec); info, verify and decompress report such tensors as lossy. Layers
    # whose stored parts are not the data (KV caches, embeddings) are file kinds instead
    # (container/kinds.py), never codecs.
    lossy: ClassVar[bool] = False

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serializable config including ``"id"``; ``from_config`` inverts it."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        params = {k: v for k, v in config.items() if k != "id"}
        return cls(**params)

    @classmethod
    @abstractmethod
    def encode_batch(cls, jobs: Sequence[EncodeJob], threads: int) -> list[EncodedTensor]:
        """Encode every job (each with its own instance of this class)."""

    @classmethod
    def batch_encoder(cls, threads: int) -> Callable[[Sequence[EncodeJob]], list[EncodedTensor]]:
        """A function encoding successive batches, which may reuse its buffers: the
        chunks of one call are valid only until the next call (the writer writes
        them out at once). By default, ``encode_batch`` with nothing reused."""
        return lambda jobs: cls.encode_batch(jobs, threads)

    @classmethod
    @abstractmethod
    def decode_batch(cls, jobs: Sequence[DecodeJob], threads: int, verify_checksums: bool = True) -> None:
        """Decode every job into its ``out``; raises ``ChunkDecodeError`` on damage."""

    def elements_per_chunk(self) -> int | None:
        """Elements each chunk holds (the last one: the rest), when every chunk decodes alone
        to its own run of elements: a reader may then decode a tensor a run of chunks at a
        time, in bounded memory, whatever size its header declares; ``None``: all at once."""
        return None

    def chunk_count(self, elements: int) -> int | None:
        """How many chunks a tensor of ``elements`` elements has with this config, if the
        codec fixes it (a reader then refuses a header that says otherwise before sizing
        anything from the shape); ``None``: not known in advance."""
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.get_config().items()) if k != "id")
        return f"{type(self).__name__}({params})"
