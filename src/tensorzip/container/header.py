"""The JSON header of a .tzip file: its schema, and the checks a reader makes
before trusting any number in it (docs/format.md, "Header")."""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..codecs import ChunkRef
from ..codecs.residual import BLAKE3_PINS, Delta, Reference, can_convert
from ..dtypes import DTypeSpec
from ..errors import HeaderError, LimitExceededError, UnsupportedDtypeError
from . import records
from .format import DATA_START, DEFAULT_MAX_HEADER_BYTES

DEFAULT_MAX_TENSOR_BYTES = 1 << 40  # 1 TiB decoded per tensor
# Decoded bytes per stored byte. The writer's extreme case is a constant chunk of
# the largest size (4 MiB stored in 7 bytes, 6e5x), so the default admits every
# file tensorzip writes.
DEFAULT_MAX_EXPANSION = 1 << 20
MAX_DIMENSIONS = 64  # numpy's limit


@functools.cache  # the machine's memory does not change while it runs; asking costs a microsecond a reader
def default_memory_limit() -> int:
    """Half the machine's physical memory (1 TiB where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 40


@dataclass(frozen=True)
class ReadLimits:
    """Bounds a reader enforces before allocating anything a header declares."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    max_expansion: int = DEFAULT_MAX_EXPANSION
    # What an in-memory API (load_file, get_tensor, tz.decompress) may allocate for what a
    # header declares; streaming paths (decompress to a file, verify) decode in bounded
    # pieces instead and need no such limit. Default: half the machine's memory.
    max_memory_bytes: int = field(default_factory=lambda: default_memory_limit())


@dataclass(frozen=True)
class Packed:
    """Where a small tensor lies in its group (docs/format.md, "Small tensors coded together"):
    ``group`` indexes ``Header.groups``; ``element`` is its first element in the group; ``skip``
    its first element within the first of the group's chunks it lies in (which its entry's
    ``chunks`` start with)."""

    group: int
    element: int
    skip: int
    share: int = 0  # the group's stored bytes in proportion to this tensor's elements (what it costs)


def _uses_context_planes(config: dict[str, Any]) -> bool:
    """Whether a codec config lets plane 1 be coded given plane 0 (the `max` level)."""
    return config.get("context_planes") is True


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it."""

    name: str
    spec: DTypeSpec
    shape: tuple[int, ...]
    codec_config: dict[str, Any]
    chunks: tuple[ChunkRef, ...]  # offsets are absolute file offsets
    delta: Delta | None = None  # stored against this base tensor
    # Stored once under another name: the entry carries that tensor's codec, chunks
    # and delta, so decoding it needs nothing special.
    same_as: str | None = None
    # Stored against another tensor of this file (converted to this dtype): docs/format.md.
    reference: Reference | None = None
    # Coded with other small tensors in a group: ``chunks`` and ``codec_config`` are then the
    # group's chunks that hold its elements, and the group's codec.
    packed: Packed | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.spec.itemsize

    @property
    def stored_bytes(self) -> int:
        return sum(c.length for c in self.chunks)

    @property
    def own_stored_bytes(self) -> int:
        """What this tensor costs in the file: its chunks' bytes, or for a packed tensor its
        share of its group's (whose chunks, ``stored_bytes``, it shares with its neighbours)."""
        return self.packed.share if self.packed is not None else self.stored_bytes

    @property
    def data_offset(self) -> int:
        """Where this tensor's first chunk starts (its chunks are contiguous)."""
        return self.chunks[0].offset if self.chunks else 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "dtype": self.spec.name, "shape": list(self.shape)}
        if self.same_as is not None:
            doc["same_as"] = self.same_as
            return doc
        if self.packed is not None:
            doc["packed"] = [self.packed.group, self.packed.element]
            return doc
        doc["codec"] = self.codec_config
        doc["chunks"] = [[c.offset, c.length, c.crc32c] for c in self.chunks]
        if self.delta is not None:
            doc["delta"] = self.delta.to_json()
        if self.reference is not None:
            doc["reference"] = self.reference.to_json()
        return doc


