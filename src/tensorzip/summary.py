"""``tz.info(path)``: what any path tensorzip reads or writes holds, in plain words.

Every kind gets the same headline fields (kind, lossless or lossy, original and stored
bytes, ratio) so that ``tensorzip info`` never headlines a lossy layer with the ratio of its
internal parts; each kind adds what it was made for (a budget, a recall, a base) and the
figure it achieved, as recorded when it was written (measured then, never assumed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import dtypes, embeddings, kv, lossy
from .container import TzipReader
from .container.kinds import Kind, PathKind, identify
from .container.reader import codec_from_config_for
from .container.records import (
    DCP_SUFFIX,
    LOSSY_WEIGHTS_KEY,
    TORCH_ZIP_SOURCE,
    load_json,
    original_size,
    read_dcp_record,
    source_format,
)
from .errors import FormatError, InputFileError
from .folders import MANIFEST_NAME, is_index, original_index
from .inputs.safetensors import SafetensorsFile
from .inputs.torch_file import TorchFile, is_torch_zip
from .inputs.torch_zip import TorchZipCheckpoint, checkpoint_part


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready summary of ``path``: ``kind``, ``what`` (in words), ``lossy``,
    ``original_bytes``, ``stored_bytes``, ``ratio``; per kind ``target`` and ``achieved``
    (lossy layers), ``tensors`` (checkpoints), ``files`` (compressed folders), ``base``."""
    found = identify(path)
    handler = _HANDLERS.get(found.kind)
    if handler is None:
        raise found.refuse("tensorzip info")
    doc: dict[str, Any] = {"file": found.path, "kind": found.kind.value, "what": found.readers.words}
    try:
        doc.update(handler(found))
    except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError, AttributeError) as error:
        # A layer record is the file's own JSON: one crafted past the checks its reader makes
        # (its fields' own fields) is said as a damaged file, never as a traceback.
        raise FormatError(f"{found.path}: {found.readers.words} whose record is malformed "
                          f"({type(error).__name__}: {error})") from None
    stored, original = doc.get("stored_bytes"), doc.get("original_bytes")
    doc["ratio"] = original / stored if stored and original else None
    doc["size"] = stored  # the name `tensorzip info --json` used before it knew every kind
    return doc


def _checkpoint(found: PathKind) -> dict[str, Any]:
    with TzipReader(found.path) as reader:
        tensors = [
            {"name": e.name, "dtype": e.spec.name, "shape": list(e.shape), "original_bytes": e.nbytes,
             "stored_bytes": 0 if e.same_as else e.own_stored_bytes, "chunks": len(e.chunks),
             "codec": e.codec_config if e.packed is None else {**e.codec_config, "packed_in_group": e.packed.group},
             "delta": e.delta.to_json() if e.delta else None, "same_as": e.same_as,
             "reference": e.reference.to_json() if e.reference else None}
            for e in reader.header.tensors.values()
        ]
        for t, entry in zip(tensors, reader.header.tensors.values(), strict=True):
            t["lossy"] = codec_from_config_for(entry, reader.where).lossy  # a bad config: said, naming it
        tensor_bytes = sum(t["original_bytes"] for t in tensors)
        kept = [{"path": f.path, "folder": f.data is None, "original_bytes": f.size,
                 "stored_bytes": f.data.stored_bytes if f.data is not None else 0, "mode": f.mode}
                for f in reader.header.files.values()]
        parts = _torch_parts(reader.header.source, tensors)
        return {"lossy": any(t["lossy"] for t in tensors), **parts,
                "original_bytes": original_size(reader.header.source, tensor_bytes) + sum(f.size for f in
                                                                                         reader.header.files.values()),
                "stored_bytes": reader.size, "made_from": found.source_format, "metadata": reader.metadata(),
                "base": reader.base_name, "tensors": tensors, "kept_files": kept}


