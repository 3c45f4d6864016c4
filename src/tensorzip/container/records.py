"""Every record of a .tzip header that says what the file holds, declared and checked here.

The container is the one authority on file kinds (``kinds.py`` asks these records), so the
reserved metadata keys (``tensorzip.*``), the ``source`` record of each input format and the
header's feature list live in this module and nowhere else; ``docs/format.md`` lists them.
A record is validated when the header is parsed, so no face ever acts on a malformed one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import CorruptDataError, HeaderError, TensorzipError

RESERVED_PREFIX = "tensorzip."

# Metadata keys. A lossy *layer* keeps a JSON record under its key: its tensors are the
# parts of a code (integers, steps, bases), not the data, so generic readers must refuse it.
FRAMEWORK_KEY = "tensorzip.framework"  # "torch" when tz.compress was given a torch tensor
KV_KEY = "tensorzip.kv"
EMBEDDINGS_KEY = "tensorzip.embeddings"
LOSSY_WEIGHTS_KEY = "tensorzip.lossy"
# Optional information goes into metadata (readers that do not know a key still read the
# file); only what a reader must understand goes into the header's ``features``.
SOURCE_DIGEST_KEY = "tensorzip.source_digest"  # "blake2b-256:<hex>" of the original file
# The numcodecs codec's buffers: the input's dtype when it was stored as another one (an
# integer view of datetimes, strings, big-endian values...), and "F" for an F-ordered input
# stored as its C-ordered transpose. Optional for generic readers (they see the stored array).
NUMCODECS_DTYPE_KEY = "tensorzip.numcodecs.dtype"
NUMCODECS_ORDER_KEY = "tensorzip.numcodecs.order"
# tz.compress(x, psnr= | bits=): the target asked and the figure measured on the decoded array
# (JSON: {"target": "psnr" | "bits", "asked": N, "achieved": N}). Optional information.
ERROR_TARGET_KEY = "tensorzip.error_target"
LAYER_KEYS: dict[str, str] = {KV_KEY: "kv-cache", EMBEDDINGS_KEY: "embeddings", LOSSY_WEIGHTS_KEY: "lossy-weights"}
RESERVED_KEYS = frozenset({FRAMEWORK_KEY, SOURCE_DIGEST_KEY, NUMCODECS_DTYPE_KEY, NUMCODECS_ORDER_KEY, ERROR_TARGET_KEY,
                           *LAYER_KEYS})

# Formats of the ``source`` record: what the .tzip was made from, kept so it comes back byte for byte.
SAFETENSORS_SOURCE = "safetensors"
FOLDER_SOURCE = "safetensors-folder"
TORCH_SOURCE = "torch"  # a flat state dict, restored through torch.save (written before issue 19)
TORCH_ZIP_SOURCE = "torch-zip"  # any torch.save zip, restored byte for byte (inputs/torch_zip.py)
SOURCE_FORMATS = (SAFETENSORS_SOURCE, FOLDER_SOURCE, TORCH_SOURCE, TORCH_ZIP_SOURCE)
# A torch.distributed.checkpoint folder: DCP's own metadata file and rank files, and the record
# tensorzip.dcp.TensorzipWriter adds (``{"format": "stream.tensorzip/2", "base": NAME}``).
DCP_METADATA = ".metadata"
DCP_SUFFIX = ".distcp"
DCP_RECORD = "tensorzip-dcp.json"
DCP_ITEM_MARKERS = b"NBTR"  # the first byte of every item tensorzip.dcp writes (dcp/items.py)
# The file a compressed folder (``tensorzip compress DIR``) lists what it holds in.
FOLDER_MANIFEST = "tensorzip-manifest.json"
# A compressed folder's guards: where transformers and diffusers look first, a safetensors prefix
# whose one entry's dtype is this sentence, which safetensors quotes in its error.
GUARD_TRANSFORMERS = "model.safetensors"
GUARD_DIFFUSERS = "diffusion_pytorch_model.safetensors"
GUARD_MESSAGE = ("this folder was compressed by tensorzip; load it with tensorzip.hf.transformers.from_pretrained("
                 "ModelClass, folder) or tensorzip.hf.diffusers.pipeline_from_pretrained(PipelineClass, folder), "
                 "or restore the original files with: tensorzip decompress FOLDER")


def read_dcp_record(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of a DCP folder tensorzip.dcp wrote ({} for one written before records existed)."""
    path = os.path.join(folder, DCP_RECORD)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.loads(handle.read(1 << 16))
    except FileNotFoundError:
        return {}
    except (ValueError, OSError) as error:
        raise CorruptDataError(f"{path}: unreadable ({error})") from None
    if not isinstance(record, dict):
        raise CorruptDataError(f"{path}: not a JSON object")
    return record


