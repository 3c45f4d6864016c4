"""Hugging Face model folders compressed shard by shard: ``model_dir/`` -> ``model_dir.tzip/``.

The compressed folder mirrors the original (docs/format.md, "Model folders"):

- every ``*.safetensors`` file, at any depth, becomes a ``.tzip`` of the same stem,
  made by ``compress_file`` alone, so each one decompresses on its own to the
  identical shard (and is read alone by ``load_file``/``safe_open``);
- ``pytorch_model*.bin`` shards, and every other PyTorch file that
  ``torch.load(weights_only=True)`` accepts (a Trainer checkpoint's ``optimizer.pt``,
  ``scheduler.pt``, ``rng_state.pth``), become ``.tzip`` files likewise, restored byte
  for byte (``training_args.bin``, which pickles a Python object, is copied as it is);
- a ``*.safetensors.index.json`` (or ``pytorch_model*.bin.index.json``) is rewritten
  so its ``weight_map`` names the ``.tzip`` shards, and keeps its original text
  under ``"tensorzip": {"format": 1, "original_index": TEXT}``;
- a torch.distributed.checkpoint folder's rank files (``__0_0.distcp`` beside its
  ``.metadata``) become ``.tzip`` files too (``inputs/dcp_file.py``: each item's storages
  coded, the rest kept), restored byte for byte; ``.metadata`` is copied unread;
- every other file (config, tokenizer, README, subfolders) is copied unchanged.

Decompressing undoes each step, so the folder comes back byte for byte. Both
directions write into a hidden temporary folder renamed into place at the end: a
failure leaves no output, and the input is only read. ``compress_file(folder,
"x.tzip")`` still makes one archive of a folder (tensors repeated across shards
stored once); this layout keeps shards independent instead, as the Hub stores them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .container import TzipReader
from .container.format import MAGIC, PREAMBLE_SIZE
from .container.records import (
    DCP_SUFFIX,
    FOLDER_MANIFEST,
    GUARD_DIFFUSERS,
    GUARD_TRANSFORMERS,
    guard_bytes,
    is_folder_source,
    is_torch_source,
    load_json,
)
from .errors import CorruptDataError, HeaderError, InputFileError, OutputFileError, TensorzipError
from .files import (
    CompressionReport,
    DecompressionReport,
    ProgressCallback,
    SizeAndSpeed,
    VerifyReport,
    _resolve_threads,
    compress_file,
    decompress_file,
    verify_file,
)
from .inputs.dcp_file import is_dcp_rank_file
from .inputs.shards import MAX_INDEX_BYTES
from .inputs.torch_file import TORCH_SUFFIXES, is_torch_path, is_torch_zip, load_weights_only, looks_like_torch_file
from .inputs.tree import PERMISSION_BITS, walk_tree
from .outputs.atomic import atomic_directory

FORMAT_VERSION = 1
# The manifest's format: 2 adds "guards" (files a reader of format 1 would restore as files).
MANIFEST_FORMATS = (1, 2)
MANIFEST_FORMAT = 2
MANIFEST_NAME = FOLDER_MANIFEST  # a compressed folder's list of what it holds
INDEX_KEY = "tensorzip"  # the rewritten index's record of the original
SHARD_SUFFIX = ".tzip"

_SHARD, _INDEX, _COPY = "shard", "index", "copy"


def is_safetensors_shard(name: str) -> bool:
    return name.endswith(".safetensors")


def is_torch_shard(name: str) -> bool:
    """``pytorch_model.bin``, ``pytorch_model-00001-of-00002.bin``, ``diffusion_pytorch_model.bin``;
    other .bin/.pt files of a folder (``training_args.bin``, ``optimizer.pt``) are copied."""
    return name.endswith(".bin") and "pytorch_model" in name


def is_index(name: str) -> bool:
    return name.endswith(".safetensors.index.json") or (name.endswith(".bin.index.json") and "pytorch_model" in name)


@dataclass(frozen=True)
class FolderReport(SizeAndSpeed):
    """What ``compress_folder`` / ``decompress_folder`` did; sizes count every file."""

    source: str
    target: str
    original_bytes: int  # the uncompressed folder, every file
    compressed_bytes: int  # the compressed folder, every file
    seconds: float
    threads: int
    shards: list[Any] = field(default_factory=list)  # a CompressionReport / DecompressionReport per shard
    indexes: list[str] = field(default_factory=list)  # index files rewritten (or restored), relative paths
    copied: list[str] = field(default_factory=list)  # files copied unchanged, relative paths
    torch_files: list[str] = field(default_factory=list)  # restored by torch.save: tensors exact, file not

    @property
    def shard_original_bytes(self) -> int:
        return sum(s.original_bytes if isinstance(s, CompressionReport) else s.output_bytes for s in self.shards)

    @property
    def shard_compressed_bytes(self) -> int:
        return sum(s.compressed_bytes for s in self.shards)

    @property
    def dedup_saved_bytes(self) -> int:
        return sum(getattr(s, "dedup_saved_bytes", 0) for s in self.shards)

    @property
    def order0_bound_bytes(self) -> float:
        return sum(getattr(s, "order0_bound_bytes", 0.0) for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["shards"] = [s.to_json() for s in self.shards]
        doc.update(ratio=self.ratio, megabytes_per_second=self.megabytes_per_second,
                   shard_original_bytes=self.shard_original_bytes,
                   shard_compressed_bytes=self.shard_compressed_bytes,
                   dedup_saved_bytes=self.dedup_saved_bytes)
        return doc


@dataclass(frozen=True)
class _Item:
    kind: str  # _SHARD, _INDEX or _COPY
    source: str  # relative path in the folder read (POSIX separators)
    output: str  # relative path in the folder written
    size: int
    text: str | None = None  # the index text to write
    torch: bool = False  # a PyTorch shard (restored through torch.save)


@dataclass
class _Plan:
    folders: list[str] = field(default_factory=list)  # every subfolder, relative, parents first
    items: list[_Item] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(item.size for item in self.items)


def _walk(root: Path, doing: str | None = None) -> _Plan:
    """Every subfolder and file of ``root`` (``inputs.tree``: file links read through, folder
    links and special files refused), each file to be copied until the plan says otherwise.
    ``doing``: a compressed folder is being read; a link out of it is refused."""
    tree = walk_tree(root)
    if doing is not None:
        tree.refuse_links_leaving(doing)
    plan = _Plan(folders=[path for path, _ in tree.folders])
    plan.items = [_Item(_COPY, f.path, "", f.size) for f in tree.files]
    return plan


def _by_folder(items: list[_Item]) -> dict[str, list[_Item]]:
    groups: dict[str, list[_Item]] = {}
    for item in items:
        groups.setdefault(os.path.dirname(item.source), []).append(item)
    return groups


def _read_index(path: Path) -> str:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise InputFileError(f"{path}: index file is over {MAX_INDEX_BYTES} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: index file is not UTF-8") from None


def _rewritten_index(path: Path, text: str, shards: dict[str, str]) -> str:
    """The index with its ``weight_map`` naming the .tzip shards, and its original text."""
    doc = load_json(text, str(path), "the weights index", InputFileError)
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise InputFileError(f"{path}: not a weights index (no weight_map)")
    if INDEX_KEY in doc:
        raise InputFileError(f"{path}: already rewritten by tensorzip (the folder is compressed; decompress it)")
    missing = sorted({str(f) for f in doc["weight_map"].values() if not isinstance(f, str) or f not in shards})
    if missing:
        raise InputFileError(f"{path}: names shards that are not in the folder: {', '.join(missing[:3])}")
    doc["weight_map"] = {name: shards[file] for name, file in doc["weight_map"].items()}
    doc[INDEX_KEY] = {"format": FORMAT_VERSION, "original_index": text}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _compression_plan(root: Path) -> _Plan:
    """What becomes of each file, every check made before anything is written."""
    plan = _walk(root)
    items: list[_Item] = []
    found_shard = False
    for folder, group in _by_folder(plan.items).items():
        names = {os.path.basename(item.source) for item in group}
        shards: dict[str, str] = {}  # shard file name -> .tzip name
        if not folder and MANIFEST_NAME in names:
            raise InputFileError(f"{root}: already a compressed folder (it holds {MANIFEST_NAME}); compress a "
                                 "folder once: decompress this one first")
        for name in sorted(names):
            if name.endswith(SHARD_SUFFIX):
                raise InputFileError(f"{root / folder / name}: a .tzip file beside the weights; a compressed "
                                     "folder's .tzip files are its shards, so this one would be taken for a shard "
                                     "when decompressing: move it out, or use --archive (which keeps it as a file)")
            if is_safetensors_shard(name) or is_torch_shard(name) or _is_torch_checkpoint(root / folder / name) \
                    or is_dcp_rank_file(root / folder / name):
                out = name.rsplit(".", 1)[0] + SHARD_SUFFIX
                clash = next((s for s, o in shards.items() if o == out), None)
                if clash is not None:
                    raise InputFileError(f"{root / folder}: {clash} and {name} would both become {out}")
                shards[name] = out
        for item in group:
            name = os.path.basename(item.source)
            path = root / item.source
            if name in shards:
                found_shard = True
                out = f"{folder}/{shards[name]}" if folder else shards[name]
                items.append(_Item(_SHARD, item.source, out, item.size, torch=looks_like_torch_file(path)))
            elif is_index(name):
                text = _rewritten_index(path, _read_index(path), shards)
                items.append(_Item(_INDEX, item.source, item.source, item.size, text=text))
            else:
                items.append(dataclasses.replace(item, output=item.source))
    if not found_shard:
        raise InputFileError(f"{root}: no .safetensors (or pytorch_model*.bin, or DCP .distcp) files in the folder")
    plan.items = items
    return plan


def _is_torch_checkpoint(path: Path) -> bool:
    """A PyTorch file in a folder (not a ``pytorch_model*.bin`` shard, which must load) that
    is compressed rather than copied: a zip-format ``.pt``/``.pth``/``.bin`` that torch loads
    with ``weights_only=True``. One that it refuses (``training_args.bin``) is kept as it is."""
    if not is_torch_path(path) or not is_torch_zip(path):
        return False
    try:
        load_weights_only(path)
    except TensorzipError:
        return False
    return True


def _restored_name(path: Path) -> tuple[str, bool]:
    """The file name a .tzip shard restores to, and whether it is a PyTorch file."""
    with TzipReader(path) as reader:
        source = reader.header.source or {}
    if is_folder_source(source):
        raise InputFileError(f"{path}: a whole-folder archive, not one shard; decompress it on its own")
    stem = path.name[: -len(SHARD_SUFFIX)]
    if is_torch_source(source) and source.get("container") == "dcp":
        return stem + DCP_SUFFIX, True
    if is_torch_source(source):
        recorded = source.get("file")
        suffix = os.path.splitext(recorded)[1] if isinstance(recorded, str) else ""
        return stem + (suffix if suffix in TORCH_SUFFIXES else ".bin"), True
    return stem + ".safetensors", False


def original_index(path: Path) -> str | None:
    """The original text a rewritten index keeps; None for an index tensorzip did not write."""
    text = _read_index(path)
    try:
        doc = load_json(text, str(path), "the index")
    except HeaderError:
        return None
    if not isinstance(doc, dict) or INDEX_KEY not in doc:
        return None
    record = doc[INDEX_KEY]
    if not (isinstance(record, dict) and record.get("format") == FORMAT_VERSION
            and isinstance(record.get("original_index"), str)):
        raise HeaderError(f"{path}: its {INDEX_KEY!r} record is not one this release reads "
                          f"(format {FORMAT_VERSION} with the original index text)")
    return record["original_index"]


def _decompression_plan(root: Path) -> _Plan:
    plan = _walk(root, "decoding a compressed folder")
    guards = _check_manifest(root, plan)
    plan.items = [item for item in plan.items if item.source != MANIFEST_NAME and item.source not in guards]
    items: list[_Item] = []
    for folder, group in _by_folder(plan.items).items():
        outputs: dict[str, str] = {}  # output name -> the file it comes from
        for item in group:
            name = os.path.basename(item.source)
            path = root / item.source
            if name.endswith(SHARD_SUFFIX):
                out, torch = _restored_name(path)
                item = _Item(_SHARD, item.source, "", item.size, torch=torch)
            elif is_index(name) and (text := original_index(path)) is not None:
                out = name
                item = _Item(_INDEX, item.source, "", item.size, text=text)
            else:
                out = name
            if out in outputs:
                raise InputFileError(f"{root / folder}: {outputs[out]} and {name} would both restore {out}")
            outputs[out] = name
            items.append(dataclasses.replace(item, output=f"{folder}/{out}" if folder else out))
    if not any(item.kind != _COPY for item in items):
        raise InputFileError(f"{root}: not a compressed model folder (no .tzip shards, no tensorzip index)")
    _check_index_complete(root, items)
    plan.items = items
    return plan


def _manifest_entries(root: Path, files: list[str], folders: list[str]) -> dict[str, Any]:
    """What a compressed folder holds: every file's size and digest (BLAKE2b-256; a .tzip
    shard's by its size and header checksum, which its own chunk checksums back) and every
    subfolder, so a file deleted, changed, swapped or added after compression is found."""
    entries: dict[str, Any] = {}
    for relative in files:
        path = root / relative
        if relative.endswith(SHARD_SUFFIX):
            with open(path, "rb") as handle:
                preamble = handle.read(PREAMBLE_SIZE)
            entries[relative] = {"size": path.stat().st_size, "preamble": preamble.hex()}
        else:
            digest = hashlib.blake2b(digest_size=32)
            with open(path, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
            entries[relative] = {"size": path.stat().st_size, "blake2b": digest.hexdigest()}
    return {"format": MANIFEST_FORMAT, "files": entries, "folders": sorted(folders)}


def _write_manifest(out: Path) -> None:
    guards = _write_guards(out)
    tree = walk_tree(out)
    doc = _manifest_entries(out, [f.path for f in tree.files], [path for path, _ in tree.folders])
    doc["guards"] = guards
    (out / MANIFEST_NAME).write_text(json.dumps(doc, indent=1) + "\n")


def _write_guards(out: Path) -> list[str]:
    """In each folder of .tzip shards, the file transformers and diffusers open first
    (``model.safetensors``, ``diffusion_pytorch_model.safetensors``) as a guard: a valid
    safetensors prefix whose one entry's dtype is a sentence, which safetensors quotes in
    its error ("unknown variant `...`"). A user who loads the compressed folder with plain
    transformers reads what to do instead of an unpickling error from the .tzip shards."""
    guards = []
    for folder in sorted({p.parent for p in out.rglob("*" + SHARD_SUFFIX) if p.is_file()}):
        stems = [p.name for p in folder.iterdir() if p.name.endswith(SHARD_SUFFIX)]
        name = GUARD_DIFFUSERS if any(s.startswith("diffusion_pytorch_model") for s in stems) else GUARD_TRANSFORMERS
        path = folder / name
        if path.exists():
            continue
        path.write_bytes(guard_bytes())
        guards.append(path.relative_to(out).as_posix())
    return guards


def _check_manifest(root: Path, plan: _Plan) -> set[str]:
    """A compressed folder is what tensorzip wrote, file for file (folders written before the
    manifest existed have none and are read as they are). Returns its guard files."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return set()
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise CorruptDataError(f"{path}: the manifest is over {MAX_INDEX_BYTES} bytes")
    recorded = load_json(path.read_bytes(), str(path), "the folder's manifest", CorruptDataError)
    if not (isinstance(recorded, dict) and recorded.get("format") in MANIFEST_FORMATS
            and isinstance(recorded.get("files"), dict) and isinstance(recorded.get("folders"), list)
            and isinstance(recorded.get("guards", []), list)
            and all(isinstance(g, str) and g in recorded["files"] for g in recorded.get("guards", []))):
        raise CorruptDataError(f"{path}: not a manifest this release reads (formats {MANIFEST_FORMATS})")
    files = [item.source for item in plan.items if item.source != MANIFEST_NAME]
    found = _manifest_entries(root, files, plan.folders)
    missing = sorted(set(recorded["files"]) - set(found["files"]))
    extra = sorted(set(found["files"]) - set(recorded["files"]))
    changed = sorted(name for name in set(found["files"]) & set(recorded["files"])
                     if found["files"][name] != recorded["files"][name])
    lost_folders = sorted(set(recorded["folders"]) - set(found["folders"]))
    for what, names in (("is missing", missing), ("changed since it was compressed", changed),
                        ("was not written by tensorzip compress", extra), ("(a folder) is missing", lost_folders)):
        if names:
            raise CorruptDataError(f"{root / names[0]} {what}" + (f" (and {len(names) - 1} more)" if len(names) > 1
                                                                   else "") +
                                   f"; the compressed folder no longer matches its manifest ({MANIFEST_NAME})")
    return set(recorded.get("guards", []))