def _torch_parts(source: dict[str, Any] | None, tensors: list[dict[str, Any]]) -> dict[str, Any]:
    """For a .tzip of a torch.save checkpoint: its top-level entries, and its tensors' bytes by
    part (model, each optimizer state, the rest), so a user sees where the bytes are."""
    if source_format(source) != TORCH_ZIP_SOURCE or source is None:
        return {}
    dcp = source.get("container") == "dcp"  # a DCP rank file: its items, by dtype (names are item numbers)
    parts: dict[str, dict[str, Any]] = {}
    for tensor in tensors:
        name = f"{tensor.get('dtype', '?')} storages" if dcp else checkpoint_part(tensor["name"],
                                                                                  bool(source.get("flat")))
        part = parts.setdefault(name, {"tensors": 0, "original_bytes": 0, "stored_bytes": 0})
        part["tensors"] += 1
        part["original_bytes"] += tensor["original_bytes"]
        part["stored_bytes"] += tensor["stored_bytes"]
    top = source.get("top_level")
    found = {"top_level": top if isinstance(top, list) else [], "parts": parts,
             "kept_bytes": source.get("skeleton_bytes")}
    if dcp:
        found |= {"dcp_items": source.get("items"), "dcp_kept_items": source.get("kept_items")}
    return found


def _lossy_weights(found: PathKind) -> dict[str, Any]:
    record = lossy.describe(found.path)
    tensors = record["tensors"]
    original = sum(math.prod(t["shape"]) * dtypes.by_name(t["dtype"]).itemsize for t in tensors.values())
    quantized = {n: t for n, t in tensors.items() if t["mode"] != "exact"}
    worst = max(quantized, key=lambda n: quantized[n]["relative_rms_error"], default=None)
    achieved: dict[str, Any] = {"quantized_tensors": len(quantized), "exact_tensors": len(tensors) - len(quantized)}
    if worst is not None:
        achieved |= {"worst_relative_rms_error": quantized[worst]["relative_rms_error"], "worst_tensor": worst}
    with TzipReader(found.path) as reader:  # the original safetensors header is kept in the record
        source = load_json((reader.metadata() or {}).get(LOSSY_WEIGHTS_KEY, "{}"), reader.where,
                           "the lossy record", FormatError).get("source")
    stored = os.path.getsize(found.path)
    achieved["stored_bytes"] = stored
    return {"lossy": True, "original_bytes": original_size(source, original), "stored_bytes": stored,
            "target": {"budget_bytes": record.get("budget_bytes")}, "achieved": achieved,
            "tensors": [{"name": n, **t} for n, t in tensors.items()]}


def _embeddings(found: PathKind) -> dict[str, Any]:
    record = embeddings.open(found.path).record
    original = record["count"] * record["dim"] * np.dtype(dtypes.by_name(record["dtype"]).numpy_dtype).itemsize
    lossless = record.get("mode") == "lossless"
    target = {} if lossless or record.get("target_recall") is None else {"recall_at_k": record["target_recall"],
                                                                          "k": record.get("k"),
                                                                          "metric": record.get("metric")}
    achieved = {"recall_at_k": 1.0 if lossless else record.get("recall_at_k"), "k": record.get("k"),
                "measured_on": record.get("recall_measured_on"), "queries": record.get("recall_queries")}
    if record.get("recall_lower_bound") is not None:  # files of the solver that meets targets with confidence
        achieved["lower_bound"] = record["recall_lower_bound"]
        achieved["confidence"] = record.get("recall_confidence")
    doc = {"lossy": not lossless, "original_bytes": original, "stored_bytes": os.path.getsize(found.path),
           "shape": [record["count"], record["dim"]], "dtype": record["dtype"], "mode": record.get("mode"),
           "target": target, "achieved": achieved}
    if not lossless and record["dtype"] != "float32":  # a lossy collection decodes to float32 vectors
        doc["decodes_to"] = "float32"
    return doc