def guard_bytes() -> bytes:
    """A guard file's bytes (the same in every folder; the manifest's digest checks them)."""
    header = json.dumps({"__metadata__": {"format": "tensorzip-guard"}, "compressed_by_tensorzip": {
        "dtype": GUARD_MESSAGE, "shape": [0], "data_offsets": [0, 0]}}).encode()
    return len(header).to_bytes(8, "little") + header
TORCH_WRAPPERS = ("state_dict",)

# Features a reader must understand to read a file (refused by name when unknown) and
# optional ones it may ignore. Format evolution adds a feature, not a version fork.
FILES_FEATURE = "files"  # a folder archive keeps the folder's other files (header "files")
REFERENCE_FEATURE = "reference"  # a tensor coded against another tensor of the file (tensor "reference")
# Small tensors of one dtype coded together in a group (header "groups", tensor "packed"; issue 22).
PACKED_FEATURE = "packed"
# Base pins by BLAKE3 ("blake3-128:"): readers before it know only SHA-256 pins.
BLAKE3_PINS_FEATURE = "blake3-pins"
# Chunks whose plane 1 is coded given plane 0 (the `max` level; codec config "context_planes").
CONTEXT_PLANES_FEATURE = "context-planes"
KNOWN_REQUIRED_FEATURES: frozenset[str] = frozenset(
    {FILES_FEATURE, REFERENCE_FEATURE, PACKED_FEATURE, BLAKE3_PINS_FEATURE, CONTEXT_PLANES_FEATURE})


