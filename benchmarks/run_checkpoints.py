"""Training checkpoints: tensorzip against the peers on the same bytes, in one run (issue 19).

For each checkpoint of ``checkpoint_data.py`` (MiniLM fine-tuned with AdamW; FP32, and BF16
weights with FP32 master weights; early and late steps), every method stores the same
training state:

* ``torch.save``: the .pt itself (the baseline);
* ``zstd-3``: the whole .pt through zstd level 3;
* ``ZipNN``: ZipNN 0.5.4 per storage (its byte API with the storage's dtype; other
  dtypes and the non-tensor bytes through zstd-3);
* ``DCP``: ``torch.distributed.checkpoint.save`` with the default file-system writer, and
  with its ``ZStandard`` stream extension (``DCP+zstd``);
* ``tensorzip``: ``tensorzip compress ckpt.pt`` (restores the .pt byte for byte), and
  ``tensorzip.dcp.TensorzipWriter``;
* against the previous checkpoint: ``tensorzip compress --base previous.pt``, and a
  BitX-style XOR of each storage with the previous checkpoint's, then zstd-3.

Sizes per part (model, master, each optimizer state, the rest) show where the bytes are.
Every tensorzip output is decompressed and compared with the original byte for byte (DCP
outputs are loaded back and compared tensor by tensor). Save times of the DCP writers with
1 rank and with 2 (a real gloo group of two processes), and their peak RSS, are measured
separately (``--timing``).

    python benchmarks/checkpoint_data.py && python benchmarks/run_checkpoints.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
import torch.distributed.checkpoint as dcp
import zstandard
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint._extension import ZStandard

import tensorzip as tz
from checkpoint_data import EVERY, PAIRS, SAVED_AT, VARIANTS, checkpoint_paths, prepare_checkpoints
from machine import describe
from peers import ZIPNN_CHUNK
from results_file import write_section
from tensorzip.codecs.residual import residual
from tensorzip.dcp import TensorzipReader, TensorzipWriter
from tensorzip.dtypes import by_name as by_dtype
from tensorzip.inputs.torch_zip import TorchZipCheckpoint, checkpoint_part

BENCH = Path(__file__).resolve().parent
ZIPNN_NAMES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
PARTS_SHOWN = ("model", "master", "optimizer exp_avg", "optimizer exp_avg_sq")


def zstd3(data: bytes | memoryview) -> int:
    return len(zstandard.ZstdCompressor(level=3).compress(data))


def _other(part: str) -> str:
    return part if part in PARTS_SHOWN else "other"


def zipnn_parts(pt: Path) -> dict[str, int]:
    """ZipNN per storage (checked to decode exactly), the rest through zstd-3."""
    import zipnn

    checkpoint = TorchZipCheckpoint(pt)
    parts: dict[str, int] = defaultdict(int)
    coders: dict[str, object] = {}
    decoder = zipnn.ZipNN(input_format="byte", threads=1)
    for storage in checkpoint.storages:
        raw = checkpoint.array(storage).reshape(-1).view(np.uint8)
        part = _other(checkpoint_part(storage.name, checkpoint.flat))
        name = ZIPNN_NAMES.get(storage.dtype)
        if name is None or raw.size == 0:
            parts[part] += zstd3(raw.tobytes())
            continue
        if name not in coders:
            coders[name] = zipnn.ZipNN(input_format="byte", threads=1, bytearray_dtype=storage.dtype,
                                       compression_chunk=ZIPNN_CHUNK[name])
        blob = coders[name].compress(bytearray(raw.tobytes()))
        if bytes(decoder.decompress(blob)) != raw.tobytes():
            raise RuntimeError(f"ZipNN did not round-trip {storage.name}")
        parts[part] += len(blob)
    parts["other"] += zstd3(checkpoint.skeleton())
    return dict(parts)


def xor_parts(pt: Path, previous: Path) -> dict[str, int]:
    """BitX-style: each storage XORed with the previous checkpoint's same-named one, zstd-3."""
    new, old = TorchZipCheckpoint(pt), TorchZipCheckpoint(previous)
    before = {s.name: s for s in old.storages}
    parts: dict[str, int] = defaultdict(int)
    for storage in new.storages:
        raw = new.array(storage).reshape(-1).view(np.uint8)
        match = before.get(storage.name)
        if match is not None and match.nbytes == storage.nbytes:
            raw = raw ^ old.array(match).reshape(-1).view(np.uint8)
        parts[_other(checkpoint_part(storage.name, new.flat))] += zstd3(raw.tobytes())
    parts["other"] += zstd3(new.skeleton())
    return dict(parts)