def _kv_cache(found: PathKind) -> dict[str, Any]:
    record = kv.describe(Path(found.path).read_bytes())
    itemsize = np.dtype(dtypes.by_name(record["dtype"]).numpy_dtype).itemsize
    values_shape = record.get("values_shape", record["shape"])
    original = (math.prod(record["shape"]) + math.prod(values_shape)) * itemsize
    target = {key: record[key] for key in ("budget_bits_per_element", "max_rel_error", "max_abs_error")
              if record.get(key) is not None}
    config = record.get("config", {})
    if not target:
        target = {key: config[key] for key in ("step", "levels", "max_abs_error") if config.get(key) is not None}
    achieved = {key: record[key] for key in record if key in ("attention_error", "relative_attention_error",
                                                               "output_error")}
    if record.get("bytes_per_element") is not None:  # in the unit a budget is given in
        achieved["bits_per_element"] = 8 * record["bytes_per_element"]
    return {"lossy": True, "original_bytes": original, "stored_bytes": os.path.getsize(found.path),
            "shape": record["shape"], "values_shape": values_shape, "dtype": record["dtype"],
            "quantizer": record.get("quantizer"), "target": target, "achieved": achieved}


def _compressed_folder(found: PathKind) -> dict[str, Any]:
    root = Path(found.path)
    files, original, stored = [], 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        entry: dict[str, Any] = {"name": path.relative_to(root).as_posix(), "stored_bytes": size, "role": "copied"}
        if path.suffix == ".tzip":
            entry["role"] = "shard"
            with TzipReader(path) as reader:
                tensor_bytes = sum(e.nbytes for e in reader.header.tensors.values())
                entry |= {"tensors": len(reader.header.tensors),
                          "original_bytes": original_size(reader.header.source, tensor_bytes)}
        elif path == root / MANIFEST_NAME:  # what the folder holds, written by compress: not of the original
            entry |= {"role": "manifest", "original_bytes": 0}
        elif identify(path).kind is Kind.GUARD:  # says "use tensorzip" to transformers
            entry |= {"role": "guard", "original_bytes": 0}
        else:  # copied as it is, or an index that keeps its original text inside
            text = original_index(path) if is_index(path.name) else None
            entry["original_bytes"] = size if text is None else len(text.encode("utf-8"))
            entry["role"] = "copied" if text is None else "index"
        original += entry["original_bytes"]
        stored += size
        files.append(entry)
    return {"lossy": False, "original_bytes": original, "stored_bytes": stored, "files": files}


def _uncompressed(found: PathKind) -> dict[str, Any]:
    path = Path(found.path)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    doc: dict[str, Any] = {"lossy": False, "original_bytes": size, "stored_bytes": None,
                           "compress_with": found.readers.command}
    if found.kind is Kind.SAFETENSORS:
        entries = SafetensorsFile(path).entries
        doc["tensors"] = [{"name": e.name, "dtype": e.spec.name, "shape": list(e.shape),
                           "original_bytes": e.end - e.begin} for e in entries]
    elif found.kind is Kind.NUMPY:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:  # object arrays: never unpickled
            raise InputFileError(f"{path}: not a plain numeric .npy array ({error})") from None
        doc |= {"shape": list(array.shape), "dtype": str(array.dtype)}
    return doc


def _dcp_folder(found: PathKind) -> dict[str, Any]:
    """A DCP folder, from its files alone (DCP's metadata is a pickle: never loaded here)."""
    folder = Path(found.path)
    rank_files = sorted(folder.glob(f"*{DCP_SUFFIX}"))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    doc: dict[str, Any] = {"lossy": False, "rank_files": len(rank_files), "read_with": found.readers.api}
    if found.kind is Kind.DCP_FOLDER:
        return doc | {"original_bytes": size, "stored_bytes": None, "compress_with": found.readers.api}
    record = read_dcp_record(folder)
    return doc | {"original_bytes": None, "stored_bytes": size, "format": record.get("format", "stream.tensorzip/1"),
                  "base": record.get("base")}


_HANDLERS = {
    Kind.CHECKPOINT: _checkpoint, Kind.FOLDER_ARCHIVE: _checkpoint, Kind.LOSSY_WEIGHTS: _lossy_weights,
    Kind.EMBEDDINGS: _embeddings, Kind.KV_CACHE: _kv_cache, Kind.COMPRESSED_FOLDER: _compressed_folder,
    Kind.SAFETENSORS: _uncompressed, Kind.PYTORCH: _uncompressed, Kind.NUMPY: _uncompressed,
    Kind.MODEL_FOLDER: _uncompressed, Kind.DCP_FOLDER: _dcp_folder, Kind.DCP_COMPRESSED: _dcp_folder,
}