def load_json(raw: bytes | str, where: str, what: str, error: type[TensorzipError] = HeaderError) -> Any:
    """Parse JSON from a file, every way it can fail mapped to ``error`` naming ``where`` and
    ``what``: bad UTF-8 or syntax, nesting deep enough to exhaust the recursion limit, integers
    over Python's 4,300-digit limit, and escaped lone surrogates (``"\\ud800"``), which parse
    but can never be encoded again (every later print or write of the string would fail)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        doc = json.loads(text)
        if "\\u" in text:  # only escapes can smuggle a lone surrogate in; rare, so checked only then
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise error(f"{where}: {what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise error(f"{where}: {what} holds a lone UTF-16 surrogate (an escaped \\ud800-\\udfff alone), "
                    "which no file name or text can hold") from None
    except (UnicodeDecodeError, ValueError) as reason:  # JSONDecodeError, and integers over 4,300 digits
        raise error(f"{where}: {what} is not valid UTF-8 JSON ({reason})") from None
    return doc


def layer_of(metadata: Mapping[str, str] | None) -> str | None:
    """The lossy layer a file's metadata declares (``"kv-cache"``, ``"embeddings"``,
    ``"lossy-weights"``), or ``None`` for a file whose tensors are the data."""
    if not metadata:
        return None
    found = [kind for key, kind in LAYER_KEYS.items() if key in metadata]
    return found[0] if found else None


def check_metadata(metadata: Mapping[str, str], where: str) -> None:
    """At most one layer record per file. Reserved keys this reader does not know are
    ignored: they carry optional information (what a reader must understand is a required
    feature instead, see ``check_features``)."""
    if len(metadata.keys() & LAYER_KEYS.keys()) > 1:
        raise HeaderError(f"{where}: metadata declares more than one lossy layer")


def check_features(doc: Any, where: str) -> tuple[str, ...]:
    """The header's ``features``: ``{"required": [...], "optional": [...]}``. A required feature
    this reader does not know is refused by name; optional ones are ignored."""
    if not isinstance(doc, dict) or set(doc) - {"required", "optional"}:
        raise HeaderError(f"{where}: 'features' must be an object with 'required' and/or 'optional' lists")
    for part in ("required", "optional"):
        names = doc.get(part, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise HeaderError(f"{where}: features.{part} must be a list of names")
    unknown = [n for n in doc.get("required", []) if n not in KNOWN_REQUIRED_FEATURES]
    if unknown:
        raise HeaderError(f"{where}: the file needs feature(s) {', '.join(map(repr, unknown))} that this tensorzip "
                          "does not know; upgrade tensorzip to read it")
    return tuple(doc.get("required", []))


def check_source(source: Any, tensor_count: int, where: str) -> None:
    """A ``source`` record, checked when the header is parsed (before any face reads it)."""
    if not isinstance(source, dict):
        raise HeaderError(f"{where}: 'source' must be an object")
    kind = source.get("format")
    if kind == SAFETENSORS_SOURCE:
        if not isinstance(source.get("header"), str):
            raise HeaderError(f"{where}: safetensors source record needs the original header text")
    elif kind == FOLDER_SOURCE:
        folder_layout(source, tensor_count, where)
    elif kind == TORCH_ZIP_SOURCE:
        storages = source.get("storages")
        if (not isinstance(source.get("file"), str) or not _is_count(source.get("size"))
                or not _is_count(source.get("skeleton_bytes")) or not isinstance(source.get("skeleton"), str)
                or not isinstance(source.get("flat"), bool) or not isinstance(storages, list)
                or len(storages) != tensor_count):
            raise HeaderError(f"{where}: torch-zip source record needs file, size, skeleton, skeleton_bytes, flat, "
                              "and one storage per tensor")
        if source.get("container", "dcp") != "dcp":  # a DCP rank file: torch.save zips one after another
            raise HeaderError(f"{where}: torch-zip source record has an unknown container {source['container']!r}")
    elif kind == TORCH_SOURCE:
        if not isinstance(source.get("file", ""), str) or not isinstance(source.get("size", 0), int):
            raise HeaderError(f"{where}: torch source record needs a file name and a size")
        if source.get("wrapper") is not None and source["wrapper"] not in TORCH_WRAPPERS:
            raise HeaderError(f"{where}: torch source record has an unknown wrapper {source['wrapper']!r}")
    else:
        raise HeaderError(f"{where}: unknown source format {kind!r} (one of {', '.join(SOURCE_FORMATS)})")


def source_format(source: Mapping[str, Any] | None) -> str | None:
    return source.get("format") if source else None


def is_torch_source(source: Mapping[str, Any] | None) -> bool:
    """Made from a PyTorch file (restored as one: byte for byte, or through torch.save)."""
    return source_format(source) in (TORCH_SOURCE, TORCH_ZIP_SOURCE)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_folder_source(source: Mapping[str, Any] | None) -> bool:
    return source_format(source) == FOLDER_SOURCE


def folder_layout(source: Mapping[str, Any], tensor_count: int,
                  where: str) -> tuple[list[tuple[str, str, int]], tuple[str, str] | None]:
    """The shards ``[(file name, header text, tensor count)]`` and the index a folder
    archive records, checked: plain file names only, counts that add up."""
    files = source.get("files")
    if not isinstance(files, list) or not files:
        raise HeaderError(f"{where}: folder source must list its files")
    shards = []
    for item in files:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("header"), str)
                and isinstance(item.get("tensors"), int) and item["tensors"] >= 0):
            raise HeaderError(f"{where}: each folder file needs a name, a header and a tensor count")
        check_mode(item.get("mode"), where)
        shards.append((plain_name(item["name"], where), item["header"], item["tensors"]))
    names = [name for name, _, _ in shards]
    if len(set(names)) != len(names):
        raise HeaderError(f"{where}: the folder names one shard file twice")
    if sum(count for _, _, count in shards) != tensor_count:
        raise HeaderError(f"{where}: the folder's files hold {sum(c for _, _, c in shards)} tensors, "
                          f"the archive {tensor_count}")
    index = source.get("index")
    if index is None:
        return shards, None
    if not (isinstance(index, dict) and isinstance(index.get("name"), str) and isinstance(index.get("text"), str)):
        raise HeaderError(f"{where}: the folder's index needs a name and a text")
    check_mode(index.get("mode"), where)
    if index["name"] in names:  # restoring would write the index text over that shard
        raise HeaderError(f"{where}: the folder's index {index['name']!r} has the name of one of its shards")
    return shards, (plain_name(index["name"], where), index["text"])


def check_mode(mode: Any, where: str) -> None:
    """A recorded file's permission bits (optional: files written before they were recorded
    get the umask's)."""
    if mode is not None and not (isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o777):
        raise HeaderError(f"{where}: a file's mode must be permission bits (0 to 0o777), not {mode!r}")