def tensorzip_parts(pt: Path, out: Path, base: Path | None) -> dict[str, int]:
    """tensorzip compress (against ``base``), checked to restore the .pt byte for byte."""
    tz.compress_file(pt, out, base=base)
    restored = out.with_suffix(".restored.pt")
    tz.decompress_file(out, restored, base=base)
    if restored.read_bytes() != pt.read_bytes():
        raise RuntimeError(f"{out} does not restore {pt}")
    restored.unlink()
    doc = tz.info(out)
    parts: dict[str, int] = defaultdict(int)
    for part, figures in doc["parts"].items():
        parts[_other(part)] += figures["stored_bytes"]
    parts["other"] += out.stat().st_size - sum(parts.values())  # header: the skeleton, the tensor table
    return dict(parts)


def _pairs(checkpoint: TorchZipCheckpoint, suffix: str, partner: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tensor, partner) arrays, flat: each storage named ``...suffix`` with ``partner(name)``."""
    by_name = {s.name: s for s in checkpoint.storages}
    found = []
    for storage in checkpoint.storages:
        other = by_name.get(partner(storage.name)) if storage.name.endswith(suffix) else None
        if (other is not None and storage.dtype == "float32"
                and other.nbytes // by_dtype(other.dtype).itemsize == storage.nbytes // 4):
            found.append((np.ascontiguousarray(checkpoint.array(storage).reshape(-1)),
                          np.ascontiguousarray(checkpoint.array(other).reshape(-1))))
    return found


def _coded(arrays) -> int:
    return sum(len(tz.compress(a)) for a in arrays)


def transform_rows(late_master_in_file: int) -> list[str]:
    """Each optimizer-state transform the issue proposes, measured on the late checkpoints
    (every tensor coded alone with ``tz.compress``, so only the transform differs): FP32 MB,
    coded as it is, coded transformed. Only the master-against-BF16 one pays; it is built
    (the ``reference`` feature), and its figure is the .tzip's own."""
    late = checkpoint_paths()[("bf16-master", max(SAVED_AT))]
    fp32 = checkpoint_paths()[("fp32", max(SAVED_AT))]
    before = checkpoint_paths()[("fp32", max(SAVED_AT) - EVERY)]
    f32 = by_dtype("float32")
    rows = []
    pairs = [(m, b) for m, b in _pairs(TorchZipCheckpoint(late), "", lambda n: "model." + n.removeprefix("master."))
             if b.dtype == ml_dtypes.bfloat16 and m.dtype == np.float32]
    raw = sum(m.nbytes for m, _ in pairs)
    rows.append(("FP32 master weights against the BF16 weights widened (`sub`: in the .tzip, the `reference` "
                 "feature)", raw, _coded(m for m, _ in pairs), late_master_in_file, "**built**"))
    moments = _pairs(TorchZipCheckpoint(fp32), ".exp_avg", lambda n: n + "_sq")
    raw = sum(m.nbytes for m, _ in moments)
    plain = _coded(m for m, _ in moments)
    exponent_shift, xor_root, sub_root = 0, 0, 0
    for m, v in moments:
        mb, vb = m.view(np.uint32), v.view(np.uint32)
        root = (((vb >> np.uint32(23)) & np.uint32(0xFF)) + np.uint32(127)) >> np.uint32(1)  # sqrt(v)'s exponent
        shifted = (((mb >> np.uint32(23)) - root) & np.uint32(0xFF)) << np.uint32(23)
        exponent_shift += len(tz.compress(((mb & np.uint32(0x807FFFFF)) | shifted).view(np.float32)))
        power = (root << np.uint32(23)).view(np.float32)
        xor_root += len(tz.compress(residual(m, power, "xor", f32)))
        sub_root += len(tz.compress(residual(m, power, "sub", f32)))
    rows += [("exp_avg: its exponent minus that of sqrt(exp_avg_sq)", raw, plain, exponent_shift, "no"),
             ("exp_avg against sqrt(exp_avg_sq) as a power of two (`xor`)", raw, plain, xor_root, "no"),
             ("exp_avg against sqrt(exp_avg_sq) as a power of two (`sub`)", raw, plain, sub_root, "no")]
    old_checkpoint, new = TorchZipCheckpoint(before), TorchZipCheckpoint(fp32)
    old = {s.name: s for s in old_checkpoint.storages}
    raw = plain = against = scaled = 0
    for storage in new.storages:
        if not storage.name.endswith("exp_avg_sq") or storage.name not in old:
            continue
        v = np.ascontiguousarray(new.array(storage).reshape(-1))
        previous = np.ascontiguousarray(old_checkpoint.array(old[storage.name]).reshape(-1))
        raw += v.nbytes
        plain += len(tz.compress(v))
        against += len(tz.compress(residual(v, previous, "sub", f32)))
        decayed = (previous * np.float32(0.999 ** EVERY)).astype(np.float32)
        scaled += len(tz.compress(residual(v, decayed, "sub", f32)))
    rows += [("exp_avg_sq against the previous checkpoint's (`sub`, what `--base` does)", raw, plain, against,
              "**built** (`--base`)"),
             (f"exp_avg_sq against the previous checkpoint's times beta2^{EVERY} (`sub`)", raw, plain, scaled, "no")]
    return [f"| {what} | {_mb(raw)} | {_mb(plain)} | {_mb(coded)} ({plain / coded:.3f}x) | {kept} |"
            for what, raw, plain, coded, kept in rows]