def contents(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every tensor (and archived file) ``path`` holds, whatever its kind: ``name``, ``dtype``,
    ``shape``, ``original_bytes``, and where known ``stored_bytes`` and the ``file`` of a folder
    it lies in. A lossy layer lists what it decodes to (``tensorzip ls``)."""
    found = identify(path)
    root = Path(found.path)
    if found.kind in (Kind.SAFETENSORS, Kind.PYTORCH, Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE):
        return _file_contents(root, found.kind)
    if found.kind in (Kind.MODEL_FOLDER, Kind.COMPRESSED_FOLDER):
        rows = []
        for shard in sorted(p for p in root.rglob("*") if p.is_file()):
            kind = identify(shard).kind
            if kind in (Kind.SAFETENSORS, Kind.PYTORCH, Kind.CHECKPOINT) and (
                    kind is not Kind.PYTORCH or "pytorch_model" in shard.name):
                rows += [{**row, "file": shard.relative_to(root).as_posix()} for row in _file_contents(shard, kind)]
        return rows
    if found.kind is Kind.LOSSY_WEIGHTS:
        return [{"name": t["name"], "dtype": t.get("dtype"), "shape": t.get("shape"),
                 "original_bytes": t.get("original_bytes")} for t in info(root)["tensors"]]
    if found.kind in (Kind.EMBEDDINGS, Kind.NUMPY):
        doc = info(root)
        shape = doc["shape"]
        itemsize = np.dtype(dtypes.by_name(doc["dtype"]).numpy_dtype).itemsize if found.kind is Kind.EMBEDDINGS \
            else np.dtype(doc["dtype"]).itemsize
        row = {"name": "vectors" if found.kind is Kind.EMBEDDINGS else "array", "dtype": doc["dtype"],
               "shape": shape, "original_bytes": math.prod(shape) * itemsize}
        if found.kind is Kind.EMBEDDINGS:  # the whole file holds the one collection
            row["stored_bytes"] = doc["stored_bytes"]
        return [row]
    if found.kind is Kind.KV_CACHE:
        doc = info(root)
        itemsize = np.dtype(dtypes.by_name(doc["dtype"]).numpy_dtype).itemsize
        return [{"name": name, "dtype": doc["dtype"], "shape": shape, "original_bytes": math.prod(shape) * itemsize}
                for name, shape in (("keys", doc["shape"]), ("values", doc["values_shape"]))]
    raise found.refuse("tensorzip ls")


def _file_contents(path: Path, kind: Kind) -> list[dict[str, Any]]:
    if kind is Kind.SAFETENSORS:
        return [{"name": e.name, "dtype": e.spec.name, "shape": list(e.shape), "original_bytes": e.end - e.begin}
                for e in SafetensorsFile(path).entries]
    if kind is Kind.PYTORCH and is_torch_zip(path):  # any structure: its storages, as compress names them
        checkpoint = TorchZipCheckpoint(path)
        return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "original_bytes": s.nbytes}
                for s in checkpoint.storages]
    if kind is Kind.PYTORCH:
        state = TorchFile(path).state
        return [{"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                 "original_bytes": t.numel() * t.element_size()} for name, t in state.items()]
    with TzipReader(path) as reader:
        rows = [{"name": e.name, "dtype": e.spec.name, "shape": list(e.shape), "original_bytes": e.nbytes,
                 "stored_bytes": 0 if e.same_as else e.own_stored_bytes} for e in reader.header.tensors.values()]
        rows += [{"name": f.path + ("/" if f.data is None else ""), "dtype": "folder" if f.data is None else "file",
                  "shape": [f.size],
                  "original_bytes": f.size, "stored_bytes": f.data.stored_bytes if f.data is not None else 0}
                 for f in reader.header.files.values()]
    return rows