@dataclass(frozen=True)
class GroupEntry:
    """Small tensors of one dtype coded as one array (their elements back to back, in the
    order they were added): one model for all, where each alone could not pay for its own
    tables. Needs the required feature ``packed`` (records.PACKED_FEATURE)."""

    spec: DTypeSpec
    numel: int
    codec_config: dict[str, Any]
    chunks: tuple[ChunkRef, ...]

    @property
    def chunk_elements(self) -> int:
        return int(self.codec_config["chunk_elements"])

    @property
    def stored_bytes(self) -> int:
        return sum(c.length for c in self.chunks)

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.spec.name, "numel": self.numel, "codec": self.codec_config,
                "chunks": [[c.offset, c.length, c.crc32c] for c in self.chunks]}

    def span(self, element: int, numel: int) -> tuple[tuple[ChunkRef, ...], int]:
        """The chunks holding elements [element, element + numel), and where the first of
        them lies in the first chunk."""
        first = element // self.chunk_elements
        last = (element + max(numel, 1) - 1) // self.chunk_elements
        return self.chunks[first : last + 1], element - first * self.chunk_elements


@dataclass(frozen=True)
class FileEntry:
    """A file (or an empty folder) of a folder archive kept byte for byte beside the tensors:
    its bytes are one uint8 "tensor" that no tensor view lists (``Header.files``, not
    ``Header.tensors``). Needs the required feature ``files`` (records.FILES_FEATURE)."""

    path: str  # relative, POSIX separators, checked to stay inside the output folder
    mode: int  # permission bits to restore
    data: TensorEntry | None  # None: an empty folder

    @property
    def size(self) -> int:
        return self.data.nbytes if self.data is not None else 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "mode": self.mode}
        if self.data is None:
            doc["folder"] = True
            return doc
        doc["size"] = self.data.nbytes
        doc["codec"] = self.data.codec_config
        doc["chunks"] = [[c.offset, c.length, c.crc32c] for c in self.data.chunks]
        return doc