def dcp_parts(folder: Path) -> dict[str, int]:
    """A DCP checkpoint's bytes by part: each item's stored length from its metadata."""
    metadata = FileSystemReader(folder).read_metadata()
    parts: dict[str, int] = defaultdict(int)
    for index, info in metadata.storage_data.items():
        parts[_other(checkpoint_part(index.fqn, False))] += info.length
    total = sum(p.stat().st_size for p in folder.iterdir())
    parts["other"] += total - sum(parts.values())  # the .metadata file, DCP's per-item framing
    return dict(parts)


def dcp_save(state: dict, folder: Path, method: str) -> float:
    writer = {"DCP": lambda: FileSystemWriter(folder), "DCP+zstd": lambda: FileSystemWriter(
        folder, _extensions=[ZStandard()]), "tensorzip DCP": lambda: TensorzipWriter(folder)}[method]()
    started = time.perf_counter()
    dcp.save(state, storage_writer=writer, no_dist=True)
    return time.perf_counter() - started


def _check_dcp(state: dict, folder: Path) -> None:
    """Loaded back into zeroed tensors, every one equal to the original's bytes."""
    flat = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*path, key))
        elif isinstance(value, torch.Tensor):
            flat[path] = value

    walk(state, ())
    target = _zeroed(state)
    dcp.load(target, storage_reader=TensorzipReader(folder), no_dist=True)
    for path, tensor in flat.items():
        got = target
        for key in path:
            got = got[key]
        if not torch.equal(got.reshape(-1).view(torch.uint8), tensor.contiguous().reshape(-1).view(torch.uint8)):
            raise RuntimeError(f"{folder}: {'.'.join(map(str, path))} differs after dcp.load")


def _zeroed(value):
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    return value


def measure(variant: str, step: int, base_step: int | None, work: Path, *, again: bool = False
            ) -> dict[str, dict[str, int]]:
    """Every method on one checkpoint (``again``: measured before, against another base: only DCP+zstd,
    for the last column, and the methods that use the base)."""
    pt = checkpoint_paths()[(variant, step)]
    previous = checkpoint_paths()[(variant, base_step)] if base_step is not None else None
    sizes: dict[str, dict[str, int]] = {}
    state = torch.load(pt, weights_only=True)
    if not again:
        sizes["torch.save"] = {"total": pt.stat().st_size}
        sizes["zstd-3 (whole .pt)"] = {"total": zstd3(pt.read_bytes())}
        sizes["ZipNN (per storage)"] = zipnn_parts(pt)
    for method in ("DCP+zstd",) if again else ("DCP", "DCP+zstd", "tensorzip DCP"):
        folder = work / f"{variant}-{step}-{method.replace(' ', '-')}"
        dcp_save(state, folder, method)
        if method == "tensorzip DCP":
            _check_dcp(state, folder)
        sizes[method] = dcp_parts(folder)
        if method == "DCP":  # the plain folder, converted by the CLI's path and restored byte for byte
            sizes["tensorzip compress (DCP folder)"] = compressed_dcp_folder(folder)
        if method != "tensorzip DCP":  # kept: a later checkpoint is coded against it
            shutil.rmtree(folder)
    if previous is not None:
        before = work / f"{variant}-{base_step}-tensorzip-DCP"
        if not before.exists():  # a base measured only as a base
            dcp_save(torch.load(previous, weights_only=True), before, "tensorzip DCP")
        folder = work / f"{variant}-{step}-tensorzip-DCP-based"
        dcp.save(state, storage_writer=TensorzipWriter(folder, base=before), no_dist=True)
        _check_dcp(state, folder)
        sizes["tensorzip DCP --base previous"] = dcp_parts(folder)
        shutil.rmtree(folder)
    if not again:
        sizes["tensorzip"] = tensorzip_parts(pt, work / f"{variant}-{step}.tzip", None)
    if previous is not None:
        sizes["tensorzip --base previous"] = tensorzip_parts(pt, work / f"{variant}-{step}-based.tzip", previous)
        sizes["XOR previous + zstd-3 (BitX-style)"] = xor_parts(pt, previous)
    for figures in sizes.values():
        figures.setdefault("total", sum(figures.values()))
    return sizes