def _check_index_complete(root: Path, items: list[_Item]) -> None:
    """Every weight file an index names is restored: a compressed folder missing a shard
    must fail (verify and decompress), not restore a folder whose index names a lost file."""
    outputs = {item.output for item in items}
    for item in items:
        if item.kind != _INDEX or item.text is None:
            continue
        try:
            doc = load_json(item.text, item.source, "the index")
        except HeaderError:
            continue  # an index we cannot read is restored as it is
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            continue
        folder = os.path.dirname(item.output)
        for name in sorted({f for f in weight_map.values() if isinstance(f, str)}):
            wanted = f"{folder}/{name}" if folder else name
            if wanted not in outputs:
                stem = name.rsplit(".", 1)[0]
                raise CorruptDataError(f"{root}: its index {item.source} names {name}, but the folder has no "
                                       f"{stem}{SHARD_SUFFIX} (nor {name}): a shard is missing")



def _check_paths(source: Path, target: Path) -> None:
    """The output may be neither the input, nor inside it, nor around it."""
    inside, outside = source.resolve(), target.resolve()
    if outside == inside or outside.is_relative_to(inside):
        raise OutputFileError(f"output {target} would be inside the input folder {source}; choose another")
    if inside.is_relative_to(outside):
        raise OutputFileError(f"output {target} would replace the folder holding the input {source}")


