"""Writing .tzip files in one streaming pass.

Tensors are queued and coded in batches (so the native thread pool sees many
chunks at once, small tensors included); each batch is written as soon as it is
coded, so memory stays near one batch however large the checkpoint is. The
header goes after the chunks and the preamble, written last, points at it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import _native, dtypes
from ..codecs import ChunkRef, Codec, EncodedTensor, EncodeJob, checked_threads, choose_codec
from ..codecs.policy import DEFAULT_LEVEL, checked_level
from ..codecs.residual import Delta, Reference, can_convert
from ..errors import CorruptDataError, LimitExceededError, OutputFileError, TensorzipError
from ..outputs.atomic import WriteBack, atomic_output
from . import records
from .format import DATA_START, DEFAULT_MAX_HEADER_BYTES, PREAMBLE_SIZE, Preamble, pack_header
from .header import FileEntry, GroupEntry, Header, Packed, TensorEntry
from .packing import choose_partition

DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
# Decoded bytes of small tensors a writer holds for their groups (``add(..., pack=True)``); past
# it, small tensors are coded one by one as before, so memory stays bounded on any checkpoint.
PACK_HOLD_BYTES = 64 * 1024 * 1024
# A batch also ends after this many tensors, so memory per tensor stays constant when a
# checkpoint holds 10^5 empty or tiny tensors (each coded tensor holds ~10 KB until written).
MAX_BATCH_TENSORS = 1024


@dataclass(frozen=True)
class TensorStats:
    """What happened to one tensor: sizes and the order-0 bound of its coded planes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    original_bytes: int
    stored_bytes: int
    order0_bound_bytes: float
    codec_id: str = ""
    context_planes: bool = False  # some chunk codes plane 1 given plane 0 (the `max` level)


