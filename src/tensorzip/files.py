"""Whole checkpoint files: .safetensors -> .tzip -> the identical .safetensors.

These are what the CLI runs. They stream tensor by tensor (memory-mapped input,
batched coding, atomic output) and return reports with the figures a user asks
for: ratio, throughput, and the distance to the order-0 entropy bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import io
import os
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .codecs.bounded import BoundedCodec, Target, bounds_every_tensor, targets_per_tensor
from .codecs.policy import checked_level
from .container import TensorEntry, TensorStats, TzipReader, TzipWriter
from .container.bases import BaseCheckpoint
from .container.decoded_targets import DecodedTargets
from .container.header import FileEntry
from .container.kinds import Kind, open_data, refuse_layers, require
from .container.reader import DEFAULT_READ_BATCH_BYTES, batched_by_stored_bytes, open_base
from .container.records import (
    RESERVED_PREFIX,
    SAFETENSORS_SOURCE,
    SOURCE_DIGEST_KEY,
    TORCH_SOURCE,
    TORCH_ZIP_SOURCE,
    folder_layout,
    is_folder_source,
    restored_modes,
    source_format,
)
from .errors import (
    CorruptDataError,
    HeaderError,
    InputFileError,
    OutputFileError,
    TensorNotFoundError,
    TensorzipError,
)
from .inputs import CheckpointInput
from .inputs.dcp_file import DistcpFile, is_dcp_rank_file
from .inputs.digest import DigestSink, FileDigest
from .inputs.frameworks import to_numpy, to_torch
from .inputs.safetensors import SafetensorsFile, build_header, check_layout_matches, parse_header, write_prefix
from .inputs.shards import ShardedCheckpoint
from .inputs.torch_file import (
    STATE_DICT_KEY,
    TorchFile,
    import_torch,
    is_npz,
    is_torch_path,
    is_torch_zip,
    looks_like_torch_file,
    save_torch,
)
from .inputs.torch_zip import TorchZipCheckpoint, restore_plan
from .inputs.tree import PERMISSION_BITS, Tree
from .outputs.atomic import WriteBack, atomic_directory, atomic_output, refuse_output_over_inputs, same_file
from .outputs.memory_file import MemoryFile
from .writing.cluster import add_tensors_on_cluster, connect
from .writing.plan import add_tensors

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total)

WRITE_BATCH_BYTES = 16 * 1024 * 1024  # stored bytes decoded per batch when streaming to a file
# The same where one batch is written while the next decodes (``_write_tensors``): a quarter, so
# the two buffers in flight keep peak memory where one batch of WRITE_BATCH_BYTES had it
# (tests/test_bounded_memory.py: 87 MB above the interpreter against 86; 16 MiB batches 110).
PIPELINED_WRITE_BATCH_BYTES = 4 * 1024 * 1024
# ... and at most this many decoded bytes each: a file that stores little (a fine-tune against
# its base, sparse or constant tensors) still gets batches small enough to overlap.
PIPELINED_DECODED_BYTES = 16 * 1024 * 1024
# ... and tensors are cut into pieces of at most this many decoded bytes (whole chunks).
PIPELINED_PIECE_BYTES = 4 * 1024 * 1024
# Decoded bytes held at once when streaming, whatever a header declares: a tensor larger than
# this is decoded a run of chunks at a time (TzipReader.pieces).
WRITE_DECODED_BYTES = 64 * 1024 * 1024

PathOrStream = str | os.PathLike[str] | BinaryIO


class SizeAndSpeed:
    """The figures every compression report derives the same way (file, folder, layers)."""

    original_bytes: int
    compressed_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Input bytes per stored byte."""
        return self.original_bytes / max(1, self.compressed_bytes)

    @property
    def megabytes_per_second(self) -> float:
        return self.original_bytes / 1e6 / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class CompressionReport(SizeAndSpeed):
    source: str
    target: str
    original_bytes: int  # size of the input file
    compressed_bytes: int  # size of the output file, header included
    order0_bound_bytes: float  # per tensor, per byte plane, summed (see docs/format.md)
    seconds: float
    threads: int
    tensors: list[TensorStats] = field(default_factory=list)
    base: str | None = None  # the checkpoint the file is coded against
    dedup_saved_bytes: int = 0  # input bytes not stored again (tensors identical to an earlier one)
    base_savings: dict[str, int] = field(default_factory=dict)  # tensor -> bytes the base saved (estimated)
    base_not_used: str | None = None  # why a base given was not made a dependency
    level: str = "default"  # how hard lossless coding worked (codecs/policy.py LEVELS)

    @property
    def context_tensors(self) -> int:
        """Tensors the `max` level coded with the mantissa given the exponent (0: it changed nothing)."""
        return sum(t.context_planes for t in self.tensors)

    @property
    def base_saved_bytes(self) -> int:
        return sum(self.base_savings.values())

    @property
    def gap_to_bound(self) -> float:
        """Output size relative to the order-0 bound of the coded planes (0.004 = 0.4% above)."""
        return self.compressed_bytes / self.order0_bound_bytes - 1 if self.order0_bound_bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(ratio=self.ratio, megabytes_per_second=self.megabytes_per_second,
                   gap_to_bound=self.gap_to_bound, context_tensors=self.context_tensors)
        return doc


@dataclass(frozen=True)
class DecompressionReport:
    source: str
    target: str
    compressed_bytes: int
    output_bytes: int
    seconds: float
    threads: int

    @property
    def megabytes_per_second(self) -> float:
        return self.output_bytes / 1e6 / max(self.seconds, 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "megabytes_per_second": self.megabytes_per_second}


@dataclass(frozen=True)
class VerifyReport:
    source: str
    tensors: int
    tensor_bytes: int
    against: str | None
    seconds: float
    digest: str | None = None  # the recorded digest of the original, when the restore matched it
    bounded_tensors: int = 0  # stored within an error bound: compared within it, not bit for bit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _name(target: PathOrStream) -> str:
    return str(target) if isinstance(target, (str, os.PathLike)) else getattr(target, "name", "<stream>")


def _resolve_threads(threads: int | None) -> int:
    return threads if threads and threads > 0 else (os.cpu_count() or 1)