class _Progress:
    """One bar over every file's bytes; a shard advances it in proportion."""

    def __init__(self, total: int, callback: ProgressCallback | None):
        self.total, self.callback, self.done = total, callback, 0

    def part(self, weight: int) -> ProgressCallback | None:
        if self.callback is None:
            return None

        def update(done: int, total: int) -> None:
            share = weight * done // total if total else 0
            self.callback(self.done + min(share, weight), self.total)  # type: ignore[misc]

        return update

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self.callback is not None:
            self.callback(self.done, self.total)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _run(plan: _Plan, source: Path, target: Path, overwrite: bool, progress: ProgressCallback | None,
         shard: Callable[[Path, Path, _Item, ProgressCallback | None], Any],
         finish: Callable[[Path], None] = lambda out: None) -> tuple[list[Any], int]:
    """Write the plan's output into a temporary folder renamed to ``target`` at the end
    (``finish`` runs on the finished temporary folder, before the rename)."""
    tracker = _Progress(plan.total, progress)
    reports = []
    with atomic_directory(target, overwrite=overwrite) as out:
        for folder in plan.folders:
            (out / folder).mkdir()
        for item in plan.items:
            if item.kind == _SHARD:
                report = shard(source / item.source, out / item.output, item, tracker.part(item.size))
                reports.append(dataclasses.replace(report, source=str(source / item.source),
                                                   target=str(target / item.output)))
                os.chmod(out / item.output, stat.S_IMODE(os.stat(source / item.source).st_mode) & PERMISSION_BITS)
            elif item.kind == _INDEX:
                (out / item.output).write_bytes((item.text or "").encode("utf-8"))
                os.chmod(out / item.output, stat.S_IMODE(os.stat(source / item.source).st_mode) & PERMISSION_BITS)
            else:
                shutil.copy2(source / item.source, out / item.output)
            tracker.advance(item.size)
        for folder in sorted(plan.folders, key=lambda f: -f.count("/")):  # deepest first: a read-only
            os.chmod(out / folder, stat.S_IMODE(os.stat(source / folder).st_mode) & PERMISSION_BITS)  # one last
        finish(out)
        written = _folder_bytes(out)
    return reports, written


