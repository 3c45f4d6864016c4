"""Loading weights: .safetensors against .tzip, in one run on the same data, where users load.

    python benchmarks/run_load.py [--gigabytes 2] [--repeats 3]

Two jobs, each for FP32 and BF16:

- **all-MiniLM-L6-v2 into a model**: ``transformers.AutoModel.from_pretrained(folder)`` against
  ``tensorzip.hf.transformers.from_pretrained(AutoModel, folder.tzip)`` (a compressed folder; over
  HTTP the user's paths are: download the folder, then ``from_pretrained``; and our loader
  given the URL of the folder archive, read by byte ranges);
- **the scale benchmark's multi-GB checkpoint as a raw state dict**: ``safetensors.torch.load_file``
  against ``tensorzip.hf.safetensors.load_file`` (over HTTP: download + ``safetensors.torch.load``,
  against ``load_file(URL)``).

Storage conditions: page cache warm (one untimed load first); cold (``posix_fadvise(DONTNEED)``
on every file before each run, after ``sync``); and a local HTTP server (``tests/range_server.py``,
real sockets, byte ranges) throttled to 100 MB/s and 1 GB/s shared by all connections. Each
measurement runs in a fresh interpreter (imports done before the clock starts) and reports the
wall time of the load call and the peak RSS (VmHWM) above the interpreter's peak before it; the
median of ``--repeats`` runs is kept. tensorzip runs with 1 thread and with all cores. Every
loaded state dict is fingerprinted (CRC-32C of each tensor's bytes, outside the timing) and
must equal the original's. Results: the ``load`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

import tensorzip as tz  # noqa: E402
from data import DATA_DIR  # noqa: E402
from machine import describe, package_version  # noqa: E402
from range_server import range_server  # noqa: E402
from results_file import write_section  # noqa: E402
from scale_data import make_scale_checkpoint  # noqa: E402
from tensorzip import sample_data  # noqa: E402

_CHILD = r"""
import json, os, sys, time, urllib.request
import torch, transformers, safetensors.torch
transformers.AutoModel, transformers.BertModel, transformers.modeling_utils  # lazy imports, before the clock
import fsspec.implementations.http  # noqa: F401  (0.5 s of aiohttp; paid once per process, like the above)
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
import tensorzip
from tensorzip import _native
from tensorzip.hf import safetensors as tzst
from tensorzip.hf.transformers import from_pretrained

def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

def download(url, folder, name):
    path = os.path.join(folder, name)
    with urllib.request.urlopen(url) as response, open(path, "wb") as out:
        while piece := response.read(1 << 20):
            out.write(piece)
    return path

job = json.loads(sys.argv[1])
loader, source, threads = job["loader"], job["source"], job["threads"]
torch.set_num_threads(os.cpu_count())
baseline = peak_mb()
started = time.perf_counter()
if loader == "st-model":
    if source.startswith("http"):
        folder = job["scratch"]
        for name in ("config.json", "model.safetensors"):
            download(f"{source}/{name}", folder, name)
        source = folder
    model = transformers.AutoModel.from_pretrained(source)
    state = model.state_dict()
elif loader == "tz-model":
    model = from_pretrained(transformers.AutoModel, source, threads=threads)
    state = model.state_dict()
elif loader == "st-raw":
    if source.startswith("http"):
        with urllib.request.urlopen(source) as response:
            state = safetensors.torch.load(response.read())
    else:
        state = safetensors.torch.load_file(source)
else:
    state = tzst.load_file(source, threads=threads)
fingerprint = {}
for name, tensor in state.items():  # every byte read: safetensors' tensors are lazy memory maps until touched
    if name.endswith("position_ids"):
        continue  # a buffer transformers makes, not a weight of the file
    raw = tensor.detach().contiguous().view(-1).view(torch.uint8).numpy()
    fingerprint[name] = _native.crc32c(raw)
