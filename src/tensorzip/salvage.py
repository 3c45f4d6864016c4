"""``tensorzip salvage``: the tensors of a damaged .tzip that still check out, as a .safetensors.

Every chunk carries its own CRC-32C and every tensor decodes from its own chunks alone, so
damage in the chunk area costs only the tensors whose chunks it hit. The header is another
matter: it is the file's table of contents and lies at the end (the writer streams, see
docs/format.md), so a truncated file has lost it, and with it where every tensor starts and
how it was coded; chunks carry no framing of their own, so nothing can be located safely.
Salvage says so and writes nothing, rather than guessing.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .container import TensorEntry, TzipReader
from .container.kinds import Kind, identify
from .container.records import RESERVED_PREFIX
from .errors import InputFileError, TensorzipError, TruncatedFileError
from .inputs.safetensors import build_header, write_prefix
from .outputs.atomic import atomic_output, refuse_output_over_inputs


@dataclass(frozen=True)
class SalvageReport:
    source: str
    target: str
    recovered: list[str] = field(default_factory=list)  # tensor names written, in storage order
    lost: dict[str, str] = field(default_factory=dict)  # tensor name -> why it could not be read
    output_bytes: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.lost

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


def _open(source: str | os.PathLike[str], threads: int | None, base: str | os.PathLike[str] | None) -> TzipReader:
    try:
        found = identify(source)
        if found.kind not in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE):
            raise found.refuse("tensorzip salvage")
        return TzipReader(source, threads=threads, base=base)
    except TruncatedFileError as error:
        raise TruncatedFileError(
            f"{error} — the header, which says where each tensor lies and how it is coded, is at the end of a "
            ".tzip and was lost with it, so no tensor can be located; fetch or copy the file again") from None


def salvage_file(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    threads: int | None = None,
    overwrite: bool = False,
    base: str | os.PathLike[str] | None = None,
) -> SalvageReport:
    """Write every tensor of ``source`` whose chunks pass their checksums and decode (and, for
    a tensor coded against a base, whose base tensor is found and matches) into ``target``, a
    .safetensors file; list each other tensor with the reason it was lost. Raises, writing
    nothing, when the header cannot be read or no tensor survives."""
    started = time.perf_counter()
    with _open(source, threads, base) as reader:
        # A missing base fails the whole salvage, before anything is written; an output may
        # replace neither the file nor any base down its chain (they are what is being read).
        coded_against_base = any(entry.delta is not None for entry in reader.header.tensors.values())
        refuse_output_over_inputs(target, source, *(reader.base_files() if coded_against_base else []))
        good: list[TensorEntry] = []
        lost: dict[str, str] = {}
        for entry in reader.header.tensors.values():
            try:
                reader.decode_into([(entry, np.empty(entry.shape, entry.spec.numpy_dtype))])
                good.append(entry)
            except TensorzipError as error:
                lost[entry.name] = str(error).removeprefix(f"{reader.where}: ")
        if not good:
            raise InputFileError(f"{reader.where}: no tensor could be read ({len(lost)} lost); nothing written")
        for kept in reader.header.files.values():  # a folder archive's other files are not in the output
            reason = "a file of the archived folder: salvage writes tensors only"
            if kept.data is not None:
                try:
                    reader.decode_into([(kept.data, np.empty(kept.data.numel, np.uint8))])
                except TensorzipError as error:
                    reason = str(error).removeprefix(f"{reader.where}: ")
            lost[kept.path] = reason
        metadata = {k: v for k, v in (reader.metadata() or {}).items() if not k.startswith(RESERVED_PREFIX)}
        header = build_header(((e.name, e.spec, e.shape) for e in good), metadata)
        written = 8 + len(header)
        with atomic_output(target, overwrite=overwrite) as handle:
            write_prefix(handle, header)
            for entry in good:  # decoded again, one at a time: memory stays one tensor
                out = np.empty(entry.shape, entry.spec.numpy_dtype)
                reader.decode_into([(entry, out)])
                handle.write(memoryview(out.reshape(-1).view(np.uint8)))
                written += out.nbytes
        return SalvageReport(reader.where, str(target), [e.name for e in good], lost, written,
                             time.perf_counter() - started)
