"""Reading .tzip files: validate the preamble and header first, then decode any
tensor without touching the others.

Reads use ``os.preadv`` (no shared file position), so one reader can serve many
threads at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import threading
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .. import _native
from ..codecs import BUILTIN_CODECS, ChunkDecodeError, ChunkRef, Codec, DecodeJob, checked_threads, codec_from_config
from ..codecs.residual import convert, restore
from ..errors import (
    BaseMismatchError,
    BaseRequiredError,
    CorruptDataError,
    FormatError,
    HeaderError,
    InputFileError,
    LimitExceededError,
    TensorNotFoundError,
    TensorzipError,
    TruncatedFileError,
)
from ..inputs.sources import RemoteFile, is_url, open_remote
from .bases import BaseCheckpoint, locate_base
from .decoded_targets import COPY_BUDGET_BYTES, DecodedTargets
from .format import DATA_START, PREAMBLE_SIZE, Preamble, unpack_header
from .header import Header, ReadLimits, TensorEntry
from .records import load_json

DEFAULT_READ_BATCH_BYTES = 64 * 1024 * 1024
# Stored bytes per batch and decoding thread when tensors are decoded into memory with the next batch
# read meanwhile: small, so the two batches in flight add little to the decoded tensors (MiniLM BF16
# into transformers, 1 thread: 4 MiB batches +17% peak RSS over safetensors, 1 MiB +7%) and reuse warm
# memory (MiniLM, 2 threads: 4-8 MiB 0.15 s, 64 MiB 0.20-0.24 s); two or more 512 KiB chunks a thread.
PIPELINE_BATCH_BYTES = 1024 * 1024
# The same for a URL, where each batch is one request, with REMOTE_PREFETCH_DEPTH requests in
# flight so the link is not left idle between them (one in flight, MiniLM BF16 at 100 MB/s: 1 MiB
# batches 0.90 s, 4 MiB 0.63-0.78 s, but 4 MiB batches held +15% peak RSS over safetensors).
REMOTE_BATCH_BYTES = 1024 * 1024
REMOTE_PREFETCH_DEPTH = 2
# Stored ranges closer than this are read in one request (a gap costs less than a round trip).
COALESCE_GAP_BYTES = 64 * 1024
# Memory per header byte that parsing may take at worst: JSON spells a Python list of 56
# bytes in 3 ("[[],[],..." measured 43 bytes per header byte; a real header of 200K tensors
# 6.7), so a header's parse is bounded by this multiple of its size, checked before json.loads.
HEADER_PARSE_COST = 48

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | RemoteFile


class TzipReader:
    """An open .tzip file (a path) or image (a bytes-like).

    Thread-safe for reading: any number of threads may call ``get_tensor``,
    ``iter_tensors`` and ``decode_into`` on one reader at once (each with its own output
    arrays). Reads use ``os.preadv`` at explicit offsets (no shared file position), the
    header is not changed after opening, decoding keeps its scratch per call, and the base
    of a delta-coded file is opened once, under a lock, by whichever thread needs it
    first. ``close`` must not race with reads.
    """

    def __init__(
        self,
        source: Source,
        *,
        limits: ReadLimits | None = None,
        threads: int | None = None,
        base: str | os.PathLike[str] | BaseCheckpoint | None = None,
        chain: tuple[tuple[int, int], ...] = (),
    ):
        """``base``: the checkpoint the file was coded against, if it was (a path or an
        open ``BaseCheckpoint``). Without it, the base the header names is looked for
        beside the file, when a tensor needs it. ``chain``: the files (device, inode) whose
        bases led here, so a base chain that comes back to one of them is refused, not
        followed (a file naming itself would otherwise open itself level after level)."""
        self._fd: int | None = None
        self._owns_base = False
        self._base: BaseCheckpoint | None = None
        self._buffer: memoryview | None = None
        self._remote: RemoteFile | None = None
        self.limits = limits or ReadLimits()
        # Codecs by the id of the config they were built from (kept with it, so the id stays its).
        self._codecs: dict[int, tuple[dict[str, Any], Codec]] = {}
        self.threads = checked_threads(threads)
        self._path: str | os.PathLike[str] | None = source if isinstance(source, (str, os.PathLike)) else None
        self._base_given = base
        self._base: BaseCheckpoint | None = None if base is None or isinstance(base, (str, os.PathLike)) else base
        self._owns_base = False
        self._base_lock = threading.Lock()
        self._chain = chain
        if isinstance(source, RemoteFile) or is_url(source):
            self._path = None  # a remote file's base is given, never looked up "beside" it
            self._remote = source if isinstance(source, RemoteFile) else open_remote(str(source))
            self.where = self._remote.where
            self.size = self._remote.size
            self.header = self._read_header()
        elif isinstance(source, (str, os.PathLike)):
            self.where = str(source)
            try:
                # O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting forever
                # for a writer; reads of a regular file are unaffected.
                self._fd = os.open(source, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
            except FileNotFoundError:
                raise InputFileError(f"{self.where}: no such file") from None
            except OSError as error:
                raise InputFileError(f"{self.where}: cannot open ({error.strerror or error})") from None
            try:
                status = os.fstat(self._fd)
                if not stat.S_ISREG(status.st_mode):
                    raise InputFileError(f"{self.where}: not a regular file")
                self._chain = (*chain, (status.st_dev, status.st_ino))
                self.size = status.st_size
                self.header = self._read_header()
            except BaseException:
                self.close()
                raise
        else:
            self.where = "<bytes>"
            self._buffer = memoryview(source).cast("B")
            self.size = len(self._buffer)
            self.header = self._read_header()

    # -- raw access ---------------------------------------------------------------

    def read_range(self, offset: int, length: int) -> bytes | memoryview:
        """Exactly ``length`` bytes at ``offset``, or TruncatedFileError."""
        if offset + length > self.size:
            raise TruncatedFileError(
                f"{self.where}: needs bytes up to offset {offset + length} but the file has {self.size}"
            )
        if self._buffer is not None:
            return self._buffer[offset : offset + length]
        if self._remote is not None:
            return self._remote.read(offset, length)
        data = bytearray(length)
        self._read_into(offset, memoryview(data))  # refuses a closed reader
        return data

    def _read_into(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` from the local file at ``offset`` (checked against the size first)."""
        if offset + view.nbytes > self.size:
            raise TruncatedFileError(
                f"{self.where}: needs bytes up to offset {offset + view.nbytes} but the file has {self.size}")
        if self._fd is None:
            raise InputFileError(f"{self.where}: reader is closed")
        done = 0
        while done < view.nbytes:
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got == 0:
                raise TruncatedFileError(f"{self.where}: file shrank while reading at offset {offset + done}")
            done += got

    def _read_header(self) -> Header:
        preamble = Preamble.unpack(bytes(self.read_range(0, min(self.size, PREAMBLE_SIZE))), self.where)
        if preamble.header_length > self.limits.max_header_bytes:
            raise LimitExceededError(
                f"{self.where}: header declares {preamble.header_length} bytes, over the limit of "
                f"{self.limits.max_header_bytes} (ReadLimits.max_header_bytes)"
            )
        end = preamble.header_offset + preamble.header_length
        if preamble.header_offset < DATA_START:
            raise HeaderError(f"{self.where}: header offset {preamble.header_offset} lies inside the preamble")
        if end > self.size:
            raise TruncatedFileError(
                f"{self.where}: file is {self.size} bytes but its header ends at offset {end} (truncated?)"
            )
        if end < self.size:
            raise HeaderError(f"{self.where}: {self.size - end} unexpected bytes after the header at offset {end}")
        raw = bytes(self.read_range(preamble.header_offset, preamble.header_length))
        if _native.crc32c(raw) != preamble.header_crc32c:
            raise HeaderError(
                f"{self.where}: header checksum mismatch (header at offset {preamble.header_offset}, "
                f"{preamble.header_length} bytes; the file is damaged)"
            )
        raw = unpack_header(raw, preamble.flags, self.limits.max_header_bytes, self.where, preamble.header_offset)
        if len(raw) * HEADER_PARSE_COST > self.limits.max_memory_bytes:
            raise LimitExceededError(
                f"{self.where}: header of {len(raw):,} bytes would take up to "
                f"{len(raw) * HEADER_PARSE_COST:,} bytes to parse, over ReadLimits.max_memory_bytes "
                f"({self.limits.max_memory_bytes:,})")
        header = Header.parse(raw, self.where, preamble.header_offset, self.limits)
        check_chunk_counts(header, self.where, self._codecs)
        return header

    def codec_of(self, entry: TensorEntry) -> Codec:
        """The entry's codec (a bad config raises, naming the file and tensor), built once per
        config: a one-tensor image (a Zarr chunk, ``tz.decompress``) otherwise built it twice,
        when opened and when decoded, a tenth of the Python time of a call."""
        known = self._codecs.get(id(entry.codec_config))
        if known is not None and known[0] is entry.codec_config:
            return known[1]
        codec = codec_from_config_for(entry, self.where)
        self._codecs[id(entry.codec_config)] = (entry.codec_config, codec)
        return codec

    # -- the safetensors-shaped surface ------------------------------------------------

    def keys(self) -> list[str]:
        return list(self.header.tensors)

    def metadata(self) -> dict[str, str] | None:
        return None if self.header.metadata is None else dict(self.header.metadata)

    def layer_record(self, key: str, what: str, formats: Collection[int]) -> dict[str, Any]:
        """The JSON record a lossy layer (KV caches, embeddings, lossy weights) keeps in
        the metadata under ``key``, checked to be an object of one of ``formats``;
        ``what`` names the kind of file in the error (e.g. "a KV cache")."""
        raw = (self.metadata() or {}).get(key)
        if raw is None:
            raise FormatError(f"{self.where}: not {what} (no {key!r} record)")
        record = load_json(raw, self.where, f"the {key!r} record", FormatError)
        if not isinstance(record, dict) or record.get("format") not in formats:
            found = record.get("format") if isinstance(record, dict) else record
            raise FormatError(f"{self.where}: the {key!r} record has an unknown format {found!r}")
        return record

    def entry(self, name: str) -> TensorEntry:
        try:
            return self.header.tensors[name]
        except KeyError:
            raise TensorNotFoundError(f"{self.where}: no tensor named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.header.tensors

    def __len__(self) -> int:
        return len(self.header.tensors)

    def get_tensor(self, name: str, *, verify_checksums: bool = True) -> np.ndarray:
        """Decode one tensor, reading only its own chunks."""
        entry = self.entry(name)
        if entry.reference is not None:  # needs the tensor it is coded against: a pass
            return next(iter(self.iter_tensors([name], verify_checksums=verify_checksums)))[1]
        # One tensor alone, in one native call: what a Zarr chunk or tz.decompress pays per call.
        self.check_fits_in_memory(entry.nbytes, f"tensor {name!r}")
        return next(self._decode_batch([entry], None, verify_checksums, None))[1]

    def iter_tensors(
        self,
        names: Iterable[str] | None = None,
        *,
        verify_checksums: bool = True,
        batch_bytes: int | None = None,
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Decode tensors in batches (one native call per batch), in storage order. The
        stored bytes of the next batch are read while this one decodes, so a slow source
        (a network file system, a URL) costs its transfer time, not transfer plus decode."""
        entries = [self.entry(n) for n in (self.keys() if names is None else names)]
        for entry in entries:
            self.check_fits_in_memory(entry.nbytes, f"tensor {entry.name!r}")
        if batch_bytes is None:
            batch_bytes = self.pipeline_batch_bytes()
        batches = list(batched_by_stored_bytes(entries, batch_bytes))
        targets = DecodedTargets(entries, private_copies=False, budget_bytes=self.targets_budget())
        for batch, stored in self.read_ahead(batches):
            yield from self._decode_batch(batch, stored, verify_checksums, targets)
            del stored

    def read_ahead(self, batches: list[list[TensorEntry]]
                   ) -> Iterator[tuple[list[TensorEntry], list[bytes | memoryview] | None]]:
        """Each batch with its stored bytes, the next batches' read on a thread while the
        caller decodes this one (``read_stored``), so reading costs its transfer time, not
        transfer plus decode. ``None``: one batch, nothing to overlap; the decoder reads it.
        A batch's stored bytes are valid until the caller takes the next one (their memory
        is reused)."""
        if len(batches) <= 1:  # one tensor, or a small file
            yield from ((batch, None) for batch in batches)
            return
        depth = self.prefetch_depth()
        buffers = ReadBuffers(depth + 1)  # the batch taken, and those read ahead of it
        prefetch = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="tensorzip-read")
        try:
            pending = deque(prefetch.submit(self.read_stored, b, buffers, i) for i, b in enumerate(batches[:depth]))
            for index, batch in enumerate(batches):
                stored = pending.popleft().result()
                if index + depth < len(batches):  # into the slot of the batch before this one: done with
                    ahead = index + depth
                    pending.append(prefetch.submit(self.read_stored, batches[ahead], buffers, ahead % len(buffers)))
                yield batch, stored
                del stored
        finally:  # a consumer that stops early does not wait for batches it will not take
            prefetch.shutdown(wait=True, cancel_futures=True)

    def _decode_batch(self, batch: list[TensorEntry], stored: list[bytes | memoryview] | None,
                      verify_checksums: bool, targets: DecodedTargets | None) -> Iterator[tuple[str, np.ndarray]]:
        try:
            outs = [np.empty(e.shape, dtype=e.spec.numpy_dtype) for e in batch]
        except MemoryError:
            raise LimitExceededError(
                f"{self.where}: no memory for {sum(e.nbytes for e in batch):,} decoded bytes (lower "
                "ReadLimits.max_memory_bytes to be refused before trying, or stream with tensorzip "
                "decompress)") from None
        self.decode_into(list(zip(batch, outs, strict=True)), verify_checksums=verify_checksums, stored=stored,
                         targets=targets)
        yield from ((e.name, out) for e, out in zip(batch, outs, strict=True))

    def pipeline_batch_bytes(self) -> int:
        """Stored bytes per batch for reading while decoding (see PIPELINE_BATCH_BYTES)."""
        threads = self.threads or os.cpu_count() or 1
        if self._remote is not None:
            return REMOTE_BATCH_BYTES
        return PIPELINE_BATCH_BYTES * threads

    def prefetch_depth(self) -> int:
        """Batches read ahead of the one decoding: several for a URL, whose requests then
        overlap their round trips (small batches keep the bytes in flight few)."""
        return REMOTE_PREFETCH_DEPTH if self._remote is not None else 1

    def read_stored(self, entries: list[TensorEntry], into: ReadBuffers | None = None, slot: int = 0
                    ) -> list[bytes | memoryview]:
        """The stored bytes of each entry, ranges that lie close together read in one request
        (one ``pread`` or one HTTP range for a run of small tensors). ``into``: a local file
        is read into its reused buffer ``slot`` (memory touched before is several times
        faster to fill than fresh pages); the views are valid until that slot is reused."""
        if self._buffer is not None and len(entries) == 1:  # an image in memory: a view, nothing to plan
            return [self.read_range(entries[0].data_offset, entries[0].stored_bytes)]
        order = sorted((i for i, entry in enumerate(entries) if entry.stored_bytes),
                       key=lambda i: entries[i].data_offset)
        runs: list[list[int]] = []
        for index in order:
            last = runs[-1][-1] if runs else None
            if (last is None or entries[index].data_offset > _end(entries[last]) + COALESCE_GAP_BYTES
                    or entries[index].data_offset < entries[last].data_offset):
                runs.append([])
            runs[-1].append(index)
        spans = [(entries[run[0]].data_offset, max(_end(entries[i]) for i in run)) for run in runs]
        buffer = None
        if into is not None and self._fd is not None and self._buffer is None and self._remote is None:
            buffer = into.take(slot, sum(end - start for start, end in spans))
        found: list[bytes | memoryview] = [b""] * len(entries)
        used = 0
        for run, (start, end) in zip(runs, spans, strict=True):
            if buffer is None:
                span = memoryview(self.read_range(start, end - start))
            else:
                span = buffer[used : used + end - start]
                self._read_into(start, span)
                used += end - start
            for i in run:
                offset = entries[i].data_offset - start
                found[i] = span[offset : offset + entries[i].stored_bytes]
        return found

    def targets_budget(self) -> int:
        """Decoded bytes a pass may keep for the tensors others are coded against."""
        return min(COPY_BUDGET_BYTES, self.limits.max_memory_bytes // 4)

    def check_fits_in_memory(self, nbytes: int, what: str) -> None:
        """Refuse, before allocating, what an in-memory API would hold beyond the limit."""
        if nbytes > self.limits.max_memory_bytes:
            raise LimitExceededError(
                f"{self.where}: {what} declares {nbytes:,} bytes, over the {self.limits.max_memory_bytes:,} an "
                "in-memory read may take (ReadLimits.max_memory_bytes, default half the machine's memory); "
                "tensorzip decompress streams it to a file in bounded memory")

    def pieces(self, entry: TensorEntry, max_bytes: int) -> Iterator[TensorEntry]:
        """``entry`` as runs of whole chunks of at most ~``max_bytes`` decoded bytes each, in
        order, so streaming readers decode any declared size in bounded memory. An entry
        whose codec cannot decode chunks alone, or coded against a base or another tensor, is one piece."""
        per_chunk = self.codec_of(entry).elements_per_chunk()
        if (entry.delta is not None or entry.reference is not None or entry.packed is not None or not per_chunk
                or entry.nbytes <= max_bytes):
            yield entry
            return
        chunks_per_piece = max(1, max_bytes // (per_chunk * entry.spec.itemsize))
        for first in range(0, len(entry.chunks), chunks_per_piece):
            elements = min(per_chunk * chunks_per_piece, entry.numel - first * per_chunk)
            yield TensorEntry(entry.name, entry.spec, (elements,), entry.codec_config,
                              entry.chunks[first : first + chunks_per_piece])

    def decode_into(self, items: list[tuple[TensorEntry, np.ndarray]], *, verify_checksums: bool = True,
                    stored: list[bytes | memoryview] | None = None, targets: DecodedTargets | None = None) -> None:
        """Decode each entry straight into its ``out`` (C-contiguous, the entry's dtype
        and size), all in one native call so the thread pool sees every chunk. ``stored``:
        each entry's stored bytes, already read (``read_stored``). ``targets``: tensors
        decoded earlier in the caller's pass that others are coded against (and where this
        batch's such tensors are kept for later batches)."""
        if all(entry.delta is None for entry, _ in items):  # nothing to check against a base
            self._decode_batch_into(items, stored, verify_checksums, targets, {})
            return
        with contextlib.ExitStack() as stack:
            pins = self._verified_bases(items, stack)
            self._decode_batch_into(items, stored, verify_checksums, targets, pins)

    def check_base_pins(self, entries: Iterable[TensorEntry]) -> None:
        """Check the pin of every base tensor ``entries`` are coded against, before any is
        decoded: for outputs that cannot be taken back (a stream), where finding a wrong base
        halfway would leave the reader of the stream a partial file. Remembered pins make it
        free; otherwise it costs one hash of each base tensor, which decoding then reuses
        (the pins are remembered)."""
        deltas = [entry for entry in entries if entry.delta is not None]
        if not deltas:
            return
        base = self.base_checkpoint()
        for entry in deltas:
            if not base.pin_is_remembered(entry.delta):
                base.tensor_for(entry.delta, self.where, entry.name, self.base_name or "",
                                (entry.spec.name, entry.numel))

    def _verified_bases(self, items: list[tuple[TensorEntry, np.ndarray]], stack: contextlib.ExitStack
                        ) -> dict[int, Future[np.ndarray]]:
        """Base tensors (by their entry's place in ``items``) whose content hash (the pin) is
        checked on other threads while this batch decodes: those of a mapped base (a
        .safetensors or .pt: views, no decoding and no copy, so checking them all at once costs
        no memory) whose pin is not remembered. Empty for other bases, whose tensors are
        decoded and checked one at a time after the batch."""
        deltas = [(number, entry) for number, (entry, _) in enumerate(items) if entry.delta is not None]
        if not deltas:
            return {}
        base = self.base_checkpoint()  # a missing base fails before any work
        mapped = [(n, entry) for n, entry in deltas if base.location(entry.delta.base_tensor) is not None
                  and not base.pin_is_remembered(entry.delta)]  # else: a lookup
        if not mapped:
            return {}
        workers = min(len(mapped), self.threads or os.cpu_count() or 1)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tensorzip-pin"))
        return {n: pool.submit(base.tensor_for, entry.delta, self.where, entry.name, self.base_name or "",
                               (entry.spec.name, entry.numel)) for n, entry in mapped}

    def _base_to_restore_while_decoding(self, entry: TensorEntry, codec: Codec) -> np.ndarray | None:
        """The base tensor of a residual the codec can restore chunk by chunk as it decodes
        (saving a second pass over the tensor), when that tensor is mapped (a .safetensors or
        .pt base: a view, no decoding). Its pin is checked after the batch, before anything is
        returned; a base that fails it raises then, as it would before."""
        # Declared by the class itself, not inherited: a plugin subclass whose decode_batch
        # ignores DecodeJob.base must still get the reader's restore.
        if entry.delta is None or not type(codec).__dict__.get("restores_while_decoding", False):
            return None
        base = self.base_checkpoint()
        if base.location(entry.delta.base_tensor) is None:
            return None
        array = base.unpinned_tensor_for(entry.delta, self.where, entry.name, self.base_name or "",
                                         (entry.spec.name, entry.numel))
        return array if array.dtype == entry.spec.numpy_dtype and array.flags.c_contiguous else None

    def _decode_batch_into(self, items: list[tuple[TensorEntry, np.ndarray]], stored: list[Any] | None,
                           verify_checksums: bool, targets: DecodedTargets | None,
                           pins: dict[int, Future[np.ndarray]]) -> None:
        jobs: list[DecodeJob] = []
        job_entries: list[TensorEntry] = []  # whose chunks each job decodes (for error messages)
        group_chunks: dict[int, np.ndarray] = {}  # a group's chunk (by offset), decoded once for all its tensors
        if stored is None:
            stored = self.read_stored([entry for entry, _ in items])
        restored: set[str] = set()  # residuals the codec restores chunk by chunk while it decodes them
        for (entry, out), source in zip(items, stored, strict=True):
            if out.dtype != entry.spec.numpy_dtype or out.size != entry.numel or not out.flags.c_contiguous:
                raise TensorzipError(
                    f"{self.where}: output for tensor {entry.name!r} must be a C-contiguous "
                    f"{entry.spec.name} array of {entry.numel} elements"
                )
            codec = self.codec_of(entry)
            start = entry.data_offset
            if entry.packed is not None:
                self._group_chunk_jobs(entry, codec, source, group_chunks, jobs, job_entries)
                continue
            chunks = [ChunkRef(c.offset - start, c.length, c.crc32c) for c in entry.chunks]
            base_array = self._base_to_restore_while_decoding(entry, codec)
            if base_array is not None:
                restored.add(entry.name)
                jobs.append(DecodeJob(codec, source, chunks, out, entry.spec, base_array, entry.delta.mode))
            else:
                jobs.append(DecodeJob(codec, source, chunks, out, entry.spec))
            job_entries.append(entry)
        by_class: dict[type, list[int]] = {}
        for index, job in enumerate(jobs):
            by_class.setdefault(type(job.codec), []).append(index)
        for cls, indices in by_class.items():
            try:
                cls.decode_batch([jobs[i] for i in indices], self.threads, verify_checksums)
            except ChunkDecodeError as error:
                entry = job_entries[indices[error.job]]
                raise describe_chunk_error(error, entry, self.where) from None
        for entry, out in items:
            if entry.packed is not None:
                pieces = [group_chunks[c.offset] for c in entry.chunks]
                span = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                out.reshape(-1)[:] = span[entry.packed.skip : entry.packed.skip + entry.numel]
        for number, (entry, out) in enumerate(items):
            if entry.delta is not None:
                pinned = pins.get(number)
                base = pinned.result() if pinned is not None else self.base_checkpoint().tensor_for(
                    entry.delta, self.where, entry.name, self.base_name or "", like=(entry.spec.name, entry.numel))
                if base.size != out.size or base.dtype != out.dtype:
                    raise BaseMismatchError(f"{self.where}: tensor {entry.name!r}: base tensor "
                                            f"{entry.delta.base_tensor!r} has another dtype or shape")
                if entry.name not in restored:  # else: restored while decoding, its base now checked
                    restore(out, base, entry.delta.mode, entry.spec, self.threads)
        has_references = any(entry.reference is not None for entry, _ in items)
        if targets is None and not has_references:  # a lone tensor (tz.decompress, a Zarr chunk): done
            return
        whole = {entry.name: out for entry, out in items
                 if entry.reference is None and entry.name in self.header.tensors
                 and self.header.tensors[entry.name].chunks == entry.chunks}
        if targets is not None:
            uses_here = Counter(entry.reference.tensor for entry, _ in items if entry.reference is not None)
            for name, out in whole.items():
                targets.keep(name, out, uses_here=uses_here[name])
        if has_references:
            self._restore_references(items, whole, verify_checksums, targets)

    def _restore_references(self, items: list[tuple[TensorEntry, np.ndarray]], whole: dict[str, np.ndarray],
                            verify_checksums: bool, targets: DecodedTargets | None) -> None:
        """Undo the residual of each entry coded against another tensor of the file: that
        tensor is taken from this batch when it was decoded whole in it, or from the pass's
        ``targets``, else decoded here."""
        whole = dict(whole)
        for entry, out in items:
            if entry.reference is None:
                continue
            name = entry.reference.tensor
            source = whole.get(name)
            from_targets = False
            if source is None and targets is not None:
                source = targets.get(name)
                from_targets = source is not None
            if from_targets:
                restore(out, convert(source, entry.spec), entry.reference.mode, entry.spec, self.threads)
                if not targets.still_intact(name):  # written to by its owner meanwhile: all again from the file
                    self.decode_into([(entry, out)], verify_checksums=verify_checksums)
                targets.used(name)
                continue
            if source is None:
                target = self.header.tensors[name]  # the header checked it exists and has no reference
                self.check_fits_in_memory(target.nbytes + out.nbytes, f"tensor {entry.name!r} with the tensor "
                                          f"{name!r} it is coded against")
                source = np.empty(target.numel, dtype=target.spec.numpy_dtype)
                self.decode_into([(target, source)], verify_checksums=verify_checksums)
                whole[name] = source
                if targets is not None:
                    targets.keep(name, source)
            restore(out, convert(source, entry.spec), entry.reference.mode, entry.spec, self.threads)
            if targets is not None:
                targets.used(name)

    def _group_chunk_jobs(self, entry: TensorEntry, codec: Codec, source: bytes | memoryview,
                          decoded: dict[int, np.ndarray], jobs: list[DecodeJob],
                          job_entries: list[TensorEntry]) -> None:
        """Jobs decoding the chunks of its group that a packed tensor lies in, each into memory
        of its own (once per call, whichever tensors of the group ask for it)."""
        assert entry.packed is not None
        group = self.header.groups[entry.packed.group]
        first = entry.packed.element // group.chunk_elements
        for number, chunk in enumerate(entry.chunks, start=first):
            if chunk.offset in decoded:
                continue
            elements = min(group.chunk_elements, group.numel - number * group.chunk_elements)
            scratch = np.empty(elements, dtype=entry.spec.numpy_dtype)
            decoded[chunk.offset] = scratch
            at = chunk.offset - entry.data_offset
            jobs.append(DecodeJob(codec, source[at : at + chunk.length], [ChunkRef(0, chunk.length, chunk.crc32c)],
                                  scratch, entry.spec))
            job_entries.append(dataclasses.replace(entry, chunks=(chunk,)))  # errors name this chunk

    def use_base(self, base: str | os.PathLike[str]) -> None:
        """The base to decode against, chosen after the header was read (a compressed folder
        finds its shards' base beside itself); effective until a tensor has opened one."""
        with self._base_lock:
            if self._base is None:
                self._base_given = base

    @property
    def base_name(self) -> str | None:
        """The file name of the base this file is coded against, if any."""
        return self.header.base["file"] if self.header.base else None

    def base_files(self) -> list[Path]:
        """Every file decoding this one reads besides itself: its base and, down a chain, each
        base's base (none without a base). An output may replace none of them."""
        return self.base_checkpoint().files() if self.base_name else []

    def base_checkpoint(self) -> BaseCheckpoint:
        """The base, opened on first use (given, or found beside the file)."""
        with self._base_lock:  # threads reading at once open it once
            if self._base is None:
                recorded = self.base_name
                if recorded is None:
                    raise BaseRequiredError(f"{self.where}: the file names no base")
                path = locate_base(recorded, self._base_given, self._path, self.where, link=len(self._chain) > 1)
                self._base = open_base(path, threads=self.threads, chain=self._chain)
                self._owns_base = True
            return self._base

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_base and self._base is not None:
            self._base.close()
            self._base = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._remote is not None:
            self._remote.close()

    @property
    def bytes_transferred(self) -> int | None:
        """Bytes read from a URL so far (None for a local file or image)."""
        return self._remote.bytes_read if self._remote is not None else None

    def __enter__(self) -> TzipReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def batched_by_stored_bytes(entries: Iterable[TensorEntry], batch_bytes: int,
                            max_decoded: int | None = None) -> Iterator[list[TensorEntry]]:
    """Consecutive groups of entries holding about ``batch_bytes`` of stored data each (and,
    with ``max_decoded``, at most about that many decoded bytes: a file of constant chunks
    declares far more than it stores)."""
    batch: list[TensorEntry] = []
    stored = decoded = 0
    for entry in entries:
        if batch and max_decoded is not None and decoded + entry.nbytes > max_decoded:
            yield batch
            batch, stored, decoded = [], 0, 0
        batch.append(entry)
        stored += entry.own_stored_bytes  # a packed tensor: its share, not its group's chunks
        decoded += entry.nbytes
        if stored >= batch_bytes:
            yield batch
            batch, stored, decoded = [], 0, 0
    if batch:
        yield batch


class ReadBuffers:
    """A few reused buffers for stored bytes, one per batch in flight. Why: reading into
    memory touched before runs at about 4 GB/s here, into fresh pages at about 1.5 GB/s."""

    def __init__(self, slots: int) -> None:
        self._slots: list[np.ndarray] = [np.empty(0, dtype=np.uint8) for _ in range(slots)]

    def __len__(self) -> int:
        return len(self._slots)

    def take(self, slot: int, nbytes: int) -> memoryview:
        """``nbytes`` of slot ``slot``'s buffer (grown when short: earlier views keep the old one alive)."""
        if self._slots[slot].size < nbytes:
            self._slots[slot] = np.empty(nbytes, dtype=np.uint8)
        return memoryview(self._slots[slot])[:nbytes]


def _end(entry: TensorEntry) -> int:
    return entry.data_offset + entry.stored_bytes


def check_chunk_counts(header: Header, where: str, codecs: dict[int, tuple[dict[str, Any], Codec]] | None = None
                       ) -> None:
    """Each stored tensor of a built-in codec has the chunk count its shape needs. Checked
    when the file is opened, so that nothing is sized from a shape its chunks cannot fill
    (a few KB of chunks declaring gigabytes, within the expansion limit). Other codecs, and
    configs that do not parse, are checked when the tensor is read. ``codecs``: where the
    codecs built here are kept (``TzipReader.codec_of``)."""
    for entry in header.tensors.values():
        codec_id = entry.codec_config.get("id")
        if (entry.same_as is not None or entry.packed is not None or not isinstance(codec_id, str)
                or codec_id not in BUILTIN_CODECS):
            continue
        try:
            codec = codec_from_config(entry.codec_config)
        except TensorzipError:
            continue  # reported, naming the tensor, when it is read
        if codecs is not None:
            codecs[id(entry.codec_config)] = (entry.codec_config, codec)
        expected = codec.chunk_count(entry.numel)
        if expected is not None and expected != len(entry.chunks):
            raise CorruptDataError(
                f"{where}: tensor {entry.name!r} has {len(entry.chunks)} chunks, its shape {list(entry.shape)} "
                f"needs {expected} (chunks of {entry.codec_config.get('chunk_elements')} elements)"
            )


def codec_from_config_for(entry: TensorEntry, where: str) -> Codec:
    """The tensor's codec, with the file and tensor named if its config is bad."""
    try:
        return codec_from_config(entry.codec_config)
    except FormatError as error:  # UnknownCodecError and HeaderError
        raise type(error)(f"{where}: tensor {entry.name!r}: {error}") from None


def describe_chunk_error(error: ChunkDecodeError, entry: TensorEntry, where: str) -> ChunkDecodeError:
    chunk = entry.chunks[error.chunk] if error.chunk < len(entry.chunks) else None
    at = f" at offset {chunk.offset} ({chunk.length} bytes)" if chunk else ""
    return ChunkDecodeError(
        f"{where}: tensor {entry.name!r} chunk {error.chunk}{at}: {error.reason}", error.job, error.chunk
    )


def open_base(path: str | os.PathLike[str], *, threads: int | None = None,
              chain: tuple[tuple[int, int], ...] = ()) -> BaseCheckpoint:
    """The base checkpoint at ``path`` (.safetensors, a folder of shards, or a .tzip, itself
    perhaps coded against a base: each link opens the next through this same function)."""
    return BaseCheckpoint(path, open_tzip=TzipReader, threads=threads, chain=chain)