def compress_file(
    source: str | os.PathLike[str] | bytes | memoryview,
    target: PathOrStream,
    *,
    threads: int | None = None,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    base: str | os.PathLike[str] | None = None,
    scheduler: Any = None,
    digest: bool = False,
    max_abs_error: Target = None,
    max_rel_error: Target = None,
    level: str = "default",
) -> CompressionReport:
    """Compress a .safetensors file into .tzip, keeping what is needed to restore it byte for byte.

    ``level``: ``"default"`` (speed first) or ``"max"``: the top mantissa bits coded given the
    exponent where that is smaller, per chunk (about 0.5% smaller on BF16 weights, 0.2% on FP32;
    decoding at 0.6-1x the default level's speed). Lossless either way.

    With ``max_abs_error`` / ``max_rel_error`` (issue 21), every float tensor is stored within
    that error of the original on every element instead (relative: x each tensor's RMS; the
    error-bounded codec; per tensor: a mapping of names, or a ``TargetRules`` of glob patterns,
    where a tensor given no target is stored exactly), and decompressing gives a .safetensors of the same layout whose
    values are within it; ``verify_file(against=original)`` then checks the bound.

    ``source`` may also be a folder of safetensors shards (a Hugging Face
    checkpoint with its ``*.safetensors.index.json``): it becomes one .tzip, and
    tensors repeated across shards are stored once (``compress_folder`` makes a
    folder of one .tzip per shard instead). Or a PyTorch file (``.pt``, ``.pth``,
    ``.bin``) holding a flat dict of tensors, read with ``torch.load(weights_only=True)``:
    its tensors come back bit for bit, as .safetensors (or a torch file again).

    With ``base`` (a .safetensors or .tzip checkpoint, or a folder of either: the model this
    one was fine-tuned from, or the previous checkpoint of a training run), each tensor is
    coded against the base tensor of the same name when that is smaller. When the base saves
    under ``MIN_BASE_SAVING`` (1%) of the file, a path target is written plainly instead, so it
    does not depend on the base (``report.base_not_used`` says why). Tensors identical to an
    earlier tensor of the file are stored once.

    With ``scheduler`` (a Dask scheduler address such as ``"tcp://host:8786"``, or a
    ``distributed.Client``), the tensors are encoded on that cluster's workers, which read
    them from ``source`` themselves (they must see it at the same path), and the file is
    the same bytes as a local run's (``tensorzip.writing.cluster``); ``threads`` is then native
    threads per task (default 1). Needs the ``dask`` extra.

    With ``digest``, the BLAKE2b-256 of the source file is recorded, so ``verify_file``
    proves a restore identical without the original at hand (a .safetensors source).

    ``source`` may also be the bytes of a zip-format PyTorch file (what ``tensorzip.dcp``
    hands over for each item it writes).
    """
    started = time.perf_counter()
    checked_level(level)
    if isinstance(source, (bytes, memoryview)):
        if base is not None or scheduler is not None or digest or max_abs_error is not None or \
                max_rel_error is not None:
            raise TensorzipError("compressing bytes takes no base, scheduler, digest or error target")
        return compress_torch_bytes(source, target, threads=threads, overwrite=overwrite, progress=progress,
                                    level=level)
    bounds = targets_per_tensor(max_abs_error, max_rel_error)
    if level != "default" and bounds_every_tensor(max_abs_error, max_rel_error):
        raise TensorzipError(f"{source}: --level {level} codes the tensors stored exactly, and an error bound for "
                             "every float tensor (--max-abs-error / --max-rel-error E) leaves none: drop --level, or "
                             "give bounds per tensor (PATTERN=E) so the others are stored exactly")
    if bounds is not None and (base is not None or scheduler is not None or digest):
        raise TensorzipError("an error target (--max-abs-error / --max-rel-error) takes no base, scheduler or digest: "
                             "the file stores approximate values, which none of those can use")
    checkpoint = open_checkpoint(source)
    if bounds is not None and not isinstance(checkpoint, (SafetensorsFile, ShardedCheckpoint)):
        raise TensorzipError(f"{source}: error targets apply to .safetensors files and model folders; compress a "
                             "PyTorch file losslessly, or convert it to .safetensors first")
    if base is not None and isinstance(target, (str, os.PathLike)) and same_file(target, base):
        raise OutputFileError(f"{target}: would overwrite its own base; write the new file elsewhere")
    refuse_output_over_inputs(target, source)
    with contextlib.ExitStack() as stack:
        reference = stack.enter_context(open_base(base, threads=threads)) if base is not None else None
        if reference is not None:
            refuse_output_over_inputs(target, *reference.files())
        return _compress_paying_base(checkpoint, source, target, reference, threads, overwrite, progress, started,
                                     scheduler, digest, error_bound=bounds, level=level)


def compress_torch_bytes(data: bytes | memoryview, target: PathOrStream, *, threads: int | None = None,
                         overwrite: bool = True, progress: ProgressCallback | None = None,
                         saved_here: bool = False, level: str = "default") -> CompressionReport:
    """``compress_file`` of the bytes of a zip-format PyTorch file. ``saved_here``: they are
    what ``torch.save`` just wrote in this process (``tensorzip.dcp``'s items), so torch's
    weights-only load of them is skipped (see ``TorchZipCheckpoint``)."""
    started = time.perf_counter()
    checkpoint = TorchZipCheckpoint(data, saved_here=saved_here)
    try:
        return _compress(checkpoint, "<bytes>", target, None, threads, overwrite, progress, started, level=level)
    finally:
        checkpoint.close()


Checkpoint = CheckpointInput
# A base is made a dependency of a file only when coding against it saves at least this
# fraction of the file's plain size (estimated per tensor from samples, as the write plan
# decides): otherwise the file is written again, plainly. A base that saves ~700 bytes of
# 90 MB must not make a file unreadable without it.
MIN_BASE_SAVING = 0.01


COMPRESSIBLE = (Kind.SAFETENSORS, Kind.PYTORCH, Kind.MODEL_FOLDER, Kind.DCP_FOLDER)