def encodable(text: str, what: str) -> str:
    """``text``, if it can be written as UTF-8 (a lone surrogate such as "\\ud800" cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TensorzipError(f"{what} {text!r} holds a lone UTF-16 surrogate, which UTF-8 cannot store") from None
    return text


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TensorzipError("metadata must map strings to strings (as in safetensors' __metadata__)")
    for key, value in metadata.items():
        encodable(key, "a metadata key")
        encodable(value, "a metadata value")
    return dict(metadata)


class TzipWriter:
    """Streams tensors into a .tzip file (atomically) or a seekable binary stream."""

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        metadata: Mapping[str, str] | None = None,
        source: dict[str, Any] | None = None,
        threads: int | None = None,
        overwrite: bool = True,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        on_tensor: Callable[[TensorStats], None] | None = None,
        base: dict[str, Any] | None = None,
        level: str = DEFAULT_LEVEL,
    ):
        # How hard lossless coding works (codecs/policy.py LEVELS): the write plan codes each
        # tensor alone at it, and the writer the small tensors' groups.
        self.level = checked_level(level)
        self._header = Header(metadata=validate_metadata(metadata), source=source, base=base)
        self._threads = checked_threads(threads)
        self._batch_bytes = batch_bytes
        self._on_tensor = on_tensor
        # Queued tensors: (name, job or None, delta, same_as, file mode: None for a tensor).
        self._pending: list[tuple[str, EncodeJob | None, Delta | Reference | None, str | None, int | None]] = []
        self._pending_bytes = 0
        # Small tensors coded together, one group per dtype (in order of first use), written
        # after every tensor's chunks: name, shape and a copy of the data, per group.
        self._groups: dict[str, list[tuple[str, tuple[int, ...], np.ndarray]]] = {}
        self._held_bytes = 0
        self._groups_written = False
        self._packed_at: dict[str, tuple[int, dtypes.DTypeSpec, tuple[int, ...]]] = {}  # group, dtype, shape
        self._names: set[str] = set()
        self._referable: dict[str, tuple[str, int]] = {}  # tensors a later one may reference: dtype, numel
        self._file_paths: set[str] = set()  # a folder archive's files, added after every tensor
        # Encoders keep their buffers from batch to batch (fresh memory is slow to touch).
        self._encoders: dict[type[Codec], Callable[[list[EncodeJob]], list[Any]]] = {}
        # A file's batches code on one thread and are written on another (``_flush_ahead``): two
        # encoders per codec class take turns, so a batch's chunk buffers are not coded over
        # while they are written. The one pending write of each turn, and where chunks of the
        # batch being placed go.
        self._batch_encoders: dict[tuple[type[Codec], int], Callable[[list[EncodeJob]], list[Any]]] = {}
        self._turn_writes: dict[int, Future[None]] = {}
        self._batches = 0
        self._writer_thread: ThreadPoolExecutor | None = None
        self._batch_pieces: list[Any] | None = None
        # The batch coding on the encode thread: (its queue entries, its turn, the coding).
        self._encode_thread: ThreadPoolExecutor | None = None
        self._encoding: tuple[list[Any], int, Future[dict[int, Any]]] | None = None
        self._failure: BaseException | None = None  # what failed on those threads (see _outcome)
        self.stats: list[TensorStats] = []
        self.files_order0_bound_bytes = 0.0  # of a folder archive's other files, as coded
        self.encode_seconds = 0.0
        self._closed = False
        self._stack = contextlib.ExitStack()
        if isinstance(target, (str, os.PathLike)):
            self.where = str(target)
            self._file: BinaryIO = self._stack.enter_context(atomic_output(target, overwrite=overwrite))
            self._base = 0
        else:
            self.where = getattr(target, "name", "<stream>")
            self._file = target
            self._base = target.tell()
        self._writeback = WriteBack(self._file)
        # Overlap writing with coding for a file this writer owns (streams and in-memory targets
        # are written in place: a thread per call would cost more than it saves).
        self._pipelined = isinstance(target, (str, os.PathLike))
        self._file.write(bytes(PREAMBLE_SIZE))  # placeholder until the header is known
        self._offset = DATA_START

    @property
    def threads(self) -> int:
        """Worker threads for native work (0: all cores)."""
        return self._threads

    def _check_new(self, name: Any, delta: Delta | Reference | None) -> None:
        """A tensor may be added: the writer is open, the name new, a delta has a base, a
        reference names a tensor added before."""
        if self._closed:
            raise TensorzipError(f"{self.where}: writer is closed")
        if not isinstance(name, str):
            raise TensorzipError(f"tensor names must be strings, got {name!r}")
        encodable(name, "a tensor name")
        if name in self._names:
            raise TensorzipError(f"{self.where}: tensor {name!r} added twice")
        if isinstance(delta, Reference) and delta.tensor not in self._referable:
            raise TensorzipError(f"{self.where}: tensor {name!r} is coded against {delta.tensor!r}, which was not "
                                 "added before it, stored under its own name without a reference")
        elif isinstance(delta, Delta) and self._header.base is None:
            raise TensorzipError(f"{self.where}: tensor {name!r} has a delta but the writer names no base")
        if self._file_paths:
            raise TensorzipError(f"{self.where}: tensor {name!r} added after a file (files come last)")

    def add(self, name: str, array: np.ndarray, codec: Codec | None = None,
            delta: Delta | Reference | None = None, *, pack: bool = False) -> None:
        """Queue a tensor; it is coded and written with the next batch.

        With ``delta``, ``array`` is the residual against that base tensor, or (a
        ``Reference``) against that earlier tensor of this file (``codecs.residual``).
        With ``pack`` (the write plan's decision for small tensors), it is coded with the
        other packed tensors of its dtype as one group when the file is finished (``codec``
        is then not used); past ``PACK_HOLD_BYTES`` held, or once the groups are written,
        it is coded alone.
        """
        self._check_new(name, delta)
        spec = dtypes.by_numpy(array.dtype)
        if isinstance(delta, Reference):
            source_dtype, numel = self._referable[delta.tensor]
            if numel != array.size or not can_convert(source_dtype, spec.name):
                raise TensorzipError(f"{self.where}: tensor {name!r} ({spec.name}, {array.size} elements) cannot be "
                                     f"coded against {delta.tensor!r} ({source_dtype}, {numel} elements)")
        else:
            self._referable[name] = (spec.name, array.size)
        self._names.add(name)
        if (pack and delta is None and array.size and not self._groups_written
                and self._held_bytes + array.nbytes <= PACK_HOLD_BYTES):
            members = self._groups.setdefault(spec.name, [])
            members.append((name, tuple(array.shape), np.array(array).reshape(-1)))
            self._packed_at[name] = (list(self._groups).index(spec.name), spec, tuple(array.shape))
            self._held_bytes += array.nbytes
            self._pending.append((name, None, None, None, None))  # its header entry, in add order
            return
        job = EncodeJob(codec or choose_codec(array, spec, self.level), array, spec)
        self._pending.append((name, job, delta, None, None))
        self._pending_bytes += array.nbytes
        if self._pending_bytes >= self._batch_bytes or len(self._pending) >= MAX_BATCH_TENSORS:
            self._flush_ahead()

    def add_shared(self, name: str, same_as: str) -> None:
        """Record ``name`` as stored once already, under ``same_as`` (added before, same dtype
        and shape, identical bytes: the caller checks, see ``tensorzip.dedup``)."""
        if self._closed:
            raise TensorzipError(f"{self.where}: writer is closed")
        if name in self._names:
            raise TensorzipError(f"{self.where}: tensor {name!r} added twice")
        if same_as not in self._names:
            raise TensorzipError(f"{self.where}: tensor {name!r} is the same as {same_as!r}, which was not added")
        self._names.add(name)
        if self._file_paths:
            raise TensorzipError(f"{self.where}: tensor {name!r} added after a file (files come last)")
        self._pending.append((name, None, None, same_as, None))

    def add_file(self, path: str, data: np.ndarray, mode: int) -> None:
        """Queue a file of a folder archive (``data``: its bytes, 1-D uint8, e.g. a memory map);
        after every tensor. Its path is checked when the header is written (records.py)."""
        self._check_file(path, mode)
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TensorzipError(f"{self.where}: file {path!r} must be given as 1-D uint8 bytes")
        spec = dtypes.by_numpy(data.dtype)
        self._pending.append((path, EncodeJob(choose_codec(data, spec), data, spec), None, None, mode))
        self._pending_bytes += data.nbytes
        if self._pending_bytes >= self._batch_bytes or len(self._pending) >= MAX_BATCH_TENSORS:
            self._flush_ahead()

    def add_folder(self, path: str, mode: int) -> None:
        """Record an empty folder of a folder archive, so that it comes back."""
        self._check_file(path, mode)
        self.flush()
        self._header.files[path] = FileEntry(path, mode, None)

    def _check_file(self, path: str, mode: int) -> None:
        if self._closed:
            raise TensorzipError(f"{self.where}: writer is closed")
        if not self._file_paths:  # files' chunks come after the groups'
            self.flush()
            self._write_groups()
        if path in self._file_paths:
            raise TensorzipError(f"{self.where}: file {path!r} added twice")
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise TensorzipError(f"{self.where}: file {path!r}: mode must be permission bits (0 to 0o777)")
        self._file_paths.add(path)

    def flush(self) -> None:
        """Code and write every queued tensor."""
        self._flush_ahead()
        self._settle()

    def _flush_ahead(self) -> None:
        """Start coding the queued batch. A file's batch codes on a thread while the caller
        plans and queues the next one (the batch before it is placed then, and written on
        another thread), so planning, coding and writing overlap; other targets code it now."""
        if not self._pending:
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        turn = self._batches % 2 if self._pipelined else 0
        self._batches += 1
        self._wait_for_write(turn)  # the batch two before: its chunks, in this turn's buffers, are written
        if not self._pipelined:
            self._place(batch, turn, self._encode(batch, turn))
            return
        if self._encode_thread is None:
            self._encode_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensorzip-encode")
        coding = self._encode_thread.submit(self._encode, batch, turn)
        previous, self._encoding = self._encoding, (batch, turn, coding)
        if previous is not None:
            self._place(previous[0], previous[1], self._outcome(previous[2]))

    def _settle(self) -> None:
        """The batch coding ahead, if any, placed (its header entries made, its write queued)."""
        if self._encoding is not None:
            batch, turn, coding = self._encoding
            self._encoding = None
            self._place(batch, turn, self._outcome(coding))

    def _encode(self, batch: list[Any], turn: int) -> dict[int, Any]:
        started = time.perf_counter()
        by_class: dict[type[Codec], list[int]] = {}
        for index, (_, job, _, _, _) in enumerate(batch):
            if job is not None:
                by_class.setdefault(type(job.codec), []).append(index)
        encoded: dict[int, Any] = {}
        for cls, indices in by_class.items():
            if (cls, turn) not in self._batch_encoders:
                self._batch_encoders[cls, turn] = cls.batch_encoder(self._threads)
            results = self._batch_encoders[cls, turn]([batch[i][1] for i in indices])  # type: ignore[misc]
            encoded.update(zip(indices, results, strict=True))
        self.encode_seconds += time.perf_counter() - started
        return encoded

    def _place(self, batch: list[Any], turn: int, encoded: dict[int, Any]) -> None:
        """Header entries and file offsets for a coded batch, in add order; its chunks are
        written on the writer thread for a file (from this turn's buffers), else now."""
        self._batch_pieces = []
        for index, (name, job, delta, same_as, mode) in enumerate(batch):
            if job is None and same_as is None:
                self._place_packed(name)
                continue
            if job is None:
                self._record_shared(name, same_as)
                continue
            if mode is not None:
                recorded = encoded[index].codec or job.codec
                entry = TensorEntry(name, job.spec, tuple(job.array.shape), recorded.get_config(),
                                    self._write_chunks(encoded[index]))
                self.files_order0_bound_bytes += encoded[index].order0_bound_bytes
                self._header.files[name] = FileEntry(name, mode, entry)
                continue
            self._write_tensor(name, job.spec, tuple(job.array.shape), job.codec, encoded[index], delta)
        pieces, self._batch_pieces = self._batch_pieces, None
        if not self._pipelined:
            self._write_pieces(pieces)
            return
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensorzip-write")
        self._turn_writes[turn] = self._writer_thread.submit(self._write_pieces, pieces)

    def _write_pieces(self, pieces: list[Any]) -> None:
        """Write a batch's chunks, in order, and start the device writing them (``WriteBack``)
        while the next batch codes."""
        for piece in pieces:
            self._file.write(piece)
        self._writeback.written(sum(memoryview(piece).nbytes for piece in pieces))

    def _wait_for_write(self, turn: int) -> None:
        """The batch written from this turn's encoders is on the file (its error raised here)."""
        pending = self._turn_writes.pop(turn, None)
        if pending is not None:
            self._outcome(pending)

    def _outcome(self, work: Future[Any]) -> Any:
        """The result of work done on the encode or write thread. Its failure fails the writer:
        the file is dropped at once (a batch that was not coded or not written is gone, and the
        header would count it), and ``close`` raises instead of committing."""
        try:
            return work.result()
        except BaseException as error:
            self._failure = error
            self.abort(error)  # an OS error is raised as the OutputFileError naming the target
            raise

    def _finish_writes(self) -> None:
        """Every batch queued is on the file, before anything is written here directly."""
        for turn in list(self._turn_writes):
            self._wait_for_write(turn)

    def add_encoded(self, name: str, spec: dtypes.DTypeSpec, shape: tuple[int, ...], codec: Codec,
                    encoded: EncodedTensor, delta: Delta | None = None) -> None:
        """Write a tensor that was encoded elsewhere (``tensorzip.writing.cluster`` encodes on Dask
        workers), exactly as ``flush`` writes one coded here: queued tensors first, then its
        chunks, then its header entry. ``encoded`` must be what ``codec`` makes of the tensor
        (``spec``, ``shape``; with ``delta``, of the residual); each chunk's checksum is
        checked before it is written, so damage in transit cannot reach the file."""
        self._check_new(name, delta)
        encoded = dataclasses.replace(encoded, chunks=[memoryview(c).cast("B") for c in encoded.chunks])
        if len(encoded.chunks) != len(encoded.chunk_crc32c):
            raise TensorzipError(f"{self.where}: tensor {name!r}: {len(encoded.chunks)} chunks but "
                                 f"{len(encoded.chunk_crc32c)} checksums")
        for number, (chunk, crc) in enumerate(zip(encoded.chunks, encoded.chunk_crc32c, strict=True)):
            if _native.crc32c(chunk) != crc:
                raise CorruptDataError(f"{self.where}: tensor {name!r}: encoded chunk {number} fails its checksum")
        self.flush()
        self._names.add(name)
        self._write_tensor(name, spec, tuple(shape), codec, encoded, delta)

    def _write_tensor(self, name: str, spec: dtypes.DTypeSpec, shape: tuple[int, ...], codec: Codec,
                      result: EncodedTensor, delta: Delta | Reference | None) -> None:
        reference = delta if isinstance(delta, Reference) else None
        base_delta = delta if isinstance(delta, Delta) else None
        entry = TensorEntry(name, spec, shape, (result.codec or codec).get_config(), self._write_chunks(result),
                            base_delta, reference=reference)
        self._header.tensors[name] = entry
        how = (f"+{delta.mode}" if base_delta is not None else "") + (
            f"+{reference.mode} of {reference.tensor}" if reference is not None else "")
        stats = TensorStats(
            name, spec.name, entry.shape, entry.nbytes, result.stored_bytes,
            result.order0_bound_bytes, codec.codec_id + how, entry.codec_config.get("context_planes") is True,
        )
        self.stats.append(stats)
        if self._on_tensor is not None:
            self._on_tensor(stats)

    def _place_packed(self, name: str) -> None:
        """The header entry of a packed tensor, in add order; its group fills it in."""
        number, spec, shape = self._packed_at[name]
        self._header.tensors[name] = TensorEntry(name, spec, shape, {}, (), packed=Packed(number, 0, 0))

    def _write_groups(self) -> None:
        """Code each dtype's small tensors as one array, after every tensor's chunks (and
        before a folder archive's files), and point their entries at it."""
        if self._groups_written:
            return
        self._groups_written = True
        started = time.perf_counter()
        for dtype, members in self._groups.items():
            spec = dtypes.by_name(dtype)
            coded: dict[tuple[int, ...], tuple[EncodeJob, EncodedTensor]] = {}

            def code(indices: list[int], members: list[Any] = members, spec: Any = spec,
                     coded: dict[tuple[int, ...], Any] = coded) -> tuple[EncodeJob, EncodedTensor]:
                key = tuple(indices)
                if key not in coded:
                    joined = np.concatenate([members[i][2] for i in indices])
                    job = EncodeJob(choose_codec(joined, spec, self.level), joined, spec)
                    if type(job.codec) not in self._encoders:
                        self._encoders[type(job.codec)] = type(job.codec).batch_encoder(self._threads)
                    result = self._encoders[type(job.codec)]([job])[0]
                    # The encoder reuses its buffers: keep copies while other candidates are coded.
                    copies = [np.array(c, dtype=np.uint8) for c in result.chunks]
                    coded[key] = (job, dataclasses.replace(result, chunks=copies))
                return coded[key]

            partition = choose_partition([data for _, _, data in members], lambda i: code(i)[1].stored_bytes)
            for indices in partition:
                self._write_group(spec, [members[i] for i in indices], *code(indices))
        self._groups.clear()
        self._packed_at.clear()
        self._held_bytes = 0
        self.encode_seconds += time.perf_counter() - started

    def _write_group(self, spec: dtypes.DTypeSpec, members: list[tuple[str, tuple[int, ...], np.ndarray]],
                     job: EncodeJob, result: EncodedTensor) -> None:
        number = len(self._header.groups)
        group = GroupEntry(spec, job.array.size, (result.codec or job.codec).get_config(), self._write_chunks(result))
        self._header.groups.append(group)
        element = 0
        for name, shape, data in members:
            chunks, skip = group.span(element, data.size)
            share = -(-result.stored_bytes * data.size // job.array.size)
            self._header.tensors[name] = TensorEntry(name, spec, shape, group.codec_config, chunks,
                                                     packed=Packed(number, element, skip, share))
            share = data.size / job.array.size
            self._report(TensorStats(name, spec.name, shape, data.nbytes, round(result.stored_bytes * share),
                                     result.order0_bound_bytes * share, f"packed:{job.codec.codec_id}",
                                     group.codec_config.get("context_planes") is True))
            element += data.size

    def _report(self, stats: TensorStats) -> None:
        self.stats.append(stats)
        if self._on_tensor is not None:
            self._on_tensor(stats)

    def _write_chunks(self, result: EncodedTensor) -> tuple[ChunkRef, ...]:
        """Place the chunks at the end of the file: with the batch being flushed (written
        together, perhaps on the writer thread), or written now, after every batch before."""
        if self._batch_pieces is None:  # written directly: after every batch queued before
            self._settle()
            self._finish_writes()
        chunks = []
        for chunk, crc in zip(result.chunks, result.chunk_crc32c, strict=True):
            if self._batch_pieces is not None:
                self._batch_pieces.append(chunk)
            else:
                self._file.write(chunk)
            chunks.append(ChunkRef(self._offset, chunk.nbytes, crc))
            self._offset += chunk.nbytes
        return tuple(chunks)

    def _record_shared(self, name: str, same_as: str | None) -> None:
        target = self._header.tensors[same_as or ""]
        entry = TensorEntry(name, target.spec, target.shape, target.codec_config, target.chunks, target.delta,
                            same_as, target.reference)
        self._header.tensors[name] = entry
        stats = TensorStats(name, target.spec.name, target.shape, target.nbytes, 0, 0.0, f"same_as:{same_as}")
        self.stats.append(stats)
        if self._on_tensor is not None:
            self._on_tensor(stats)

    @property
    def bytes_written(self) -> int:
        """Bytes of the file so far (queued tensors not counted until ``flush``)."""
        return self._offset

    @property
    def uses_base(self) -> bool:
        """Whether the file (as written so far, or closed) depends on a base."""
        return self._header.base is not None

    def add_metadata(self, key: str, value: str) -> None:
        """Add a metadata entry known only at the end (a digest of the input); before ``close``."""
        if self._closed:
            raise TensorzipError(f"{self.where}: writer is closed")
        if not (isinstance(key, str) and isinstance(value, str)):
            raise TensorzipError("metadata must map strings to strings (as in safetensors' __metadata__)")
        self._header.metadata = {**(self._header.metadata or {}), key: value}

    def close(self) -> int:
        """Finish the file (header, preamble) and commit it; returns its size in bytes."""
        if self._failure is not None:
            raise OutputFileError(f"{self.where}: not written: coding or writing it failed before "
                                  f"({type(self._failure).__name__}: {self._failure})") from self._failure
        if self._closed:
            return self._offset
        try:
            self.flush()
            self._write_groups()
            if self._header.base is not None and not any(e.delta for e in self._header.tensors.values()):
                self._header.base = None  # no tensor used the base: the file must not depend on it
            if self._header.files:  # never write a file this reader would refuse
                records.check_archive_files(self._header.source,
                                            [(f.path, f.data is None) for f in self._header.files.values()], self.where)
            header = self._header.to_bytes()
            if len(header) > DEFAULT_MAX_HEADER_BYTES:  # whatever is written must be readable
                raise LimitExceededError(
                    f"{self.where}: {len(self._header.tensors):,} tensors need a header of {len(header):,} bytes, "
                    f"over the {DEFAULT_MAX_HEADER_BYTES:,} a reader accepts (ReadLimits.max_header_bytes); "
                    "nothing was written: split the checkpoint into shards (a folder compresses shard by shard)")
            stored, flags = pack_header(header)
            self._finish_writes()
            self._stop_threads()
            self._file.write(stored)
            end = self._offset + len(stored)
            self._file.seek(self._base)
            minor = 1 if self._header.uses_format_1_1 else 0
            self._file.write(Preamble(self._offset, len(stored), _native.crc32c(stored), minor=minor,
                                      flags=flags).pack())
            self._file.seek(self._base + end)
        except BaseException as error:
            self.abort(error)
            raise
        self._closed = True
        self._stack.close()  # commits an atomic file
        self._offset = end
        return end

    def abort(self, error: BaseException | None = None) -> None:
        """Drop everything written; a target path is left as it was."""
        if self._closed:
            return
        self._closed = True
        error = error or TensorzipError("aborted")
        self._stop_threads()  # nothing writes to the file once it is dropped
        # The caller re-raises its own error; cleanup failures must not mask it. The one
        # exception: an OS error (disk full) that the atomic file told as an OutputFileError
        # naming the target, which is raised in its place.
        try:
            self._stack.__exit__(type(error), error, error.__traceback__)
        except OutputFileError:
            if isinstance(error, OSError) and not isinstance(error, TensorzipError):
                raise
        except BaseException:
            pass

    def _stop_threads(self) -> None:
        """Wait for the encode and writer threads to finish what they were given (errors were
        or will be raised by the waits), and end them."""
        for thread in (self._encode_thread, self._writer_thread):
            if thread is not None:
                thread.shutdown(wait=True)
        self._encode_thread = self._writer_thread = None

    def __enter__(self) -> TzipWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


def one_tensor_image(data: np.ndarray, metadata: Mapping[str, str] | None, threads: int | None,
                     codec: Codec | None = None) -> bytes:
    """A one-tensor .tzip image (the form of ``tz.compress``: the tensor named ""), coded
    with ``codec`` (None: the default lossless choice)."""
    import io

    buffer = io.BytesIO()
    with TzipWriter(buffer, metadata=metadata, threads=threads) as writer:
        writer.add("", data, codec)
    return buffer.getvalue()