def compress_folder(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    threads: int | None = None,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    scheduler: Any = None,
    base: str | os.PathLike[str] | None = None,
    level: str = "default",
) -> FolderReport:
    """Compress a model folder into a folder of the same layout: each shard a .tzip of
    the same stem, the index rewritten to name them, every other file copied (``level``: as
    ``compress_file``'s, for every shard).

    With ``base`` (the model it was fine-tuned from: a folder, a compressed folder, a
    .safetensors or .tzip file), each shard's tensors are coded against the base's tensors
    of the same names; decompressing then needs the base (given, or beside the output).

    Each .tzip decompresses alone to its identical shard; ``decompress_folder``
    restores the whole folder byte for byte. The output appears whole or not at all.
    With ``scheduler`` (a Dask address or client), the safetensors shards' tensors are
    encoded on that cluster (see ``tensorzip.writing.cluster``); the files are the same bytes.
    """
    started = time.perf_counter()
    src, dst = Path(source), Path(target)
    plan = _compression_plan(src)
    _check_paths(src, dst)
    with contextlib.ExitStack() as stack:
        client = None
        if scheduler is not None:
            from .writing.cluster import connect

            client = stack.enter_context(connect(scheduler))

        def shard(path: Path, out: Path, item: _Item, progress: ProgressCallback | None) -> CompressionReport:
            remote = None if item.torch else client  # PyTorch shards are read (unpickled safely) here
            return compress_file(path, out, threads=threads, overwrite=False, progress=progress, scheduler=remote,
                                 base=base, level=level)

        if base is not None:
            _check_paths(Path(base), dst)
        reports, written = _run(plan, src, dst, overwrite, progress, shard, _write_manifest)
    return FolderReport(
        source=str(src), target=str(dst), original_bytes=plan.total, compressed_bytes=written,
        seconds=time.perf_counter() - started, threads=_resolve_threads(threads), shards=reports,
        indexes=[i.source for i in plan.items if i.kind == _INDEX],
        copied=[i.source for i in plan.items if i.kind == _COPY],
        torch_files=[i.source for i in plan.items if i.torch],
    )


