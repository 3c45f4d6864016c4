"""Compression spread over a Dask cluster (``dask.distributed``), byte-identical to a local run.

The driver (the process that calls ``compress_file(..., scheduler=...)``) makes every
decision a local run makes, in the same order and with the same functions: it walks
the tensors, finds repeats (``dedup``), picks each tensor's delta mode against a base
and its codec, all from samples of the memory-mapped input. Only the encoding, the
expensive part, goes to the workers, and results are written through
``TzipWriter.add_encoded`` in tensor order, chunk for chunk as ``TzipWriter.flush``
writes them, so the file is the same bytes as a local run's.

- **Workers read the input themselves.** A task names where each tensor lies (the
  file's absolute path, a byte offset, dtype, shape, the codec's JSON config); the
  worker memory-maps that range, encodes it and sends back the encoded chunks with
  their CRC-32C and byte-plane histograms. No tensor crosses the network, only its
  encoded form (plus ~200 bytes of description). **Assumption: every worker sees the
  files at the driver's paths** (one machine, or a shared filesystem). Each task
  carries the file's size and modification time; a worker that finds another file
  there, or a file changed since the driver read it, fails with ``InputFileError``.
- **Large tensors are split** at chunk boundaries (``byte_planes`` and
  ``narrowed_float``, whose chunks are independent runs of ``chunk_elements``
  elements) into pieces of about ``PIECE_BYTES``; the driver joins the pieces'
  chunks in order and sums their histograms. Small tensors are packed into tasks of
  about ``PIECE_BYTES``. Other codecs (``sparse``, plugins) encode whole tensors.
- **Bases**: residuals are computed on the worker too, from the base file
  (safetensors: read by offset, split like the tensor; a .tzip base: the tensor is
  decoded there whole). The content hash that pins a safetensors base tensor is a
  task of its own; a .tzip base tensor is hashed by the driver, which decoded it to
  choose the delta mode.
- **Bounded memory**: at most ``IN_FLIGHT_PER_THREAD`` tasks per worker thread are
  submitted and not yet written; results arriving out of order wait for the
  tensors before them.
- **Failures**: a task that fails (a worker error, a lost worker) stops the run
  with a ``TensorzipError`` naming the tensor; the outstanding tasks are cancelled
  and the writer's atomic output leaves nothing behind.

Each task encodes with ``threads`` native threads (default 1: a Dask worker runs one
task per worker thread, so the cluster's threads are the parallelism).
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import dtypes
from ..codecs import BytePlanesCodec, Codec, EncodedTensor, EncodeJob
from ..codecs.narrowed_float import NarrowedFloatCodec
from ..codecs.registry import codec_from_config
from ..codecs.residual import Delta, digest, residual
from ..container.bases import BaseCheckpoint
from ..container.reader import open_base
from ..errors import InputFileError, TensorzipError
from .plan import WritePlanner

if TYPE_CHECKING:
    from ..container import TzipWriter
    from ..inputs import CheckpointInput

PIECE_BYTES = 16 * 1024 * 1024  # input bytes per task (a piece of a large tensor, or small tensors packed)
IN_FLIGHT_PER_THREAD = 2  # tasks submitted and not yet written, per worker thread
CONNECT_TIMEOUT_S = 30
NEEDS_DASK = "compressing on a Dask cluster needs dask.distributed: pip install 'tensorzip[dask]'"


# -- what a task carries ---------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A file by absolute path, with the size and modification time the driver saw."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileRef:
        status = os.stat(path)
        return cls(os.path.abspath(path), status.st_size, status.st_mtime_ns)


@dataclass(frozen=True)
class BaseRef:
    """The base tensor a piece's residual is taken against."""

    mode: str  # "xor" or "sub"
    file: FileRef
    offset: int | None  # safetensors base: byte offset of the piece's elements; None: a .tzip base
    tensor: str  # its name (a .tzip base decodes it whole)