@dataclass
class Header:
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    metadata: dict[str, str] | None = None
    # Where the tensors came from, to restore that file byte for byte:
    # {"format": "safetensors", "header": "<its JSON header, verbatim>"}.
    source: dict[str, Any] | None = None
    # The checkpoint that tensors with a "delta" are coded against: {"file": "<its file name>"}.
    base: dict[str, Any] | None = None
    # Features a reader must know to read the file (records.py); written only when used.
    required_features: tuple[str, ...] = ()
    # A folder archive's other files (config, tokenizer, subfolders), after every tensor's chunks.
    files: dict[str, FileEntry] = field(default_factory=dict)
    # Small tensors coded together (``packed`` entries name them), after the tensors' chunks.
    groups: list[GroupEntry] = field(default_factory=list)

    @property
    def uses_format_1_1(self) -> bool:
        """Whether the file needs a 1.1 reader (a base, or tensors stored once under two names)."""
        return self.base is not None or any(t.same_as is not None for t in self.tensors.values())

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"tensors": [t.to_json() for t in self.tensors.values()]}
        if self.metadata is not None:
            doc["metadata"] = self.metadata
        if self.source is not None:
            doc["source"] = self.source
        if self.base is not None:
            doc["base"] = self.base
        required = list(self.required_features)
        if any(t.reference is not None for t in self.tensors.values()) and records.REFERENCE_FEATURE not in required:
            required.append(records.REFERENCE_FEATURE)
        if (any(t.delta is not None and t.delta.base_digest.startswith(BLAKE3_PINS) for t in self.tensors.values())
                and records.BLAKE3_PINS_FEATURE not in required):
            required.append(records.BLAKE3_PINS_FEATURE)
        if (any(_uses_context_planes(t.codec_config) for t in (*self.tensors.values(), *self.groups))
                and records.CONTEXT_PLANES_FEATURE not in required):
            required.append(records.CONTEXT_PLANES_FEATURE)
        if self.groups:
            doc["groups"] = [g.to_json() for g in self.groups]
            required += [records.PACKED_FEATURE] if records.PACKED_FEATURE not in required else []
        if self.files:
            doc["files"] = [f.to_json() for f in self.files.values()]
            required += [records.FILES_FEATURE] if records.FILES_FEATURE not in required else []
        if required:
            doc["features"] = {"required": required}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, raw: bytes, where: str, data_end: int, limits: ReadLimits) -> Header:
        """Parse and validate; ``data_end`` is where the chunk area ends (the header's offset)."""
        doc = records.load_json(raw, where, "header")  # deep nesting: found by fuzz/fuzz_reader.py
        if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list):
            raise HeaderError(f"{where}: header must be an object with a 'tensors' list")
        # Features first: a file of a newer release is refused with "upgrade", not "unknown keys".
        required = records.check_features(doc["features"], where) if "features" in doc else ()
        unknown = set(doc) - {"tensors", "metadata", "source", "base", "features", "files", "groups"}
        if unknown:
            raise HeaderError(f"{where}: header has unknown keys {sorted(unknown)}")
        metadata = doc.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise HeaderError(f"{where}: 'metadata' must map strings to strings")
        if metadata is not None:
            records.check_metadata(metadata, where)
        source = doc.get("source")
        base = doc.get("base")
        if base is not None and not (isinstance(base, dict) and isinstance(base.get("file"), str)):
            raise HeaderError(f"{where}: 'base' must be an object with a 'file' string")
        if base is not None and (base["file"] in ("", ".", "..") or any(c in base["file"] for c in "/\\\0")):
            # The base is looked for beside the file: a path would let a file open any file on the machine.
            raise HeaderError(f"{where}: base file {base['file']!r} is not a plain file name")

        header = cls(metadata=metadata, source=source, base=base, required_features=required)
        if "groups" in doc:
            _require(records.PACKED_FEATURE in required, where, "the header lists groups but does not declare the "
                     f"feature {records.PACKED_FEATURE!r}")
            header.groups = _parse_groups(doc["groups"], _members(doc["tensors"]), where, limits)
            if (any(_uses_context_planes(g.codec_config) for g in header.groups)
                    and records.CONTEXT_PLANES_FEATURE not in required):
                raise HeaderError(f"{where}: a group codes planes given plane 0 but the header does not declare the "
                                  f"feature {records.CONTEXT_PLANES_FEATURE!r}")
        packed_ranges: list[list[tuple[int, int, str]]] = [[] for _ in header.groups]
        expected_offset = DATA_START
        for index, item in enumerate(doc["tensors"]):
            entry = _parse_tensor(item, where, limits, index=index)
            if entry.name in header.tensors:
                raise HeaderError(f"{where}: tensor {entry.name!r} appears twice")
            if entry.same_as is not None:
                header.tensors[entry.name] = _shared_entry(entry, header.tensors, f"{where}: tensor #{index}")
                continue
            if entry.packed is not None:
                entry = _packed_entry(entry, header.groups, f"{where}: tensor #{index}")
                assert entry.packed is not None
                packed_ranges[entry.packed.group].append((entry.packed.element, entry.numel, entry.name))
                header.tensors[entry.name] = entry
                continue
            if entry.delta is not None and base is None:
                raise HeaderError(f"{where}: tensor {entry.name!r} is coded against a base the header does not name")
            if (entry.delta is not None and entry.delta.base_digest.startswith(BLAKE3_PINS)
                    and records.BLAKE3_PINS_FEATURE not in required):
                raise HeaderError(f"{where}: tensor #{index}: has a BLAKE3 pin but the header does not declare the "
                                  f"feature {records.BLAKE3_PINS_FEATURE!r}")
            if entry.reference is not None:
                _check_reference(entry, header.tensors, required, f"{where}: tensor #{index}")
            if _uses_context_planes(entry.codec_config) and records.CONTEXT_PLANES_FEATURE not in required:
                raise HeaderError(f"{where}: tensor {entry.name!r} codes planes given plane 0 but the header does not "
                                  f"declare the feature {records.CONTEXT_PLANES_FEATURE!r}")
            for number, chunk in enumerate(entry.chunks):
                if chunk.offset != expected_offset:
                    raise HeaderError(
                        f"{where}: tensor {entry.name!r} chunk {number} starts at offset {chunk.offset}, "
                        f"expected {expected_offset} (chunks must tile the data area with no holes)"
                    )
                expected_offset += chunk.length
            if entry.nbytes > limits.max_expansion * max(1, entry.stored_bytes):
                raise LimitExceededError(
                    f"{where}: tensor {entry.name!r} declares {entry.nbytes} bytes from "
                    f"{entry.stored_bytes} stored bytes, beyond the expansion limit of "
                    f"{limits.max_expansion}x (a decompression bomb?)"
                )
            header.tensors[entry.name] = entry
        for number, group in enumerate(header.groups):  # their chunks continue the tiling after the tensors'
            _check_disjoint(packed_ranges[number], number, where)
            for chunk_number, chunk in enumerate(group.chunks):
                _require(chunk.offset == expected_offset, where,
                         f"group #{number} chunk {chunk_number} starts at offset {chunk.offset}, expected "
                         f"{expected_offset} (chunks must tile the data area with no holes)")
                expected_offset += chunk.length
        if "files" in doc:
            if records.FILES_FEATURE not in required:
                raise HeaderError(f"{where}: the header lists files but does not declare the feature "
                                  f"{records.FILES_FEATURE!r}")
            expected_offset = _parse_files(doc["files"], header, expected_offset, where, limits)
        if expected_offset != data_end:
            raise HeaderError(
                f"{where}: chunks end at offset {expected_offset} but the header starts at {data_end}"
            )
        # Per tensor the expansion is bounded above; this bounds the file, where every
        # ``same_as`` copy and archived file counts again (1,000 names for one constant
        # 8 MiB tensor would otherwise declare 8 GiB from a few hundred bytes).
        declared = sum(e.nbytes for e in header.tensors.values()) + sum(f.size for f in header.files.values())
        stored = data_end - DATA_START
        if declared > limits.max_expansion * max(1, stored):
            raise LimitExceededError(
                f"{where}: declares {declared} decoded bytes in all from {stored} stored bytes, beyond the "
                f"expansion limit of {limits.max_expansion}x (a decompression bomb? ReadLimits.max_expansion)"
            )
        if source is not None:
            records.check_source(source, len(header.tensors), where)
        if header.files:
            records.check_archive_files(source, [(f.path, f.data is None) for f in header.files.values()], where)
        return header


