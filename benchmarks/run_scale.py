"""Compressing at scale: the same checkpoint locally (native threads) and on a Dask cluster
(``tensorzip compress --scheduler``), timed, with the two outputs compared byte for byte.

``compress_with_cluster`` is the building block other scale runs call; run as a script it
times one file both ways:

    python benchmarks/run_scale.py PATH [--workers 2] [--threads N]

PATH is a .safetensors file or a folder of shards (``scale_data.py`` makes a multi-GB
one). The cluster is a ``LocalCluster`` of ``workers`` processes with one thread each on
this machine (so the workers share its filesystem, as the cluster path assumes); its
start-up is timed apart from the compression. MB/s counts the input file's bytes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tensorzip.checkpoint import CompressionReport, compress_file


def compress_with_cluster(path: str | os.PathLike[str], out: str | os.PathLike[str], workers: int = 2,
                          *, threads_per_worker: int = 1) -> tuple[CompressionReport, float]:
    """Compress ``path`` into ``out`` on a fresh LocalCluster of ``workers`` processes; returns
    the report (its seconds exclude the cluster's start) and the cluster's start-up seconds."""
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=threads_per_worker,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
        startup = time.perf_counter() - started
        report = compress_file(path, out, scheduler=client)
    return report, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help=".safetensors file or folder of shards")
    parser.add_argument("--workers", type=int, default=2, help="cluster worker processes (one thread each)")
    parser.add_argument("--threads", type=int, default=None, help="native threads of the local run (default: all)")
    parser.add_argument("--out-dir", default=None, help="where the two outputs go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out_dir) as folder:
        local_out, cluster_out = Path(folder) / "local.tzip", Path(folder) / "cluster.tzip"
        local = compress_file(args.path, local_out, threads=args.threads)
        print(f"local    {local.original_bytes / 1e6:,.0f} MB in {local.seconds:.2f} s: "
              f"{local.megabytes_per_second:,.0f} MB/s ({local.threads} threads), ratio {local.ratio:.4f}")
        remote, startup = compress_with_cluster(args.path, cluster_out, args.workers)
        print(f"cluster  {remote.original_bytes / 1e6:,.0f} MB in {remote.seconds:.2f} s: "
              f"{remote.megabytes_per_second:,.0f} MB/s ({args.workers} workers, {remote.threads} threads; "
              f"cluster start {startup:.2f} s not counted)")
        identical = _same_bytes(local_out, cluster_out)
        print(f"outputs byte-identical: {identical}")
        if not identical:
            raise SystemExit("the cluster output differs from the local one")


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