@dataclass(frozen=True)
class Piece:
    """A tensor, or a run of its elements, to encode: everything a worker needs to read it."""

    tensor: str  # name, for messages
    file: FileRef
    offset: int  # byte offset of the first element in the file
    dtype: str  # tensorzip dtype name
    shape: tuple[int, ...]  # the tensor's shape, or (elements,) for a part of a split tensor
    codec: dict[str, Any]  # the codec's JSON config
    base: BaseRef | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * dtypes.by_name(self.dtype).itemsize


# An encoded piece as it comes back: (chunks, their CRC-32C, plane histograms, order-0 bound in bytes).
EncodedPiece = tuple[list[np.ndarray], list[int], np.ndarray, float]


# -- the worker side -------------------------------------------------------------------------


def _read(file: FileRef, offset: int, spec: dtypes.DTypeSpec, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """The tensor (or piece) at ``offset`` of ``file``, memory-mapped, after checking the file
    is the one the driver read."""
    try:
        status = os.stat(file.path)
    except OSError as error:
        raise InputFileError(
            f"tensor {tensor!r}: worker on {socket.gethostname()} cannot read {file.path} "
            f"({error.strerror or error}); every worker must see the input at the driver's path "
            "(one machine or a shared filesystem)"
        ) from None
    if (status.st_size, status.st_mtime_ns) != (file.size, file.mtime_ns):
        raise InputFileError(
            f"tensor {tensor!r}: {file.path} on worker {socket.gethostname()} is not the file the driver read "
            "(its size or modification time differ: changed during compression, or another file at that path)"
        )
    nbytes = math.prod(shape) * spec.itemsize
    if offset < 0 or offset + nbytes > status.st_size:
        raise InputFileError(f"tensor {tensor!r}: bytes [{offset}, {offset + nbytes}) lie outside {file.path}")
    if nbytes == 0:
        return np.zeros(shape, spec.numpy_dtype)
    raw = np.memmap(file.path, dtype=np.uint8, mode="r", offset=offset, shape=(nbytes,))
    return raw.view(spec.numpy_dtype).reshape(shape)


def _base_array(piece: Piece, spec: dtypes.DTypeSpec) -> np.ndarray:
    base = piece.base
    assert base is not None
    if base.offset is not None:
        return _read(base.file, base.offset, spec, piece.shape, piece.tensor)
    _read(base.file, 0, spec, (0,), piece.tensor)  # the same .tzip base as the driver's
    with open_base(base.file.path) as checkpoint:
        array = checkpoint.tensor(base.tensor)
    if array is None or array.shape != piece.shape or array.dtype != spec.numpy_dtype:
        raise InputFileError(f"tensor {piece.tensor!r}: base {base.file.path} on this worker does not hold it")
    return array


def encode_pieces(pieces: Sequence[Piece], threads: int = 1) -> list[EncodedPiece]:
    """Run on a worker: read every piece from its file, encode it, return the chunks in order."""
    jobs = []
    for piece in pieces:
        spec = dtypes.by_name(piece.dtype)
        array = _read(piece.file, piece.offset, spec, piece.shape, piece.tensor)
        if piece.base is not None:
            array = residual(array, _base_array(piece, spec), piece.base.mode, spec, threads)
        jobs.append(EncodeJob(codec_from_config(piece.codec), array, spec))
    by_class: dict[type[Codec], list[int]] = {}
    for index, job in enumerate(jobs):
        by_class.setdefault(type(job.codec), []).append(index)
    results: dict[int, EncodedTensor] = {}
    for cls, indices in by_class.items():
        try:
            encoded = cls.encode_batch([jobs[i] for i in indices], threads)
        except TensorzipError as error:
            names = ", ".join(repr(pieces[i].tensor) for i in indices[:4])
            raise type(error)(f"encoding tensors {names}: {error}") from None
        results.update(zip(indices, encoded, strict=True))
    out = []
    for index in range(len(jobs)):
        result = results[index]
        chunks = [np.asarray(chunk, dtype=np.uint8) for chunk in result.chunks]
        out.append((chunks, [int(c) for c in result.chunk_crc32c], np.asarray(result.plane_histograms),
                    float(result.order0_bound_bytes)))
    return out


def tensor_digest(file: FileRef, offset: int, dtype: str, shape: tuple[int, ...], tensor: str) -> str:
    """Run on a worker: the content hash that pins a safetensors base tensor (``delta.digest``)."""
    spec = dtypes.by_name(dtype)
    return digest(_read(file, offset, spec, shape, tensor))


# -- the driver side -------------------------------------------------------------------------


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise TensorzipError(NEEDS_DASK) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``: a client (used as is, left open) or a
    scheduler address such as ``tcp://10.0.0.1:8786`` (connected, closed afterwards)."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler:
        raise TensorzipError(f"scheduler must be a Dask scheduler address or a distributed.Client, got {scheduler!r}")
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise TensorzipError(f"cannot connect to the Dask scheduler at {scheduler}: {error}") from None
    try:
        yield client
    finally:
        client.close()


def cluster_threads(client: Any) -> int:
    """Worker threads of the cluster (waiting up to CONNECT_TIMEOUT_S for a first worker)."""
    threads = sum(client.nthreads().values())
    if threads == 0:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise TensorzipError(f"the Dask cluster at {client.scheduler.address} has no workers") from None
        threads = sum(client.nthreads().values())
    return threads


def split_elements(codec: Codec, spec: dtypes.DTypeSpec, piece_bytes: int) -> int | None:
    """Elements per piece when ``codec`` codes runs of whole chunks independently (a whole
    number of chunks of about ``piece_bytes``), else ``None`` (the tensor stays whole)."""
    if type(codec) is BytePlanesCodec:
        chunk = codec.chunk_elements
    elif type(codec) is NarrowedFloatCodec:
        chunk = codec.inner.chunk_elements
    else:
        return None
    return chunk * max(1, piece_bytes // (chunk * spec.itemsize))


def joined(parts: Sequence[EncodedPiece]) -> EncodedTensor:
    """One tensor's pieces, in order, as the codec would have encoded it in one go."""
    if len(parts) == 1:
        chunks, crcs, histograms, bound = parts[0]
        return EncodedTensor(chunks, crcs, histograms, bound)
    histograms = np.sum([p[2] for p in parts], axis=0, dtype=np.uint64)
    return EncodedTensor([c for p in parts for c in p[0]], [c for p in parts for c in p[1]], histograms,
                         _bound_bytes(histograms))


def _bound_bytes(histograms: np.ndarray) -> float:
    """The order-0 bound as the native encoder computes it (same operations, same order), so a
    split tensor reports the same figure as one encoded whole."""
    bits = 0.0
    for plane in histograms.tolist():
        total = sum(plane)
        if total == 0:
            continue
        log_total = math.log2(float(total))
        plane_bits = 0.0
        for count in plane:
            if count:
                plane_bits += float(count) * (log_total - math.log2(float(count)))
        bits += plane_bits
    return bits / 8.0


@dataclass
class _Item:
    """A tensor waiting to be written, in file order."""

    name: str
    same_as: str | None = None
    spec: dtypes.DTypeSpec | None = None
    shape: tuple[int, ...] = ()
    codec: Codec | None = None
    delta: Any = None  # Delta, a future of the digest, or None
    delta_mode: str | None = None
    parts: list[tuple[int, int]] = field(default_factory=list)  # (task, index in the task)
    packed: np.ndarray | None = None  # a small tensor coded with its dtype's group, here (not on the cluster)


class ClusterEncoder:
    """Feeds a TzipWriter from a Dask cluster: tensors are queued in file order, encoded by
    tasks on the workers, and written in that order as their results arrive."""

    def __init__(self, writer: TzipWriter, client: Any, *, threads: int = 1, piece_bytes: int | None = None,
                 max_in_flight: int | None = None):
        self._writer = writer
        self._client = client
        self._threads = threads
        self._piece_bytes = piece_bytes or PIECE_BYTES
        self.cluster_threads = cluster_threads(client)
        self._max_in_flight = max_in_flight or max(2, IN_FLIGHT_PER_THREAD * self.cluster_threads)
        self._run = uuid.uuid4().hex[:12]
        self._batch: list[Piece] = []
        self._batch_bytes = 0
        self._task = 0  # number of the batch being filled
        self._futures: dict[int, Any] = {}  # submitted tasks whose results were not fetched yet
        self._results: dict[int, list[EncodedPiece]] = {}
        self._unwritten: collections.Counter[int] = collections.Counter()  # pieces of a task not yet written
        self._digests: list[Any] = []
        self._queue: collections.deque[_Item] = collections.deque()

    def add(self, name: str, spec: dtypes.DTypeSpec, shape: tuple[int, ...], codec: Codec, pieces: list[Piece],
            delta: Any = None, delta_mode: str | None = None) -> None:
        item = _Item(name, None, spec, shape, codec, delta, delta_mode)
        for piece in pieces:
            item.parts.append((self._task, len(self._batch)))
            self._unwritten[self._task] += 1
            self._batch.append(piece)
            self._batch_bytes += piece.nbytes
            if self._batch_bytes >= self._piece_bytes:
                self._submit()
        self._queue.append(item)
        self._write_ready()

    def add_shared(self, name: str, same_as: str) -> None:
        self._queue.append(_Item(name, same_as))
        self._write_ready()

    def add_packed(self, name: str, array: np.ndarray) -> None:
        """A small tensor the write plan packs: handed to the writer in file order, which codes
        it with its group when the file is finished, as a local run does."""
        self._queue.append(_Item(name, packed=np.array(array)))
        self._write_ready()

    def digest(self, file: FileRef, offset: int, spec: dtypes.DTypeSpec, shape: tuple[int, ...], name: str) -> Any:
        """A future of a base tensor's content hash, computed on the cluster."""
        future = self._client.submit(tensor_digest, file, offset, spec.name, shape, name, pure=False,
                                     key=f"tensorzip-digest-{self._run}-{len(self._digests)}")
        self._digests.append(future)
        return future

    def finish(self) -> None:
        """Encode and write everything queued."""
        self._submit()
        while self._queue:
            self._write_head()

    def cancel(self) -> None:
        """Drop every task still running or waiting (after a failure)."""
        futures = list(self._futures.values()) + self._digests
        self._futures.clear()
        self._results.clear()
        self._queue.clear()
        with contextlib.suppress(Exception):
            self._client.cancel(futures)

    def _submit(self) -> None:
        if not self._batch:
            return
        self._futures[self._task] = self._client.submit(
            encode_pieces, self._batch, self._threads, pure=False, key=f"tensorzip-encode-{self._run}-{self._task}"
        )
        self._task += 1
        self._batch = []
        self._batch_bytes = 0

    def _write_ready(self) -> None:
        """Write the tensors at the head whose results are in; wait while too many tasks are out."""
        while self._queue:
            head = self._queue[0]
            ready = all(task in self._results or (task in self._futures and self._futures[task].done())
                        for task, _ in head.parts)
            if not (ready or len(self._futures) > self._max_in_flight):
                return
            self._write_head()

    def _write_head(self) -> None:
        item = self._queue[0]
        if item.same_as is not None:
            self._writer.add_shared(item.name, item.same_as)
            self._queue.popleft()
            return
        if item.packed is not None:
            self._writer.add(item.name, item.packed, pack=True)
            self._queue.popleft()
            return
        if any(task == self._task for task, _ in item.parts):
            self._submit()  # its batch is still being filled
        parts = [self._result(task, index, item.name) for task, index in item.parts]
        delta = item.delta
        if delta is not None and not isinstance(delta, Delta):
            digest_text = self._fetch(delta, item.name)
            delta = Delta(item.delta_mode or "", item.name, digest_text)
        assert item.spec is not None and item.codec is not None
        self._writer.add_encoded(item.name, item.spec, item.shape, item.codec, joined(parts), delta)
        self._queue.popleft()

    def _result(self, task: int, index: int, name: str) -> EncodedPiece:
        if task in self._futures:
            self._results[task] = self._fetch(self._futures.pop(task), name)
        result = self._results[task][index]
        self._unwritten[task] -= 1
        if self._unwritten[task] == 0:
            del self._unwritten[task], self._results[task]
        return result

    def _fetch(self, future: Any, name: str) -> Any:
        try:
            return future.result()
        except TensorzipError:
            raise  # raised on a worker; names the tensor and the file
        except Exception as error:
            raise TensorzipError(
                f"{self._writer.where}: tensor {name!r}: encoding on the Dask cluster failed "
                f"({type(error).__name__}: {error})"
            ) from error


def pieces_of(name: str, file: FileRef, offset: int, spec: dtypes.DTypeSpec, shape: tuple[int, ...],
              codec: Codec, base: BaseRef | None, piece_bytes: int) -> list[Piece]:
    """The tensor as one piece, or split at chunk boundaries into pieces of about ``piece_bytes``."""
    config = codec.get_config()
    count = math.prod(shape)
    step = split_elements(codec, spec, piece_bytes)
    if step is None or count <= step or (base is not None and base.offset is None):
        return [Piece(name, file, offset, spec.name, tuple(shape), config, base)]
    pieces = []
    for start in range(0, count, step):
        part_base = None if base is None else replace(base, offset=base.offset + start * spec.itemsize)  # type: ignore[operator]
        pieces.append(Piece(name, file, offset + start * spec.itemsize, spec.name, (min(step, count - start),),
                            config, part_base))
    return pieces


def add_tensors_on_cluster(writer: TzipWriter, checkpoint: CheckpointInput,
                           base: BaseCheckpoint | None, client: Any, *, threads: int | None = None,
                           piece_bytes: int | None = None, max_in_flight: int | None = None
                           ) -> tuple[WritePlanner, int]:
    """What ``plan.add_tensors`` does, with the encoding on the cluster: the same write plan
    (``WritePlanner``: dedup, delta and codec decisions), in the same order. Returns the planner and the
    cluster's worker threads."""
    piece_bytes = piece_bytes or PIECE_BYTES
    encoder = ClusterEncoder(writer, client, threads=threads or 1, piece_bytes=piece_bytes,
                             max_in_flight=max_in_flight)
    files: dict[str, FileRef] = {}

    def file_ref(path: str | os.PathLike[str]) -> FileRef:
        if str(path) not in files:
            files[str(path)] = FileRef.of(path)
        return files[str(path)]

    # Workers read tensors from files, not residuals; the writer's level, as add_tensors.
    planner = WritePlanner(base, references=False, level=writer.level)
    try:
        locations = checkpoint.locations()
        if locations is None:
            raise TensorzipError(f"{checkpoint.where}: its tensors are not raw bytes of a file that workers could "
                                 "read; a cluster run takes .safetensors files and folders")
        for name, array, path, offset in locations:
            plan = planner.plan(name, array)
            if plan.same_as is not None:
                encoder.add_shared(name, plan.same_as)
                continue
            if plan.packed:
                encoder.add_packed(name, array)
                continue
            spec, codec, mode, source = plan.spec, plan.codec, plan.delta_mode, file_ref(path)
            assert codec is not None
            if mode is None:
                encoder.add(name, spec, array.shape, codec,
                            pieces_of(name, source, offset, spec, array.shape, codec, None, piece_bytes))
                continue
            assert base is not None and plan.base_array is not None
            location = base.location(name)
            if location is not None:  # safetensors base: workers read it, one of them hashes it
                base_ref = BaseRef(mode, file_ref(location[0]), location[1], name)
                delta: Any = encoder.digest(base_ref.file, location[1], spec, array.shape, name)
            else:  # a .tzip base, decoded here to choose the mode: hash it here
                base_ref = BaseRef(mode, file_ref(base.path), None, name)
                delta = Delta(mode, name, digest(plan.base_array))
            encoder.add(name, spec, array.shape, codec,
                        pieces_of(name, source, offset, spec, array.shape, codec, base_ref, piece_bytes),
                        delta, mode)
        encoder.finish()
    except BaseException:
        encoder.cancel()
        raise
    return planner, encoder.cluster_threads