seconds = time.perf_counter() - started
peak = peak_mb()
print(json.dumps({"seconds": seconds, "peak_mb": peak - baseline, "fingerprint": fingerprint}))
"""


def _drop_cache(paths: list[Path]) -> None:
    os.sync()
    for path in paths:
        for file in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _run(job: dict, cold: list[Path] | None) -> dict:
    if cold is not None:
        _drop_cache(cold)
    with tempfile.TemporaryDirectory() as scratch:
        job = {**job, "scratch": scratch}
        result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{job['loader']} on {job['source']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _measure(job: dict, repeats: int, cold: list[Path] | None, expected: dict | None) -> dict:
    if cold is None and not job["source"].startswith("http"):
        _run(job, None)  # warm the page cache
    runs = [_run(job, cold) for _ in range(repeats)]
    fingerprint = runs[0]["fingerprint"]
    if expected is not None and fingerprint != expected:
        raise RuntimeError(f"{job['loader']} on {job['source']}: loaded tensors differ from the original's")
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": statistics.median(r["peak_mb"] for r in runs), "fingerprint": fingerprint}


def _bf16_folder(fp32_folder: Path, target: Path) -> Path:
    if not (target / "model.safetensors").exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(fp32_folder / "config.json", target / "config.json")
        sample_data.derive_dtype_copy(fp32_folder / "model.safetensors", target / "model.safetensors", "bfloat16")
    return target


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0, help="size of the scale checkpoint (FP32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-scale", action="store_true",
                        help="MiniLM only; the scale rows already in RESULTS.md are kept")
    parser.add_argument("--only-scale", action="store_true",
                        help="the scale checkpoint only; the MiniLM rows already in RESULTS.md are kept")
    parser.add_argument("--conditions", default="warm,cold,http",
                        help="comma-separated subset of warm,cold,http; a subset prints its rows and writes nothing")
    args = parser.parse_args()
    conditions = set(args.conditions.split(","))
    cores = os.cpu_count() or 1
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tz-load-", dir=DATA_DIR))
    rows: list[str] = []
    try:
        minilm = sample_data.fetch_minilm_folder()
        fp32_folder = work / "minilm-fp32"
        fp32_folder.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(minilm / name, fp32_folder / name)
        cases = [] if args.only_scale else [
            ("MiniLM FP32", "model", fp32_folder),
            ("MiniLM BF16", "model", _bf16_folder(fp32_folder, work / "minilm-bf16"))]
        if not args.skip_scale:
            scale = make_scale_checkpoint(args.gigabytes)
            bf16 = work / "scale-bf16.safetensors"
            sample_data.derive_dtype_copy(scale, bf16, "bfloat16")
            cases += [(f"scale {args.gigabytes:g} GB FP32", "raw", scale),
                      (f"scale {args.gigabytes / 2:g} GB BF16", "raw", bf16)]
        for label, kind, original in cases:
            rows += _case(label, kind, original, work, args.repeats, cores, conditions)
            print("\n".join(rows[-12:]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if conditions != {"warm", "cold", "http"}:
        return
    if args.only_scale:
        rows = _kept_rows("| MiniLM") + rows
    if args.skip_scale:
        rows = rows + _kept_rows("| scale")
    _write(rows, cores, args)


def _kept_rows(prefix: str) -> list[str]:
    """Rows of the load table already in RESULTS.md (another run's cases)."""
    text = (BENCH / "RESULTS.md").read_text()
    if "<!-- begin:load -->" not in text:
        return []
    section = text.split("<!-- begin:load -->", 1)[1].split("<!-- end:load -->", 1)[0]
    return [line for line in section.splitlines() if line.startswith(prefix)]


def _case(label: str, kind: str, original: Path, work: Path, repeats: int, cores: int,
          conditions: set[str]) -> list[str]:
    """Every condition for one checkpoint: rows of the results table."""
    served = work / f"served-{label.replace(' ', '-')}"
    served.mkdir()
    if kind == "model":
        compressed = work / f"{label.replace(' ', '-')}.tzip"
        tz.compress_folder(original, compressed)
        tz.compress_file(original, served / "model.tzip")  # the archive, for URLs
        for name in ("config.json", "model.safetensors"):
            os.link(original / name, served / name)
        local = {"st": str(original), "tz": str(compressed)}
        remote = {"st": "", "tz": "/model.tzip"}
        loaders = {"st": "st-model", "tz": "tz-model"}
        stored = {"st": _size(original / "model.safetensors"), "tz": _size(compressed)}
    else:
        compressed = work / f"{label.replace(' ', '-')}.tzip"
        tz.compress_file(original, compressed)
        os.link(original, served / "model.safetensors")
        os.link(compressed, served / "model.tzip")
        local = {"st": str(original), "tz": str(compressed)}
        remote = {"st": "/model.safetensors", "tz": "/model.tzip"}
        loaders = {"st": "st-raw", "tz": "tz-raw"}
        stored = {"st": _size(original), "tz": _size(compressed)}
    ratio = stored["st"] / stored["tz"]
    rows = []
    expected = None
    thread_counts = sorted({1, cores})

    def add(condition: str, results: dict[str, dict], base_seconds: float) -> None:
        for who, result in results.items():
            speedup = base_seconds / result["seconds"]
            rows.append(f"| {label} | {condition} | {who} | {result['seconds']:.3f} | {speedup:.2f}x | "
                        f"{result['peak_mb']:,.0f} |")

    for condition in [c for c in ("warm", "cold") if c in conditions]:
        cold = [Path(local["st"]), Path(local["tz"])] if condition == "cold" else None
        st = _measure({"loader": loaders["st"], "source": local["st"], "threads": None}, repeats, cold, expected)
        expected = expected or st["fingerprint"]
        results = {".safetensors": st}
        for threads in thread_counts:
            results[f".tzip, {threads} thread{'s' if threads > 1 else ''}"] = _measure(
                {"loader": loaders["tz"], "source": local["tz"], "threads": threads}, repeats, cold, expected)
        add(f"{condition} (ratio {ratio:.3f})", results, st["seconds"])
    for bandwidth, name in ((100e6, "HTTP 100 MB/s"), (1e9, "HTTP 1 GB/s")) if "http" in conditions else ():
        with range_server(served, bandwidth=bandwidth) as (url, _):
            st = _measure({"loader": loaders["st"], "source": url + remote["st"], "threads": None}, repeats, None,
                          expected)
            expected = expected or st["fingerprint"]
            results = {".safetensors (download, then load)": st}
            for threads in thread_counts:
                results[f".tzip by range, {threads} thread{'s' if threads > 1 else ''}"] = _measure(
                    {"loader": loaders["tz"], "source": url + remote["tz"], "threads": threads}, repeats, None,
                    expected)
        add(name, results, st["seconds"])
    return rows


def _write(rows: list[str], cores: int, args: argparse.Namespace) -> None:
    text = "\n".join([
        "## Loading: .tzip against .safetensors where users load (`benchmarks/run_load.py`)",
        "",
        f"- Machine: {describe()}; {datetime.now(timezone.utc):%Y-%m-%d}.",
        "- MiniLM: the real all-MiniLM-L6-v2 into `transformers.AutoModel` (transformers "
        f"{package_version('transformers')}): `AutoModel.from_pretrained(folder)` against "
        "`tensorzip.hf.transformers.from_pretrained(AutoModel, folder.tzip)`; over HTTP, the folder downloaded "
        "then loaded, against our loader given the archive's URL. Scale: the scale benchmark's checkpoint "
        "(`scale_data.py`) as a raw state dict, `safetensors.torch.load_file` (safetensors "
        f"{package_version('safetensors')}) against `tensorzip.hf.safetensors.load_file`; over HTTP, the file "
        "downloaded into memory then `safetensors.torch.load`, against `load_file(URL)`.",
        "- Seconds: wall time of the load call and a CRC-32C of every loaded tensor (so every byte is really read: "
        "safetensors hands out memory maps that read nothing until touched) in a fresh interpreter (imports, "
        "transformers' lazy ones and fsspec's HTTP filesystem included, before the clock; `HF_HUB_OFFLINE=1`), "
        "median of "
        f"{args.repeats}. Peak MB: VmHWM above the interpreter's peak before the load. Cold: `sync` and "
        "`posix_fadvise(DONTNEED)` on every file before each run. HTTP: `tests/range_server.py`, a real local "
        "server throttled for all connections together. Every loaded state dict's CRC-32C per tensor equals the "
        "original's. Speed-up: .safetensors' seconds over the row's.",
        f"- Reproduce: `python benchmarks/run_load.py --gigabytes {args.gigabytes:g} --repeats {args.repeats}`.",
        "",
        "| checkpoint | condition | loader | seconds | speed-up | peak MB |",
        "|---|---|---|---:|---:|---:|",
        *rows,
    ])
    write_section(BENCH / "RESULTS.md", "load", text)



if __name__ == "__main__":
    main()