def open_checkpoint(source: str | os.PathLike[str]) -> Checkpoint:
    """A folder of shards, a PyTorch file (by name, or by its first bytes), or a .safetensors file;
    any other kind (a .tzip already, a .npy) is refused naming the command that takes it."""
    found = require(source, "tensorzip compress", COMPRESSIBLE, unknown_ok=True)
    if found.kind is Kind.UNKNOWN and is_npz(source):  # a zip, but not torch.save's: say what it is
        raise found.refuse("tensorzip compress")
    if found.kind is Kind.DCP_FOLDER:
        raise InputFileError(f"{source}: a torch.distributed.checkpoint folder compresses to a folder, each rank file "
                             "a .tzip (tensorzip compress FOLDER, without --archive; tz.compress_folder in Python)")
    if os.path.isdir(source):
        return ShardedCheckpoint(source)
    if is_dcp_rank_file(source):
        return DistcpFile(source)
    if looks_like_torch_file(source):
        return TorchZipCheckpoint(source) if is_torch_zip(source) else TorchFile(source)
    return SafetensorsFile(source)


def source_tensors(source: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray]]:
    """The tensors of an input ``compress_file`` takes, by name."""
    return open_checkpoint(source).tensors()


def files_read_by(path: str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
    """Every file that reading ``path`` touches: itself and, for a .tzip coded against a
    base, each base down the chain (those that can be found). Outputs may replace none."""
    files: list[str | os.PathLike[str]] = [path]
    if os.path.isfile(path):
        with contextlib.suppress(TensorzipError, OSError), TzipReader(path) as reader:
            files += reader.base_files()
    return files


class _BaseNotWorthIt(Exception):
    """Raised inside the writer (so it drops what it wrote) when the base saved too little."""

    def __init__(self, saved: int, size: int):
        super().__init__(f"coding against the base saved ~{saved:,} bytes of {size + saved:,} "
                         f"(under {MIN_BASE_SAVING:.0%}), so the file is coded plainly and depends on no base")


def _compress_paying_base(checkpoint: Checkpoint, source: str | os.PathLike[str], target: PathOrStream,
                          base: BaseCheckpoint | None, *args: Any, **options: Any) -> CompressionReport:
    """``_compress``, except that a path target coded against a base that saves under
    ``MIN_BASE_SAVING`` is written again without it (a dependency must pay for itself)."""
    if base is None or not isinstance(target, (str, os.PathLike)):
        return _compress(checkpoint, source, target, base, *args, **options)
    try:
        return _compress(checkpoint, source, target, base, *args, min_base_saving=MIN_BASE_SAVING, **options)
    except _BaseNotWorthIt as note:
        report = _compress(checkpoint, source, target, None, *args, **options)
        return dataclasses.replace(report, base_not_used=f"{base.path}: {note}")


def _compress(checkpoint: Checkpoint, source: str | os.PathLike[str],
              target: PathOrStream, base: BaseCheckpoint | None, threads: int | None, overwrite: bool,
              progress: ProgressCallback | None, started: float, scheduler: Any = None,
              digest: bool = False, *, min_base_saving: float = 0.0,
              error_bound: Callable[[str, np.ndarray], float | None] | None = None,
              level: str = "default") -> CompressionReport:
    """``min_base_saving``: raise ``_BaseNotWorthIt`` (the writer drops its file) when the base
    saves under this fraction of the file's plain size. ``error_bound``: the write plan's (float
    tensors stored within it)."""
    others = checkpoint.other_files()
    if scheduler is not None and checkpoint.locations() is None:
        raise TensorzipError(f"{source}: a cluster run reads .safetensors files; convert the PyTorch file "
                             "first (tensorzip compress, then decompress to .safetensors)")
    if digest and checkpoint.source_record().get("format") not in (SAFETENSORS_SOURCE, TORCH_ZIP_SOURCE):
        raise TensorzipError(f"{source}: --digest records the digest of a file decompress restores byte for byte (a "
                             ".safetensors or a zip-format PyTorch file); compress this input without it")
    hashing = FileDigest(source) if digest else None
    total = checkpoint.tensor_bytes + (others.total if others is not None else 0)
    done = 0

    def advance(stats: TensorStats) -> None:
        nonlocal done
        done += stats.original_bytes
        checkpoint.release_tensor(stats.name)  # written: its input pages need not stay resident
        if progress is not None:
            progress(done, total)

    if isinstance(target, MemoryFile):
        target.reserve(target.tell() + checkpoint.size // 2)  # grows (without copying) if the output is larger
    writer = TzipWriter(
        target,
        metadata=checkpoint.metadata,
        source=checkpoint.source_record(),
        threads=threads,
        overwrite=overwrite,
        on_tensor=advance,
        base={"file": base.name} if base is not None else None,
        level=level,
    )
    with writer:
        if scheduler is None:
            planner = add_tensors(writer, checkpoint.tensors(), base, error_bound)
        else:  # the same decisions, encoded on a Dask cluster (an optional extra)

            with connect(scheduler) as client:
                planner, threads = add_tensors_on_cluster(writer, checkpoint, base, client, threads=threads)
        if min_base_saving > 0 and planner.base_savings:  # none used: the writer drops the base itself
            writer.flush()
            if planner.base_saved_bytes < min_base_saving * (writer.bytes_written + planner.base_saved_bytes):
                raise _BaseNotWorthIt(planner.base_saved_bytes, writer.bytes_written)
        if others is not None:
            done = _add_files(writer, others, done, total, progress)
        if hashing is not None:
            writer.add_metadata(SOURCE_DIGEST_KEY, hashing.result())
    size = writer.close()
    return CompressionReport(
        source=str(source),
        target=_name(target),
        original_bytes=checkpoint.size + (others.total if others is not None else 0),
        compressed_bytes=size,
        order0_bound_bytes=sum(s.order0_bound_bytes for s in writer.stats) + writer.files_order0_bound_bytes,
        seconds=time.perf_counter() - started,
        threads=_resolve_threads(threads),
        tensors=writer.stats,
        base=None if base is None or not writer.uses_base else str(base.path),
        dedup_saved_bytes=planner.dedup.saved_bytes,
        base_savings=planner.base_savings if writer.uses_base else {},
        level=writer.level,
    )


def _add_files(writer: TzipWriter, tree: Tree, done: int, total: int, progress: ProgressCallback | None) -> int:
    """A folder's other files into its archive (memory-mapped, so a large file is not read
    into memory), then its empty folders; returns the progress count."""
    for item in tree.files:
        path = tree.root / item.path
        try:
            data = np.memmap(path, dtype=np.uint8, mode="r") if item.size else np.empty(0, np.uint8)
        except OSError as error:
            raise InputFileError(f"{path}: cannot read ({error.strerror or error})") from None
        if data.size != item.size:
            raise InputFileError(f"{path}: changed size while the folder was compressed")
        writer.add_file(item.path, data, item.mode)
        done += item.size
        if progress is not None:
            progress(done, total)
    for folder, mode in tree.folders:
        writer.add_folder(folder, mode)
    return done


def _checked_prefix(text: str, entries: list[TensorEntry], where: str) -> bytes:
    """A recorded safetensors header, checked against the tensors it is to describe."""
    raw = text.encode("utf-8")
    original, _ = parse_header(raw, f"{where} (stored safetensors header)", sum(e.nbytes for e in entries))
    check_layout_matches(original, [e.name for e in entries], where)
    for before, stored in zip(original, entries, strict=True):
        if before.spec != stored.spec or before.shape != stored.shape:
            raise TensorzipError(f"{where}: tensor {stored.name!r} differs from the stored safetensors header")
    return raw


def _safetensors_prefix(reader: TzipReader) -> bytes:
    """The original safetensors header when the file recorded one, else a fresh one."""
    source = reader.header.source
    entries = list(reader.header.tensors.values())
    if is_folder_source(source):
        raise TensorzipError(f"{reader.where}: holds a folder of safetensors shards; decompress it to a folder path")
    if source and source.get("format") == "safetensors" and isinstance(source.get("header"), str):
        return _checked_prefix(source["header"], entries, reader.where)
    return build_header(((e.name, e.spec, e.shape) for e in entries), reader.metadata())


def _folder_files(reader: TzipReader) -> tuple[list[tuple[str, bytes, list[TensorEntry]]], tuple[str, str] | None]:
    """Each shard of a folder archive: (file name, its safetensors header, its tensors)."""
    entries = list(reader.header.tensors.values())
    shards, index = folder_layout(reader.header.source or {}, len(entries), reader.where)
    files = []
    position = 0
    for name, text, count in shards:
        part = entries[position : position + count]
        position += count
        files.append((name, _checked_prefix(text, part, f"{reader.where} ({name})"), part))
    return files, index


def _counter(total: int, progress: ProgressCallback | None) -> Callable[[int], None]:
    done = 0

    def add(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        if progress is not None:
            progress(done, total)

    return add


def _write_folder(reader: TzipReader, target: str | os.PathLike[str], overwrite: bool,
                  progress: ProgressCallback | None) -> int:
    """Rebuild a checkpoint folder (every shard, the index and every other file), atomically."""
    files, index = _folder_files(reader)
    kept = list(reader.header.files.values())
    advance = _counter(sum(e.nbytes for _, _, part in files for e in part) + sum(f.size for f in kept), progress)
    written = 0
    with atomic_directory(target, overwrite=overwrite) as folder:
        for name, prefix, part in files:
            with open(folder / name, "xb") as handle:
                written += _write_tensors(reader, part, prefix, handle, advance)
        if index is not None:
            data = index[1].encode("utf-8")
            (folder / index[0]).write_bytes(data)
            written += len(data)
        written += _write_kept_files(reader, kept, folder, advance)
        for name, mode in restored_modes(reader.header.source or {}).items():
            os.chmod(folder / name, mode)
    return written


def _write_kept_files(reader: TzipReader, kept: list[FileEntry], folder: Path, advance: Callable[[int], None]) -> int:
    """An archive's other files and empty folders, then their permission bits (folders last,
    deepest first, so a read-only folder is filled before it is closed)."""
    stored = [f for f in kept if f.data is not None]
    written = 0
    for batch in batched_by_stored_bytes([f.data for f in stored if f.data is not None], DEFAULT_READ_BATCH_BYTES):
        outs = [np.empty(entry.numel, np.uint8) for entry in batch]
        reader.decode_into(list(zip(batch, outs, strict=True)))
        for entry, out in zip(batch, outs, strict=True):
            path = folder / entry.name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as handle:
                handle.write(memoryview(out))
            written += out.nbytes
            advance(out.nbytes)
    for item in kept:
        if item.data is None:
            (folder / item.path).mkdir(parents=True, exist_ok=True)
    for item in stored:
        os.chmod(folder / item.path, item.mode)
    for item in sorted((f for f in kept if f.data is None), key=lambda f: -f.path.count("/")):
        os.chmod(folder / item.path, item.mode)
    return written


def decompress_file(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    target: PathOrStream,
    *,
    threads: int | None = None,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    base: str | os.PathLike[str] | None = None,
) -> DecompressionReport:
    """Restore the .safetensors file a .tzip was made from (bit-identical).

    A file coded against a base needs it: ``base``, or the file its header names,
    found beside ``source`` (and so on down a chain of .tzip bases).

    A ``target`` path named ``.pt``, ``.pth`` or ``.bin`` gets a PyTorch file
    (``torch.save`` of the state dict; tensors bit-exact). A .tzip made from a
    PyTorch file restores to .safetensors otherwise: the pickle itself is not kept.
    """
    started = time.perf_counter()
    with open_data(source, "tz.decompress_file", threads=threads, base=base) as reader:
        entries = list(reader.header.tensors.values())
        refuse_output_over_inputs(target, source, *reader.base_files(), folder=is_folder_source(reader.header.source))
        if is_folder_source(reader.header.source) and isinstance(target, (str, os.PathLike)):
            written = _write_folder(reader, target, overwrite, progress)
        elif source_format(reader.header.source) == TORCH_ZIP_SOURCE and not _wants_safetensors(reader, target):
            written = _write_torch_zip(reader, target, overwrite, progress)
        elif source_format(reader.header.source) == TORCH_ZIP_SOURCE and (reader.header.source or {}).get("views"):
            written = _write_state_dict_views(reader, target, overwrite, progress)  # type: ignore[arg-type]
        elif isinstance(target, (str, os.PathLike)) and is_torch_path(target):
            written = _write_torch(reader, target, overwrite, progress)
        elif isinstance(target, (str, os.PathLike)):
            header = _safetensors_prefix(reader)
            with atomic_output(target, overwrite=overwrite) as handle:
                written = _write_tensors(reader, entries, header, handle, _counter(_nbytes(entries), progress))
        elif isinstance(target, (io.BytesIO, MemoryFile)):
            written = _decode_in_place(reader, _safetensors_prefix(reader), target, progress)
        else:
            header = _safetensors_prefix(reader)
            reader.check_base_pins(entries)  # a stream cannot be taken back: refuse a wrong base first
            written = _write_tensors(reader, entries, header, target, _counter(_nbytes(entries), progress))
        return DecompressionReport(
            source=reader.where, target=_name(target), compressed_bytes=reader.size,
            output_bytes=written, seconds=time.perf_counter() - started, threads=_resolve_threads(threads),
        )


def extract_file(
    source: str | os.PathLike[str],
    target: PathOrStream,
    patterns: Iterable[str],
    *,
    threads: int | None = None,
    overwrite: bool = True,
    base: str | os.PathLike[str] | None = None,
) -> DecompressionReport:
    """Write only the tensors whose names match one of ``patterns`` (shell globs: ``*``,
    ``?``, ``[...]``) as a new .safetensors file, in storage order, decoding nothing else.
    The user's metadata is kept; tensorzip's reserved keys are not (they describe the whole).
    ``target``: a path (written atomically) or a binary stream (standard output)."""
    started = time.perf_counter()
    patterns = list(patterns)
    with open_data(source, "tensorzip decompress --tensor", threads=threads, base=base) as reader:
        chosen = [e for e in reader.header.tensors.values()
                  if any(fnmatch.fnmatchcase(e.name, pattern) for pattern in patterns)]
        if not chosen:
            raise TensorNotFoundError(f"{reader.where}: no tensor matches {', '.join(map(repr, patterns))} "
                                      "(tensorzip info lists them)")
        refuse_output_over_inputs(target, source, *reader.base_files())
        metadata = {k: v for k, v in (reader.metadata() or {}).items() if not k.startswith(RESERVED_PREFIX)}
        header = build_header(((e.name, e.spec, e.shape) for e in chosen), metadata)
        if isinstance(target, (str, os.PathLike)):
            with atomic_output(target, overwrite=overwrite) as handle:
                written = _write_tensors(reader, chosen, header, handle, lambda _: None)
        else:
            reader.check_base_pins(chosen)  # a stream cannot be taken back: refuse a wrong base first
            written = _write_tensors(reader, chosen, header, target, lambda _: None)
        return DecompressionReport(source=reader.where, target=_name(target), compressed_bytes=reader.size,
                                   output_bytes=written, seconds=time.perf_counter() - started,
                                   threads=_resolve_threads(threads))


def torch_wrapper(reader: TzipReader) -> str | None:
    """The key the original torch file held its state dict under, if any (``"state_dict"``)."""
    source = reader.header.source
    if not (source and source.get("format") == TORCH_SOURCE) or source.get("wrapper") is None:
        return None
    if source["wrapper"] != STATE_DICT_KEY:
        raise HeaderError(f"{reader.where}: torch source record has an unknown wrapper {source['wrapper']!r}")
    return STATE_DICT_KEY


def _write_torch(reader: TzipReader, target: str | os.PathLike[str], overwrite: bool,
                 progress: ProgressCallback | None) -> int:
    """A PyTorch file of every tensor (torch.save), atomically."""
    import_torch(f"writing {target}")
    wrapper = torch_wrapper(reader)
    advance = _counter(_nbytes(list(reader.header.tensors.values())), progress)
    tensors = {}
    for name, array in reader.iter_tensors():
        tensors[name] = to_torch(array)
        advance(array.nbytes)
    with atomic_output(target, overwrite=overwrite) as handle:
        save_torch(tensors, handle, wrapper)
        handle.flush()
        return os.fstat(handle.fileno()).st_size


def _wants_safetensors(reader: TzipReader, target: PathOrStream) -> bool:
    """Whether a .tzip of a torch.save zip is to be written as .safetensors (a target named
    so) rather than as the original file, byte for byte (any other target). Only a plain
    state dict makes one; anything else is refused before anything is written."""
    if not isinstance(target, (str, os.PathLike)) or Path(target).suffix.lower() != ".safetensors":
        return False
    if not (reader.header.source or {}).get("flat"):
        original = (reader.header.source or {}).get("file", "checkpoint.pt")
        raise OutputFileError(f"{target}: {reader.where} holds a PyTorch checkpoint ({original}) that is not a plain "
                              "state dict (nested dicts, optimizer state, views or shared storages), so it has no "
                              f"safetensors form; decompress it to {original} (any name not ending .safetensors), "
                              "restored byte for byte")
    return True


def _state_dict_views(reader: TzipReader) -> list[tuple[str, TensorEntry, int, tuple[int, ...], tuple[int, ...]]]:
    """A flat torch.save state dict's views that are not stored tensors themselves (tied
    weights, transposes, slices), each checked to lie inside the tensor it views."""
    found = []
    for view in (reader.header.source or {}).get("views") or []:
        ok = isinstance(view, list) and len(view) == 5 and isinstance(view[0], str) and view[1] in reader
        if ok:
            name, stored, offset, shape, stride = view
            entry = reader.entry(stored)
            ok = (isinstance(offset, int) and offset >= 0 and isinstance(shape, list) and isinstance(stride, list)
                  and len(shape) == len(stride) and all(isinstance(v, int) and v >= 0 for v in shape + stride))
            if ok and all(shape):
                ok = offset + sum((size - 1) * step for size, step in zip(shape, stride, strict=True)) < entry.numel
        if not ok:
            raise HeaderError(f"{reader.where}: the torch-zip source record lists a view {str(view)[:100]} that does "
                              "not lie inside a stored tensor")
        found.append((name, entry, offset, tuple(shape), tuple(stride)))
    return found


def _write_state_dict_views(reader: TzipReader, target: str | os.PathLike[str], overwrite: bool,
                            progress: ProgressCallback | None) -> int:
    """A flat state dict with views or shared storages as .safetensors: the stored tensors,
    then each other view as its own copy (safetensors shares nothing)."""
    entries = list(reader.header.tensors.values())
    views = _state_dict_views(reader)
    header = build_header([(e.name, e.spec, e.shape) for e in entries]
                          + [(name, entry.spec, shape) for name, entry, _, shape, _ in views], reader.metadata())
    with atomic_output(target, overwrite=overwrite) as handle:
        written = _write_tensors(reader, entries, header, handle, _counter(_nbytes(entries), progress))
        for _, entry, offset, shape, stride in views:
            whole = reader.get_tensor(entry.name).reshape(-1)
            view = np.lib.stride_tricks.as_strided(whole[offset:], shape, [s * whole.itemsize for s in stride])
            data = np.ascontiguousarray(view)
            handle.write(memoryview(data.reshape(-1).view(np.uint8)))
            written += data.nbytes
    return written


def _write_torch_zip(reader: TzipReader, target: PathOrStream, overwrite: bool,
                     progress: ProgressCallback | None) -> int:
    """The torch.save zip a .tzip was made from, byte for byte: its skeleton with each
    storage's decoded bytes put back where they were, streamed in bounded memory."""
    entries = list(reader.header.tensors.values())
    skeleton, gaps = restore_plan(reader.header.source or {}, [(e.name, e.nbytes) for e in entries], reader.where)
    advance = _counter(_nbytes(entries), progress)
    # Each piece (a run of chunks, bounded in decoded size) with the skeleton bytes written before
    # it: its tensor's gap for a tensor's first piece, none for the others.
    pieces, gap_before = [], {}
    for entry, gap in zip(entries, gaps, strict=True):
        for index, piece in enumerate(reader.pieces(entry, WRITE_DECODED_BYTES)):
            pieces.append(piece)
            gap_before[id(piece)] = gap if index == 0 else 0

    def write(handle: BinaryIO) -> int:
        used = 0
        scratch = np.empty(0, dtype=np.uint8)
        # scratch is reused
        targets = DecodedTargets(entries, private_copies=True, budget_bytes=reader.targets_budget())
        for batch in batched_by_stored_bytes(pieces, WRITE_BATCH_BYTES, WRITE_DECODED_BYTES):
            size = sum(e.nbytes for e in batch)
            if scratch.size < size:
                scratch = np.empty(size, dtype=np.uint8)
            _decode_batch_into(reader, batch, scratch, 0, targets)
            position = 0
            for piece in batch:
                gap = gap_before[id(piece)]
                handle.write(skeleton[used : used + gap])
                used += gap
                handle.write(memoryview(scratch[position : position + piece.nbytes]))
                position += piece.nbytes
            advance(size)
        handle.write(skeleton[used:])
        return len(skeleton) + _nbytes(entries)

    if isinstance(target, (str, os.PathLike)):
        with atomic_output(target, overwrite=overwrite) as handle:
            return write(handle)
    return write(target)


def _decode_batch_into(reader: TzipReader, batch: list[TensorEntry], buffer: np.ndarray, position: int,
                       targets: DecodedTargets, stored: list[bytes | memoryview] | None = None) -> int:
    """Decode a batch of tensors back to back into ``buffer`` (uint8) from ``position``;
    returns the bytes written. This is how the tensors lie in a safetensors file.
    ``targets``: the pass's tensors that others are coded against (see DecodedTargets)."""
    items = []
    for entry in batch:
        items.append((entry, buffer[position : position + entry.nbytes].view(entry.spec.numpy_dtype)))
        position += entry.nbytes
    reader.decode_into(items, targets=targets, stored=stored)
    return sum(e.nbytes for e in batch)


def _nbytes(entries: list[TensorEntry]) -> int:
    return sum(e.nbytes for e in entries)


def _write_tensors(reader: TzipReader, entries: list[TensorEntry], header: bytes, handle: BinaryIO,
                   advance: Callable[[int], None]) -> int:
    """Stream a restored safetensors file: prefix, then ``entries`` in storage order,
    decoded a batch at a time into two reused buffers (fresh memory is slow to touch):
    one batch is written by a thread while the next decodes, so a disk costs its write
    time, not write time plus decode time."""
    write_prefix(handle, header)
    done = 0
    buffers = [np.empty(0, dtype=np.uint8), np.empty(0, dtype=np.uint8)]
    writing: deque[Future[int]] = deque()  # in order; the oldest uses the buffer decoded into next
    # Tensors in pieces of the batch size, so that every batch is about as long as the others and
    # reading, decoding and writing overlap all along (one 47 MB embedding in one piece left the
    # writer and the reader idle while it decoded: MiniLM FP32 to tmpfs, 1 thread, 102 ms).
    # A tensor others are coded against stays whole, so it is decoded once for all of them.
    referenced = {entry.reference.tensor for entry in entries if entry.reference is not None}
    pieces = (piece for entry in entries for piece in reader.pieces(
        entry, WRITE_DECODED_BYTES if entry.name in referenced else PIPELINED_PIECE_BYTES))
    # the buffers are reused
    targets = DecodedTargets(entries, private_copies=True, budget_bytes=reader.targets_budget())
    writeback = WriteBack(handle)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensorzip-write") as writer:
        batches = list(batched_by_stored_bytes(pieces, PIPELINED_WRITE_BATCH_BYTES, PIPELINED_DECODED_BYTES))
        for index, (batch, stored) in enumerate(reader.read_ahead(batches)):
            if len(writing) == len(buffers):
                advance(writing.popleft().result())  # its buffer is free (or its write error is raised here)
            slot = index % len(buffers)
            size = sum(e.nbytes for e in batch)
            if buffers[slot].size < size:
                buffers[slot] = np.empty(size, dtype=np.uint8)
            _decode_batch_into(reader, batch, buffers[slot], 0, targets, stored)
            del stored
            writing.append(writer.submit(_write_out, handle, memoryview(buffers[slot][:size]), writeback))
            done += size
        while writing:
            advance(writing.popleft().result())
    return 8 + len(header) + done


def _write_out(handle: BinaryIO, data: memoryview, writeback: WriteBack) -> int:
    handle.write(data)
    writeback.written(data.nbytes)  # the device writes this batch while the next ones decode
    return data.nbytes


def _decode_in_place(reader: TzipReader, header: bytes, target: io.BytesIO | MemoryFile,
                     progress: ProgressCallback | None) -> int:
    """Size the in-memory file once and decode every tensor straight into it: no copy."""
    entries = list(reader.header.tensors.values())
    total = sum(e.nbytes for e in entries)
    start = target.tell()
    size = 8 + len(header) + total
    if isinstance(target, MemoryFile):
        target.truncate_to(start + size)
    else:
        target.seek(start + size - 1)
        target.write(b"\0")
        target.seek(start)
    write_prefix(target, header)
    position = start + 8 + len(header)
    done = 0
    view = target.writable_view() if isinstance(target, MemoryFile) else target.getbuffer()
    try:
        file_bytes = np.frombuffer(view, dtype=np.uint8)
        # each tensor stays where it was decoded
        targets = DecodedTargets(entries, private_copies=False, budget_bytes=reader.targets_budget())
        for batch in batched_by_stored_bytes(entries, DEFAULT_READ_BATCH_BYTES):
            written = _decode_batch_into(reader, batch, file_bytes, position, targets)
            position += written
            done += written
            if progress is not None:
                progress(done, total)
        del file_bytes
    finally:
        view.release()
    target.seek(start + size)
    return size


def verify_file(
    source: str | os.PathLike[str],
    *,
    against: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    base: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Decode every tensor (checking every checksum); with ``against``, compare with
    the original .safetensors (or checkpoint folder) bit for bit, headers included."""
    started = time.perf_counter()
    if against is not None:  # by kind first: a FIFO or device is refused, never opened (it would block)
        require(against, "tensorzip verify --against", (Kind.SAFETENSORS, Kind.PYTORCH, Kind.MODEL_FOLDER))
    with TzipReader(source, threads=threads, base=base) as reader:
        if reader.base_name:  # verify hashes every base tensor: it never trusts remembered pins
            reader.base_checkpoint().remember_pins = False
        if against is not None:  # a lossy layer's stored parts are checked, but never compared with data
            refuse_layers(reader, "verify --against")
        recorded = (reader.metadata() or {}).get(SOURCE_DIGEST_KEY)
        if recorded is not None and against is None:
            return _verify_digest(reader, recorded, threads, progress, started)
        if against is not None and source_format(reader.header.source) == TORCH_ZIP_SOURCE and os.path.isfile(against):
            return _verify_torch_zip(reader, against, progress, started)
        originals = _originals(reader, against) if against is not None else {}
        total = sum(e.nbytes for e in reader.header.tensors.values())
        done = 0
        count = 0
        scratch = np.empty(0, dtype=np.uint8)
        # Runs of chunks of every tensor, batched across tensors (many small tensors decode
        # in one call) and bounded in decoded size (whatever a header declares).
        where_from: dict[int, int] = {}  # id(piece) -> its byte offset in its tensor
        pieces = []
        for entry in reader.header.tensors.values():
            offset = 0
            for piece in reader.pieces(entry, WRITE_DECODED_BYTES):
                where_from[id(piece)] = offset
                offset += piece.nbytes
                pieces.append(piece)
        # scratch is reused
        targets = DecodedTargets(pieces, private_copies=True, budget_bytes=reader.targets_budget())
        for batch in batched_by_stored_bytes(pieces, WRITE_BATCH_BYTES, WRITE_DECODED_BYTES):
            size = _nbytes(batch)
            if scratch.size < size:
                scratch = np.empty(size, dtype=np.uint8)
            _decode_batch_into(reader, batch, scratch, 0, targets)
            position = 0
            for piece in batch:
                if against is not None:
                    original = np.ascontiguousarray(originals[piece.name]()).reshape(-1).view(np.uint8)
                    start = where_from[id(piece)]
                    _compare(reader, piece, original[start : start + piece.nbytes],
                             scratch[position : position + piece.nbytes], against)
                position += piece.nbytes
                count += where_from[id(piece)] == 0
            done += size
            if progress is not None:
                progress(done, total)
        _verify_kept_files(reader, against)
        bounded_count = sum(e.codec_config.get("id") == BoundedCodec.codec_id for e in reader.header.tensors.values())
        return VerifyReport(reader.where, count, done, None if against is None else str(against),
                            time.perf_counter() - started, bounded_tensors=bounded_count)


def _compare(reader: TzipReader, entry: TensorEntry, original: np.ndarray, decoded: np.ndarray,
             against: str | os.PathLike[str]) -> None:
    """A decoded piece against the original's bytes: equal, or for a tensor stored within an
    error bound (a lossy codec), every element within that bound."""
    bound = entry.codec_config.get("max_abs_error") if entry.codec_config.get("id") == BoundedCodec.codec_id else None
    if bound is None:
        if not np.array_equal(original, decoded):
            raise CorruptDataError(f"{reader.where}: tensor {entry.name!r} differs from {against}")
        return
    dtype = entry.spec.numpy_dtype
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(decoded.view(dtype).astype(np.float64) - original.view(dtype).astype(np.float64))
    if not (error.size == 0 or float(error.max()) <= bound):
        raise CorruptDataError(f"{reader.where}: tensor {entry.name!r} is not within its stated error bound {bound:g} "
                               f"of {against} (off by up to {float(np.nanmax(error)):g})")


def _verify_kept_files(reader: TzipReader, against: str | os.PathLike[str] | None) -> None:
    """Decode an archive's other files (checking every chunk); with ``against`` (the original
    folder), compare each byte for byte, and the lists of files and empty folders."""
    kept = reader.header.files
    original = ShardedCheckpoint(against).other_files() if against is not None and os.path.isdir(against) else None
    if original is not None:
        expected = {f.path for f in original.files} | {path + "/" for path, _ in original.folders}
        stored = {f.path + ("/" if f.data is None else "") for f in kept.values()}
        if expected != stored:
            odd = sorted(expected ^ stored)[:3]
            raise CorruptDataError(f"{reader.where}: its files are not those of {against} ({', '.join(odd)})")
        recorded = {f.path: f.mode for f in kept.values()} | restored_modes(reader.header.source or {})
        for path, mode in recorded.items():  # permission bits too: "identical" means the folder a user gets
            actual = stat.S_IMODE(os.stat(Path(against, path)).st_mode) & PERMISSION_BITS  # type: ignore[arg-type]
            if mode != actual:
                raise CorruptDataError(f"{reader.where}: {path} has mode {mode:o}, in {against} {actual:o}")
    entries = [f.data for f in kept.values() if f.data is not None]
    for batch in batched_by_stored_bytes(entries, DEFAULT_READ_BATCH_BYTES):
        outs = [np.empty(entry.numel, np.uint8) for entry in batch]
        reader.decode_into(list(zip(batch, outs, strict=True)))
        for entry, out in zip(batch, outs, strict=True):
            if original is not None and Path(against, entry.name).read_bytes() != out.tobytes():  # type: ignore[arg-type]
                raise CorruptDataError(f"{reader.where}: archived file {entry.name} differs from {against}")


def _verify_torch_zip(reader: TzipReader, against: str | os.PathLike[str], progress: ProgressCallback | None,
                      started: float) -> VerifyReport:
    """Restore a torch.save zip into a sink that compares every byte with the original file."""
    with open(against, "rb") as original:
        sink = _ComparingSink(original, reader.where, str(against))
        written = _write_torch_zip(reader, sink, True, progress)
        if original.read(1):
            raise CorruptDataError(f"{reader.where}: restores {written:,} bytes; {against} is longer")
    entries = list(reader.header.tensors.values())
    return VerifyReport(reader.where, len(entries), _nbytes(entries), str(against), time.perf_counter() - started)


class _ComparingSink:
    """A write target that checks what is written against a file, byte for byte."""

    def __init__(self, original: BinaryIO, where: str, against: str):
        self._original = original
        self._where = where
        self._against = against
        self._position = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        expected = self._original.read(len(view))
        if expected != view:
            common = min(len(expected), len(view))
            differ = np.flatnonzero(np.frombuffer(expected, np.uint8, common) != np.frombuffer(view, np.uint8, common))
            at = self._position + (int(differ[0]) if differ.size else common)
            raise CorruptDataError(f"{self._where}: the restored file differs from {self._against} at byte {at:,}")
        self._position += len(view)
        return len(view)

    def flush(self) -> None:
        pass


def _verify_digest(reader: TzipReader, recorded: str, threads: int | None, progress: ProgressCallback | None,
                   started: float) -> VerifyReport:
    """Restore the original into a hashing sink (every chunk checked on the way) and compare
    with the digest recorded at compression."""
    sink = DigestSink()
    entries = list(reader.header.tensors.values())
    if source_format(reader.header.source) == TORCH_ZIP_SOURCE:
        _write_torch_zip(reader, sink, True, progress)
    else:
        _write_tensors(reader, entries, _safetensors_prefix(reader), sink, _counter(_nbytes(entries), progress))
    if sink.value() != recorded:
        raise CorruptDataError(f"{reader.where}: the restored file's digest {sink.value()} differs from the one "
                               f"recorded at compression ({recorded})")
    return VerifyReport(reader.where, len(entries), _nbytes(entries), None, time.perf_counter() - started, recorded)


def _originals(reader: TzipReader, against: str | os.PathLike[str]) -> dict[str, Callable[[], np.ndarray]]:
    """The original of every stored tensor, after checking the headers (and index) match;
    for a PyTorch file, the tensor names."""
    if not os.path.isdir(against) and looks_like_torch_file(against):
        original = TorchFile(against)
        if set(original.state) != set(reader.keys()):
            raise CorruptDataError(f"{reader.where}: its tensors are not those of {against}")
        return {name: functools.partial(to_numpy, tensor) for name, tensor in original.state.items()}
    if os.path.isdir(against):
        if not is_folder_source(reader.header.source):
            raise CorruptDataError(f"{reader.where}: holds one safetensors file, not the folder {against}")
        folder = ShardedCheckpoint(against)
        files, index = _folder_files(reader)
        if [name for name, _, _ in files] != [name for name, _ in folder.shards]:
            raise CorruptDataError(f"{reader.where}: its shards are not the .safetensors files of {against}")
        for (name, prefix, _), (_, shard) in zip(files, folder.shards, strict=True):
            if prefix.decode("utf-8", errors="replace") != shard.header_text:
                raise CorruptDataError(f"{reader.where}: safetensors header of {name} differs from {against}")
        if index != folder.index:
            raise CorruptDataError(f"{reader.where}: the index file differs from {against}")
        shards = [shard for _, shard in folder.shards]
    else:
        shard = SafetensorsFile(against)
        if _safetensors_prefix(reader).decode("utf-8", errors="replace") != shard.header_text:
            raise CorruptDataError(f"{reader.where}: safetensors header differs from {against}")
        shards = [shard]
    return {e.name: functools.partial(shard.array, e) for shard in shards for e in shard.entries}


def _compress_one(source: str, target: str, threads: int, overwrite: bool) -> CompressionReport:
    return compress_file(source, target, threads=threads, overwrite=overwrite)


def compress_files_on_cluster(pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]], scheduler: Any, *,
                   threads: int | None = None, overwrite: bool = True) -> list[CompressionReport]:
    """Compress whole checkpoints, one task per (source, target) pair: each worker runs
    ``compress_file`` and writes its target itself (atomically), so the workers must be able
    to read the sources and write the targets at these paths (a shared filesystem). Each file
    is the same bytes as a local ``compress_file`` makes; each uses ``threads`` native threads
    (default 1). Returns the reports in the order given; the first failure cancels the rest
    (files already written stay, each whole)."""
    jobs = [(os.path.abspath(source), os.path.abspath(target)) for source, target in pairs]
    run = uuid.uuid4().hex[:12]
    with connect(scheduler) as client:
        futures = [client.submit(_compress_one, source, target, threads or 1, overwrite, pure=False,
                                 key=f"tensorzip-file-{run}-{number}")
                   for number, (source, target) in enumerate(jobs)]
        try:
            reports = []
            for (source, _), future in zip(jobs, futures, strict=True):
                try:
                    reports.append(future.result())
                except TensorzipError:
                    raise
                except Exception as error:
                    raise TensorzipError(f"{source}: compressing on the Dask cluster failed "
                                         f"({type(error).__name__}: {error})") from error
        except BaseException:
            with contextlib.suppress(Exception):
                client.cancel(futures)
            raise
    return reports