def _parse_files(items: Any, header: Header, offset: int, where: str, limits: ReadLimits) -> int:
    """The archive's files, whose chunks continue tiling the data area after the tensors'.
    Returns where their chunks end."""
    _require(isinstance(items, list), where, "'files' must be a list")
    for index, item in enumerate(items):
        here = f"{where}: file #{index}"
        _require(isinstance(item, dict) and isinstance(item.get("path"), str) and _is_uint(item.get("mode"))
                 and item["mode"] <= 0o777, here, "needs a path and permission bits (mode, at most 0o777)")
        path = item["path"]
        _require(path not in header.files, here, f"path {path!r} appears twice")
        if item.get("folder") is True:
            _require(set(item) == {"path", "mode", "folder"}, here, f"folder {path!r} has unexpected keys")
            header.files[path] = FileEntry(path, item["mode"], None)
            continue
        _require(set(item) == {"path", "mode", "size", "codec", "chunks"} and _is_uint(item["size"]), here,
                 "must have the keys path, mode, size, codec, chunks (or path, mode, folder)")
        data = _parse_tensor({"name": path, "dtype": "uint8", "shape": [item["size"]], "codec": item["codec"],
                              "chunks": item["chunks"]}, here, limits)
        for number, chunk in enumerate(data.chunks):
            _require(chunk.offset == offset, here,
                     f"chunk {number} of {path!r} starts at offset {chunk.offset}, expected {offset}")
            offset += chunk.length
        if data.nbytes > limits.max_expansion * max(1, data.stored_bytes):
            raise LimitExceededError(f"{here}: {path!r} declares {data.nbytes} bytes from {data.stored_bytes} "
                                     f"stored bytes, beyond the expansion limit of {limits.max_expansion}x")
        header.files[path] = FileEntry(path, item["mode"], data)
    return offset


def _members(tensors: list[Any]) -> dict[int, list[str]]:
    """The names of the tensors each group holds (as far as the entries say), for messages."""
    members: dict[int, list[str]] = {}
    for item in tensors:
        packed = item.get("packed") if isinstance(item, dict) else None
        if isinstance(packed, list) and packed and _is_uint(packed[0]) and isinstance(item.get("name"), str):
            members.setdefault(packed[0], []).append(item["name"])
    return members