def restored_modes(source: Mapping[str, Any]) -> dict[str, int]:
    """The permission bits a folder archive recorded for its shards and index, by file name."""
    modes = {f["name"]: f["mode"] for f in source.get("files", []) if isinstance(f.get("mode"), int)}
    index = source.get("index")
    if isinstance(index, dict) and isinstance(index.get("mode"), int):
        modes[index["name"]] = index["mode"]
    return modes


def check_archive_files(source: Any, files: list[tuple[str, bool]], where: str) -> None:
    """A folder archive's files ``[(path, is_folder)]``: paths stay inside the output folder,
    name no shard or index of its own, and no file is the parent of another path (each path
    is written exactly once, and nothing is written through a name another entry made)."""
    if not is_folder_source(source):
        raise HeaderError(f"{where}: only a folder archive keeps files besides its tensors")
    shards, index = folder_layout(source, sum(f["tensors"] for f in source["files"]), where)
    leaves = {name for name, _, _ in shards} | ({index[0]} if index else set())
    leaves |= {path for path, is_folder in files if not is_folder}
    for path, _ in files:
        if path.startswith("/") or any(part != plain_name(part, where) for part in path.split("/")):
            raise HeaderError(f"{where}: archived path {path!r} is not a relative path")
        if path in {name for name, _, _ in shards} or (index and path == index[0]):
            raise HeaderError(f"{where}: archived path {path!r} is also one of the archive's shards or its index")
        parent = os.path.dirname(path)
        while parent:
            if parent in leaves:
                raise HeaderError(f"{where}: archived path {path!r} lies under the file {parent!r}")
            parent = os.path.dirname(parent)


def plain_name(name: str, where: str) -> str:
    """A file name that stays inside the output folder (no paths, no '..')."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise HeaderError(f"{where}: folder file name {name!r} is not a plain file name")
    return name


def original_size(source: Any, tensor_bytes: int) -> int:
    """The size of the file (or folder) a .tzip was made from, from its source record;
    the tensors' bytes when it recorded none."""
    if not isinstance(source, dict):
        return tensor_bytes
    if source.get("format") == SAFETENSORS_SOURCE and isinstance(source.get("header"), str):
        return 8 + len(source["header"].encode("utf-8")) + tensor_bytes
    if is_torch_source(source) and isinstance(source.get("size"), int):  # a PyTorch file's own size
        return source["size"]
    if is_folder_source(source) and isinstance(source.get("files"), list):
        headers = [f.get("header") for f in source["files"] if isinstance(f, dict)]
        index = source.get("index")
        text = index.get("text") if isinstance(index, dict) else None
        if headers and all(isinstance(h, str) for h in headers):
            return (sum(8 + len(h.encode("utf-8")) for h in headers) + tensor_bytes
                    + (len(text.encode("utf-8")) if isinstance(text, str) else 0))
    return tensor_bytes