def compressed_dcp_folder(folder: Path) -> dict[str, int]:
    """``tensorzip compress FOLDER`` on DCP's own folder (what `tz.compress_folder` writes), its
    total bytes; decompressed again and compared file by file."""
    packed, back = folder.with_name(folder.name + ".tzip"), folder.with_name(folder.name + ".back")
    tz.compress_folder(folder, packed)
    tz.decompress_folder(packed, back)
    for original in folder.iterdir():
        if original.read_bytes() != (back / original.name).read_bytes():
            raise RuntimeError(f"{original.name} differs after compress and decompress of {folder}")
    total = sum(p.stat().st_size for p in packed.iterdir())
    shutil.rmtree(packed)
    shutil.rmtree(back)
    return {"total": total}


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:,.2f}"


def size_rows(label: str, sizes: dict[str, dict[str, int]]) -> list[str]:
    reference = sizes["DCP+zstd"]["total"]
    rows = []
    for method, figures in sizes.items():
        cells = [_mb(figures.get(part)) for part in (*PARTS_SHOWN, "other")]
        rows.append(f"| {label} | {method} | {' | '.join(cells)} | {_mb(figures['total'])} | "
                    f"{reference / figures['total']:.2f}x |")
    return rows


def compress_speed_rows(work: Path) -> list[str]:
    """``compress_file`` from a .pt against from a .safetensors holding the same tensors (the
    MiniLM FP32 state dict), and from the late AdamW checkpoint: 1 thread, median of 5, alternating."""
    import safetensors.torch

    state = safetensors.torch.load_file(str(BENCH / ".data" / "minilm-fp32.safetensors"))
    sources = {"MiniLM state dict, .safetensors": work / "minilm.safetensors",
               "the same state dict, torch.save .pt": work / "minilm.pt",
               f"fp32 AdamW checkpoint, step {max(SAVED_AT)} (.pt)": checkpoint_paths()[("fp32", max(SAVED_AT))]}
    safetensors.torch.save_file(state, str(sources["MiniLM state dict, .safetensors"]))
    torch.save(state, sources["the same state dict, torch.save .pt"])
    seconds: dict[str, list[float]] = defaultdict(list)
    for _ in range(5):
        for label, path in sources.items():
            started = time.perf_counter()
            tz.compress_file(path, work / "speed.tzip", threads=1)
            seconds[label].append(time.perf_counter() - started)
    rows = []
    for label, path in sources.items():
        median = sorted(seconds[label])[2]
        rows.append(f"| {label} | {path.stat().st_size / 1e6:,.1f} | {median:.3f} | "
                    f"{path.stat().st_size / median / 1e6:,.0f} |")
    return rows


TIMING_RUNS = 7


def timing_rows(work: Path) -> list[str]:
    """DCP save time and peak RSS, 1 and 2 ranks, per writer, on the late FP32 checkpoint: the
    writers alternate within each of ``TIMING_RUNS`` rounds (a shared machine drifts), median
    and range of the slowest rank's wall time."""
    pt = checkpoint_paths()[("fp32", max(SAVED_AT))]
    methods = ("DCP", "DCP+zstd", "tensorzip DCP")
    rows = []
    for ranks in (1, 2):
        runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for attempt in range(TIMING_RUNS):
            for method in methods:
                folder = work / f"timing-{ranks}-{method.replace(' ', '-')}-{attempt}"
                runs[method].append(_ranks_save(pt, folder, method, ranks))
                shutil.rmtree(folder)
        for method in methods:
            seconds = sorted(r[0] for r in runs[method])
            peak = max(r[1] for r in runs[method])
            rows.append(f"| {ranks} | {method} | {seconds[len(seconds) // 2]:.2f} ({seconds[0]:.2f}-{seconds[-1]:.2f}) "
                        f"| {peak:,.0f} |")
    return rows


_RANK = r"""
import os, sys, time, json
import torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint._extension import ZStandard
from tensorzip.dcp import TensorzipWriter
rank, world, port, pt, folder, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:7]
torch.set_num_threads(1)
if world > 1:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
state = torch.load(pt, weights_only=True)
writer = {"DCP": lambda: FileSystemWriter(folder), "DCP+zstd": lambda: FileSystemWriter(folder,
          _extensions=[ZStandard()]), "tensorzip DCP": lambda: TensorzipWriter(folder, threads=1)}[method]()
if world > 1:
    dist.barrier()
started = time.perf_counter()
dcp.save(state, storage_writer=writer, no_dist=world == 1)
seconds = time.perf_counter() - started
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak}))
if world > 1:
    dist.destroy_process_group()
"""