def _parse_groups(items: Any, members: dict[int, list[str]], where: str, limits: ReadLimits) -> list[GroupEntry]:
    """The groups' dtypes, sizes, codecs and chunks (their offsets are checked with the tiling)."""
    _require(isinstance(items, list), where, "'groups' must be a list")
    groups = []
    for index, item in enumerate(items):
        names = members.get(index, [])
        held = ", ".join(map(repr, names[:3])) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        here = f"{where}: group #{index}" + (f" (of the small tensors {held})" if names else "")
        _require(isinstance(item, dict) and set(item) == {"dtype", "numel", "codec", "chunks"}, here,
                 "must have the keys dtype, numel, codec, chunks")
        _require(_is_uint(item["numel"]), here, "numel must be a non-negative integer")
        data = _parse_tensor({"name": f"group #{index}", "dtype": item["dtype"], "shape": [item["numel"]],
                              "codec": item["codec"], "chunks": item["chunks"]}, here, limits, named=False)
        every = data.codec_config.get("chunk_elements")
        _require(_is_uint(every) and every >= 1, here, "its codec must give chunk_elements (a positive integer)")
        _require(len(data.chunks) == -(-data.numel // every), here,
                 f"has {len(data.chunks)} chunks, but {data.numel} elements in chunks of {every} need "
                 f"{-(-data.numel // every)}")
        if data.nbytes > limits.max_expansion * max(1, data.stored_bytes):
            raise LimitExceededError(f"{here}: declares {data.nbytes} bytes from {data.stored_bytes} stored bytes, "
                                     f"beyond the expansion limit of {limits.max_expansion}x")
        groups.append(GroupEntry(data.spec, data.numel, data.codec_config, data.chunks))
    return groups


def _check_disjoint(ranges: list[tuple[int, int, str]], number: int, where: str) -> None:
    """The packed tensors of a group hold elements of their own: two that overlap would
    read the same values under two names."""
    end, previous = 0, ""
    for element, numel, name in sorted(ranges):
        _require(element >= end, where, f"tensors {previous!r} and {name!r} overlap in group #{number} "
                 f"(elements from {element})")
        end, previous = element + numel, name


def _packed_entry(entry: TensorEntry, groups: list[GroupEntry], where: str) -> TensorEntry:
    """A ``packed`` entry, given the group's codec and the chunks that hold its elements."""
    assert entry.packed is not None
    number, element = entry.packed.group, entry.packed.element
    _require(number < len(groups), where, f"packed names group #{number}, but the header has {len(groups)}")
    group = groups[number]
    _require(group.spec == entry.spec, where,
             f"packed in group #{number} of {group.spec.name}, but the tensor is {entry.spec.name}")
    _require(entry.numel >= 1 and element + entry.numel <= group.numel, where,
             f"packed at elements [{element}, {element + entry.numel}) of group #{number}, which holds {group.numel}")
    chunks, skip = group.span(element, entry.numel)
    share = -(-group.stored_bytes * entry.numel // max(1, group.numel))
    return TensorEntry(entry.name, entry.spec, entry.shape, group.codec_config, chunks,
                       packed=Packed(number, element, skip, share))


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise HeaderError(f"{where}: {message}")


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_chunk(value: Any) -> bool:
    """``[offset, length, crc32c]``: non-negative integers, the checksum within 32 bits."""
    return (isinstance(value, list) and len(value) == 3 and _is_uint(value[0]) and _is_uint(value[1])
            and _is_uint(value[2]) and value[2] < 1 << 32)


def _shared_entry(entry: TensorEntry, earlier: dict[str, TensorEntry], where: str) -> TensorEntry:
    """A ``same_as`` entry, given the codec, chunks and delta of the earlier tensor it names."""
    target = earlier.get(entry.same_as or "")
    _require(target is not None and target.same_as is None, where,
             f"same_as names {entry.same_as!r}, which is not an earlier stored tensor")
    assert target is not None
    _require(target.spec == entry.spec and target.shape == entry.shape, where,
             f"same_as names {entry.same_as!r}, whose dtype or shape differs")
    return TensorEntry(entry.name, entry.spec, entry.shape, target.codec_config, target.chunks, target.delta,
                       entry.same_as, target.reference, target.packed)


def _check_reference(entry: TensorEntry, earlier: dict[str, TensorEntry], required: tuple[str, ...],
                     where: str) -> None:
    """A tensor coded against another of the file: that one comes earlier, is stored under its
    own name and coded without a reference of its own (so decoding never chains or loops),
    has as many elements, and a dtype this one converts from; the feature is declared."""
    assert entry.reference is not None
    name = entry.reference.tensor
    target = earlier.get(name)
    _require(records.REFERENCE_FEATURE in required, where,
             f"has a reference but the header does not declare the feature {records.REFERENCE_FEATURE!r}")
    _require(entry.delta is None, where, "has both a delta and a reference")
    _require(target is not None and target.same_as is None and target.reference is None, where,
             f"reference names {name!r}, which is not an earlier tensor stored without a reference")
    assert target is not None
    _require(target.numel == entry.numel and can_convert(target.spec.name, entry.spec.name), where,
             f"reference names {name!r}, a {target.spec.name} tensor of {target.numel} elements, which a "
             f"{entry.spec.name} tensor of {entry.numel} elements cannot be coded against")


_STORED_KEYS = {"name", "dtype", "shape", "codec", "chunks"}
_SHARED_KEYS = {"name", "dtype", "shape", "same_as"}
_PACKED_KEYS = {"name", "dtype", "shape", "packed"}
_TENSOR_KEY_SETS = (_STORED_KEYS, _STORED_KEYS | {"delta"}, _STORED_KEYS | {"reference"}, _SHARED_KEYS, _PACKED_KEYS)


def _parse_tensor(item: Any, where: str, limits: ReadLimits, *, named: bool = True,
                  index: int | None = None) -> TensorEntry:
    """One tensor entry, checked. ``index``: its place in the header's list (named in
    errors after ``where``, as "tensor #N")."""
    if index is not None:
        where = f"{where}: tensor #{index}"
    # Messages are built only on failure: this runs per tensor per file opened (a Zarr chunk
    # opens one file per call), and formatting them eagerly cost more than the checks.
    _require(isinstance(item, dict), where, "must be an object")
    if set(item) not in _TENSOR_KEY_SETS:
        raise HeaderError(f"{where}: must have the keys name, dtype, shape, codec, chunks (and optionally delta or "
                          f"reference), or name, dtype, shape, same_as, or name, dtype, shape, packed "
                          f"(has {sorted(item)})")
    name = item["name"]
    _require(isinstance(name, str), where, "name must be a string")
    where = f"{where} ({name!r})" if named else where
    try:
        spec = dtypes.by_name(item["dtype"])
    except UnsupportedDtypeError as error:
        raise UnsupportedDtypeError(f"{where}: {error}") from None
    shape = item["shape"]
    _require(isinstance(shape, list) and all(_is_uint(d) for d in shape), where,
             "shape must be a list of non-negative integers")
    if len(shape) > MAX_DIMENSIONS:
        raise HeaderError(f"{where}: shape has {len(shape)} dimensions (at most {MAX_DIMENSIONS})")
    nbytes = math.prod(shape) * spec.itemsize
    if (nbytes or math.prod(d for d in shape if d) * spec.itemsize) >= 1 << 62:  # without its zero dimensions
        raise HeaderError(f"{where}: shape {shape} is too large to exist in memory")
    if nbytes > limits.max_tensor_bytes:
        raise LimitExceededError(
            f"{where}: declares {nbytes} bytes, over the limit of {limits.max_tensor_bytes} bytes "
            "(raise ReadLimits.max_tensor_bytes to read it)"
        )
    if "same_as" in item:
        _require(isinstance(item["same_as"], str), where, "same_as must be a string")
        return TensorEntry(name, spec, tuple(shape), {}, (), None, item["same_as"])
    if "packed" in item:
        packed = item["packed"]
        _require(isinstance(packed, list) and len(packed) == 2 and all(_is_uint(v) for v in packed), where,
                 "packed must be [group, element] of non-negative integers")
        return TensorEntry(name, spec, tuple(shape), {}, (), packed=Packed(packed[0], packed[1], 0))
    _require(isinstance(item["codec"], dict), where, "codec must be an object")
    chunks = item["chunks"]
    _require(isinstance(chunks, list), where, "chunks must be a list")
    refs = []
    for chunk in chunks:
        if not _is_chunk(chunk):  # one check per chunk in the common case; the message says which part failed
            _require(isinstance(chunk, list) and len(chunk) == 3 and all(_is_uint(v) for v in chunk), where,
                     "each chunk must be [offset, length, crc32c] of non-negative integers")
            _require(chunk[2] < 1 << 32, where, "chunk crc32c must fit 32 bits")
        refs.append(ChunkRef(chunk[0], chunk[1], chunk[2]))
    delta = Delta.from_json(item["delta"], where) if "delta" in item else None
    reference = Reference.from_json(item["reference"], where) if "reference" in item else None
    return TensorEntry(name, spec, tuple(shape), item["codec"], tuple(refs), delta, reference=reference)