def decompress_folder(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    threads: int | None = None,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    base: str | os.PathLike[str] | None = None,
) -> FolderReport:
    """Restore the model folder ``compress_folder`` made ``source`` from: every file byte
    for byte (``pytorch_model*.bin`` shards: their tensors bit for bit, written by
    ``torch.save``). Shards coded against a base need it: ``base``, or the file or folder
    their headers name, beside ``source``. The output appears whole or not at all."""
    started = time.perf_counter()
    src, dst = Path(source), Path(target)
    plan = _decompression_plan(src)
    _check_paths(src, dst)

    def shard(path: Path, out: Path, item: _Item, progress: ProgressCallback | None) -> DecompressionReport:
        return decompress_file(path, out, threads=threads, overwrite=False, progress=progress,
                               base=shard_base(path, src, base))

    reports, written = _run(plan, src, dst, overwrite, progress, shard)
    return FolderReport(
        source=str(src), target=str(dst), original_bytes=written, compressed_bytes=_folder_bytes(src),
        seconds=time.perf_counter() - started, threads=_resolve_threads(threads), shards=reports,
        indexes=[i.output for i in plan.items if i.kind == _INDEX],
        copied=[i.output for i in plan.items if i.kind == _COPY],
        torch_files=[i.output for i in plan.items if i.torch],
    )


