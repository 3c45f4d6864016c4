"""Compressing at scale: a multi-GB checkpoint locally (native threads) and on a Dask
cluster (``tensorzip compress --scheduler``), with peak memory, throughput and the two
outputs compared byte for byte.

    python benchmarks/run_scale.py [--gigabytes 4] [--workers 2]

The checkpoint is the file ``scale_data.py`` makes. Each run (local compress, cluster
compress, local decompress) is a fresh interpreter, so its peak RSS is its own; the
results go to the ``scale`` section of ``benchmarks/RESULTS.md``. The cluster is a
``LocalCluster`` of ``workers`` processes with one thread each on this machine (so the
workers share its filesystem, as the cluster path assumes); its start-up is timed apart
from the compression. ``compress_with_cluster`` is the building block other runs call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import tensorzip
from machine import describe
from results_file import write_section
from scale_data import make_scale_checkpoint
from tensorzip.files import compress_file


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: on Linux that
    survives exec, so a child started by a large parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def compress_with_cluster(path: str | os.PathLike[str], out: str | os.PathLike[str], workers: int = 2,
                          *, threads_per_worker: int = 1, measure_workers: bool = False) -> tuple:
    """Compress ``path`` into ``out`` on a fresh LocalCluster of ``workers`` processes; returns
    the report (its seconds exclude the cluster's start), the cluster's start-up seconds and,
    with ``measure_workers``, each worker's peak RSS in MB."""
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=threads_per_worker,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
        startup = time.perf_counter() - started
        report = compress_file(path, out, scheduler=client)
        if not measure_workers:
            return report, startup
        peaks = client.run(peak_rss_mb)
    return report, startup, sorted(peaks.values())


_CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
import tensorzip
from run_scale import peak_rss_mb
kind, source, target, workers = {kind!r}, {source!r}, {target!r}, {workers!r}
if kind == "cluster":
    import distributed  # noqa: F401  (counted in the baseline, like tensorzip itself)
    from run_scale import compress_with_cluster
baseline = peak_rss_mb()
extra = {{}}
if kind == "compress":
    report = tensorzip.compress_file(source, target)
    seconds, mb = report.seconds, report.original_bytes / 1e6
elif kind == "decompress":
    report = tensorzip.decompress_file(source, target)
    seconds, mb = report.seconds, report.output_bytes / 1e6
else:
    report, startup, worker_rss = compress_with_cluster(source, target, workers, measure_workers=True)
    seconds, mb = report.seconds, report.original_bytes / 1e6
    extra = {{"startup": startup, "worker_peak_mb": worker_rss}}
peak = peak_rss_mb()
print(json.dumps({{"seconds": seconds, "mb": mb, "peak_mb": peak, "baseline_mb": baseline, **extra}}))
"""


def measured(kind: str, source: Path, target: Path, workers: int = 2) -> dict:
    """One run in a fresh interpreter, so its peak RSS is its own."""
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), kind=kind, source=str(source),
                         target=str(target), workers=workers)
    os.sync()  # start each run without the previous one's dirty pages still being written back
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0, help="size of the generated checkpoint")
    parser.add_argument("--workers", type=int, default=2, help="cluster worker processes (one thread each)")
    parser.add_argument("--out-dir", default=None, help="where the outputs go (default: a temporary folder)")
    args = parser.parse_args()
    source = make_scale_checkpoint(args.gigabytes)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.out_dir) as folder:
        local_out, cluster_out = Path(folder) / "local.tzip", Path(folder) / "cluster.tzip"
        restored = Path(folder) / "restored.safetensors"
        local = measured("compress", source, local_out)
        rows.append(("compress, local (2 native threads)", local, ""))
        remote = measured("cluster", source, cluster_out, args.workers)
        identical = _same_bytes(local_out, cluster_out)
        rows.append((f"compress, LocalCluster ({args.workers} worker processes x 1 thread)", remote,
                     f"workers' peak RSS {' / '.join(f'{w:,.0f}' for w in remote['worker_peak_mb'])} MB; "
                     f"cluster start {remote['startup']:.1f} s not counted; output byte-identical to "
                     f"local: {'yes' if identical else 'NO'}"))
        back = measured("decompress", local_out, restored)
        exact = _same_bytes(restored, source)
        rows.append(("decompress, local (2 native threads)", back, f"bit-identical: {'yes' if exact else 'NO'}"))
        ratio = source.stat().st_size / local_out.stat().st_size
    lines = [
        "## Scale: a multi-GB checkpoint, local threads vs a Dask LocalCluster", "",
        f"- Machine: {describe()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
        f"Python {platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"tensorzip {tensorzip.__version__}",
        f"- Data: `{source.name}` ({source.stat().st_size / 1e9:.2f} GB): every all-MiniLM-L6-v2 FP32 tensor "
        "repeated with a seeded 1e-3 relative perturbation per copy (`benchmarks/scale_data.py`); ratio "
        f"{ratio:.4f}.",
        "- Peak RSS: `ru_maxrss` of the process that ran the job (for the cluster: the driver; workers listed), "
        "each run in a fresh interpreter; 'of which the job': above the interpreter with its imports (tensorzip, "
        "and distributed for the cluster run). MB/s: input bytes (compress) or output bytes (decompress) per "
        "second, output written to the same disk (so write-back can bound it).",
        "- Reproduce: `python benchmarks/run_scale.py`.", "",
        "| run | MB/s | seconds | peak RSS (MB) | of which the job (MB) | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r, note in rows:
        lines.append(f"| {name} | {r['mb'] / r['seconds']:,.0f} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} | "
                     f"{r['peak_mb'] - r['baseline_mb']:,.0f} | {note} |")
    lines += ["", "This machine has 2 cores: the driver, the scheduler and both workers share them, so the cluster "
              "run measures the overhead of distribution (tasks, transfers of encoded chunks), not a speed-up; "
              "see `docs/scaling.md` for where the bottleneck moves on real clusters."]
    text = "\n".join(lines)
    print(text)
    write_section(Path(__file__).resolve().parent / "RESULTS.md", "scale", text)


def _same_bytes(a: Path, b: Path, block: int = 64 << 20) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    main()