def _ranks_save(pt: Path, folder: Path, method: str, ranks: int) -> tuple[float, float]:
    import json
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    processes = [subprocess.Popen([sys.executable, "-c", _RANK, str(rank), str(ranks), port, str(pt), str(folder),
                                   method], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for rank in range(ranks)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"{method} on {ranks} ranks failed:\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return max(r["seconds"] for r in results), max(r["peak_mb"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", action="store_true", help="also time DCP saves with 1 and 2 ranks")
    args = parser.parse_args()
    prepare_checkpoints()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tz-ckpt-", dir=BENCH / ".data") as scratch:
        work = Path(scratch)
        for variant in VARIANTS:
            done: set[int] = set()
            for step, base_step in PAIRS:
                label = f"{variant} step {step}" + (f" (base: step {base_step})" if base_step else "")
                sizes = measure(variant, step, base_step, work, again=step in done)
                if variant == "bf16-master" and step == max(SAVED_AT) and step not in done:
                    late_master = sizes["tensorzip"]["master"]
                done.add(step)
                rows += size_rows(label, sizes)
                print("\n".join(rows[-len(sizes):]), flush=True)
        timing = timing_rows(work) if args.timing else []
        speed = compress_speed_rows(work) if args.timing else []
    transforms = transform_rows(late_master)
    print("\n".join(transforms))
    _write(rows, timing, transforms, speed)


def _write(rows: list[str], timing: list[str], transforms: list[str], speed: list[str]) -> None:
    lines = [
        "## Training checkpoints (`benchmarks/run_checkpoints.py`, issue 19)",
        "",
        f"- Machine: {describe()}; {datetime.now(timezone.utc):%Y-%m-%d}; torch {torch.__version__}.",
        f"- Data: `checkpoint_data.py`: all-MiniLM-L6-v2 fine-tuned with AdamW on CPU, saved by `torch.save` at "
        f"steps {', '.join(map(str, SAVED_AT))} as `{{model, optimizer, scheduler, step, rng}}`; `bf16-master` "
        "holds BF16 weights and their FP32 master copy (`master`); `gpt2-*`: a GPT-2 made from a config (4 layers, "
        "256 wide, output layer tied to the token embeddings) trained from scratch on the same text, the same two "
        "ways. Coded against an earlier checkpoint (`(base: step N)`): "
        + ", ".join(f"{a} against {b}" for a, b in PAIRS if b) + f" ({EVERY} and {PAIRS[-1][0] - PAIRS[-1][1]} steps "
        "apart); a second row group for the same step lists only DCP+zstd and the methods that use the base.",
        "- MB per part (model, master, AdamW's exp_avg and exp_avg_sq; other: step counters, RNG, the pickle, "
        "zip or DCP framing, headers). Last column: DCP+zstd's total over the row's (higher is smaller). Every "
        "tensorzip output restored the .pt byte for byte; the tensorzip DCP checkpoint loaded back equal.",
        "- Reproduce: `python benchmarks/checkpoint_data.py && python benchmarks/run_checkpoints.py --timing`.",
        "",
        "| checkpoint | method | model | master | exp_avg | exp_avg_sq | other | total MB | vs DCP+zstd |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    lines += ["", f"Optimizer-state transforms, each measured on the step-{max(SAVED_AT)} checkpoints (every tensor "
              "coded alone with `tz.compress`, so only the transform differs; the built master row: the .tzip's own "
              "figure); kept only where it pays:",
              "", "| transform | FP32 MB | coded as it is | coded transformed | kept |",
              "|---|---:|---:|---:|---|", *transforms]
    if timing:
        lines += ["", f"DCP save of the late FP32 checkpoint (median and range of {TIMING_RUNS} wall times of "
                  "`dcp.save`, the writers alternating, the slowest rank; peak RSS of the largest rank; torch threads "
                  "1 per rank, tensorzip threads 1 per rank):", "",
                  "| ranks | writer | seconds | peak MB |", "|---:|---|---:|---:|", *timing]
    if speed:
        lines += ["", "`tensorzip compress` from a PyTorch file against from a .safetensors file (file to file, "
                  "1 thread, median of 5):", "", "| input | MB | seconds | MB/s |", "|---|---:|---:|---:|", *speed]
    write_section(BENCH / "RESULTS.md", "checkpoints", "\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