def verify_folder(
    source: str | os.PathLike[str],
    *,
    against: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    base: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Decode every tensor of every shard of a compressed folder (checking every checksum);
    with ``against``, the original folder, compare every file with it: tensors bit for bit
    (safetensors headers too), the index and the copied files byte for byte, no file missing
    or extra."""
    started = time.perf_counter()
    src = Path(source)
    plan = _decompression_plan(src)
    original = Path(against) if against is not None else None
    if original is not None:
        expected = {item.output for item in plan.items}
        present = {p.relative_to(original).as_posix() for p in original.rglob("*") if p.is_file()}
        if expected != present:
            odd = sorted(expected ^ present)[:3]
            raise CorruptDataError(f"{src}: its files are not those of {original} ({', '.join(odd)})")
    tracker = _Progress(plan.total, progress)
    tensors = tensor_bytes = 0
    for item in plan.items:
        twin = original / item.output if original is not None else None
        if twin is not None and _mode(twin) != _mode(src / item.source):  # the compressed copy carries the mode
            raise CorruptDataError(f"{src / item.source}: mode {_mode(src / item.source):o}, {twin} has "
                                   f"{_mode(twin):o}")
        if item.kind == _SHARD:
            report = verify_file(src / item.source, against=twin, threads=threads, progress=tracker.part(item.size),
                                 base=shard_base(src / item.source, src, base))
            tensors += report.tensors
            tensor_bytes += report.tensor_bytes
        elif twin is not None:
            data = (item.text or "").encode("utf-8") if item.kind == _INDEX else (src / item.source).read_bytes()
            if data != twin.read_bytes():
                raise CorruptDataError(f"{src / item.source}: differs from {twin}")
        tracker.advance(item.size)
    return VerifyReport(str(src), tensors, tensor_bytes, None if against is None else str(against),
                        time.perf_counter() - started)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode) & PERMISSION_BITS


def shard_base(shard: Path, root: Path, given: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    """The base a shard of a compressed folder decodes against: the one given, else the one
    its header names beside the compressed folder (where ``compress --base`` found it, and
    where a fine-tune's folder is kept beside its base's), else the reader's own look-up
    beside the shard."""
    if given is not None:
        return given
    with TzipReader(shard) as reader:
        return base_beside_folder(shard, root, reader.base_name)


def base_beside_folder(shard: Path, root: Path, recorded: str | None) -> Path | None:
    """``shard_base`` for a shard whose header (already read) names ``recorded``."""
    if recorded is not None and (root.parent / recorded).exists() and not (shard.parent / recorded).exists():
        return root.parent / recorded
    return None


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files holding a model folder's weights, in order: those its index names
    (``.tzip`` shards in a compressed folder); without an index, its top-level .tzip
    files, else .safetensors files, else ``pytorch_model*.bin`` files."""
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"{root}: not a folder")
    children = sorted(p for p in root.iterdir() if p.is_file())
    indexes = [p for p in children if is_index(p.name)]
    candidates = [p for p in indexes if original_index(p) is not None] or indexes
    # A Hub folder may carry both a safetensors and a PyTorch index: transformers prefers safetensors.
    candidates = [p for p in candidates if is_safetensors_index(p.name)] or candidates
    if len(candidates) > 1:
        raise InputFileError(f"{root}: more than one weights index ({', '.join(p.name for p in candidates)})")
    if candidates:
        index = candidates[0]
        doc = load_json(_read_index(index), str(index), "the weights index", InputFileError)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise InputFileError(f"{index}: not a weights index (no weight_map)")
        files = []
        for name in dict.fromkeys(weight_map.values()):
            if "/" in name or "\\" in name or name in ("", ".", "..") or not (root / name).is_file():
                raise InputFileError(f"{index}: names {name!r}, which is not a file of the folder")
            files.append(root / name)
        return files
    for test in (lambda n: n.endswith(SHARD_SUFFIX) and _is_tzip(root / n) and _holds_weights(root / n),
                 is_safetensors_shard, is_torch_shard):
        files = [p for p in children if test(p.name)]
        if files:
            return _preferred_tzip(files)
    raise InputFileError(f"{root}: no weights found (.tzip, .safetensors or pytorch_model*.bin files)")


def _holds_weights(shard: Path) -> bool:
    """A compressed folder's .tzip that restores to a weights file (``model.safetensors``,
    ``pytorch_model.bin``), not to a Trainer's ``optimizer.pt`` or ``rng_state.pth``."""
    try:
        name, _ = _restored_name(shard)
    except TensorzipError:
        return True  # read as weights, so the reader names what is wrong with it
    return is_safetensors_shard(name) or is_torch_shard(name)


def is_safetensors_index(name: str) -> bool:
    return name.endswith(".safetensors.index.json")


def _is_tzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def _preferred_tzip(files: list[Path]) -> list[Path]:
    """Of .tzip shards made from safetensors and from PyTorch files side by side (a Hub folder
    that carried both), the safetensors ones, as transformers prefers them."""
    if not files[0].name.endswith(SHARD_SUFFIX):
        return files
    kinds = {}
    for path in files:
        with TzipReader(path) as reader:
            kinds[path] = (reader.header.source or {}).get("format")
    return [p for p in files if not is_torch_source({"format": kinds[p]})] or files
