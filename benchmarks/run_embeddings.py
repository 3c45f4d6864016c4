"""Embedding collections at a recall target: tensorzip against float16, int8, binary,
faiss SQ/PQ/OPQ, Matryoshka truncation, PCA + int8 and lossless zstd, on the same
collection and queries in one run.

Data (``embedding_data.py``): all-MiniLM-L6-v2 embeddings, normalized, of passages
of the Python documentation and standard-library docstrings; 1,000 held-out
passages as queries; ground truth = exact top-10 by inner product in float32.

Every method is measured the same way: bytes per vector = everything stored
(codes, codebooks, scales, rotation matrices, headers) / collection size;
recall@10 of its top 10 (no rescoring), and of the top 10 after rescoring its
top 40 with the float32 originals; encode and search time (1,000 queries).

Run ``python benchmarks/run_embeddings.py`` (writes its section of ``benchmarks/RESULTS.md``).
"""

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

import tensorzip
import tensorzip.embeddings as tze
from embedding_data import prepare_embeddings
from embedding_peers import all_peers, exact_topk, recall_at_k
from machine import describe
from results_file import write_section
from tensorzip.embeddings.search import scores as score_block

K = 10
RESCORE = 40
TARGETS = (0.90, 0.95, 0.99)


def rescored(candidates: np.ndarray, queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Top K of each query's candidates by exact float32 inner product."""
    out = np.empty((len(queries), K), dtype=np.int64)
    for i, rows in enumerate(candidates):
        exact = score_block(queries[i : i + 1], base[rows], "ip")[0]
        out[i] = rows[np.lexsort((rows, -exact))[:K]]
    return out


def evaluate_peer(peer, base, queries, truth) -> dict:
    t0 = time.perf_counter()
    peer.build(base)
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = peer.search(queries, K)
    search = time.perf_counter() - t0
    wide = peer.search(queries, RESCORE)
    return {"method": peer.name, "bpv": peer.stored_bytes() / len(base), "recall": recall_at_k(found, truth),
            "recall_rescored": recall_at_k(rescored(wide, queries, base), truth), "encode_s": encode,
            "search_s": search}


def evaluate_tensorzip(label: str, base, queries, truth, **options) -> dict:
    t0 = time.perf_counter()
    blob = tze.compress(base, k=K, **options)
    encode = time.perf_counter() - t0
    collection = tze.open(blob)
    t0 = time.perf_counter()
    _, found = collection.search(queries, K)
    search = time.perf_counter() - t0
    _, wide = collection.search(queries, RESCORE)
    return {"method": label, "bpv": len(blob) / len(base), "recall": recall_at_k(found, truth),
            "recall_rescored": recall_at_k(rescored(wide, queries, base), truth), "encode_s": encode,
            "search_s": search, "solver_recall": collection.recall, "ours": True}


def tensorzip_points(base, queries, truth, levels) -> list[dict]:
    rows = [evaluate_tensorzip("tensorzip lossless", base, queries, truth, mode="lossless")]
    for mode in ("int8", "int4", "binary"):
        rows.append(evaluate_tensorzip(f"tensorzip {mode} (PCA, entropy-coded)", base, queries, truth, mode=mode))
    for rotation, grid in ((True, levels), (False, levels[::2])):
        for level in grid:
            rows.append(evaluate_tensorzip(f"tensorzip transform {'PCA' if rotation else 'axes'} D={level:.1e}",
                                           base, queries, truth, mode="transform", level=level, rotation=rotation))
    # Emphasis 0 (plain reverse water-filling, the MSE optimum) for comparison with the default 0.75.
    for level in levels[::2] * 10:
        rows.append(evaluate_tensorzip(f"tensorzip transform PCA emphasis 0 D={level:.1e}", base, queries, truth,
                                       mode="transform", level=level, rotation=True, emphasis=0.0))
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| method | bytes / vector | recall@10 | recall@10, top 40 rescored | encode s | search s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r["bpv"]):
        name = f"**{r['method']}**" if r.get("ours") else r["method"]
        lines.append(f"| {name} | {r['bpv']:,.1f} | {r['recall']:.4f} | {r['recall_rescored']:.4f} | "
                     f"{r['encode_s']:.2f} | {r['search_s']:.2f} |")
    return lines


def smallest(rows: list[dict], target: float) -> dict | None:
    passing = [r for r in rows if r["recall"] >= target]
    return min(passing, key=lambda r: r["bpv"]) if passing else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tensorzip levels; print only")
    args = parser.parse_args()
    paths = prepare_embeddings()
    base = np.load(paths["collection"]).astype(np.float32)
    queries = np.load(paths["queries"]).astype(np.float32)
    truth = exact_topk(base, queries, K)
    counts = json.loads(paths["passages"].read_text())["counts"]["collection_by_source"]
    sources = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in counts.items())
    top_variance = float(np.linalg.eigvalsh(np.cov(base[:20000].T)).max())
    levels = top_variance * np.geomspace(1e-6, 3e-3, 4 if args.quick else 10)

    peers = [evaluate_peer(p, base, queries, truth) for p in all_peers(base.shape[1])]
    ours = tensorzip_points(base, queries, truth, levels)
    solver_rows = []
    for target in TARGETS:
        row = evaluate_tensorzip(f"tensorzip --recall {target}", base, queries, truth, recall=target)
        solver_rows.append((target, row))

    lines = [
        "## Embedding collections at a recall target", "",
        f"- Machine: {describe()}; Python {platform.python_version()}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- tensorzip {tensorzip.__version__}, faiss {metadata.version('faiss-cpu')}, numpy {np.__version__}",
        f"- Data: {len(base):,} all-MiniLM-L6-v2 embeddings (d = {base.shape[1]}, normalized) of passages of "
        f"offline text ({sources}); {len(queries):,} other passages as queries; ground truth = exact top-10 by "
        "inner product in float32 (`benchmarks/embedding_data.py`, seeded).",
        "- Reproduce: `python benchmarks/run_embeddings.py`. Bytes per vector count everything stored "
        "(codes, codebooks, scales, PCA matrices, headers) over the collection; search time is for all queries, "
        "1 process on this machine.", "",
        *table(peers + ours), "",
        "### The solver: `tensorzip embeddings compress --recall T`", "",
        "It measures recall on 500 rows of the collection held out as queries; the column 'recall@10 "
        "(benchmark queries)' is measured on the 1,000 separate query passages.", "",
        "| target | bytes / vector | recall@10, solver's held-out rows | recall@10, benchmark queries | "
        "rescored | encode s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for target, r in solver_rows:
        lines.append(f"| {target} | {r['bpv']:,.1f} | {r['solver_recall']:.4f} | {r['recall']:.4f} | "
                     f"{r['recall_rescored']:.4f} | {r['encode_s']:.1f} |")
    lines += ["", "| recall@10 target (no rescoring) | tensorzip bytes / vector | smallest peer | ratio | "
              "<= 0.8x |", "|---:|---:|---|---:|---|"]
    candidates = ours + [r for _, r in solver_rows]
    for target in TARGETS:
        mine, theirs = smallest(candidates, target), smallest(peers, target)
        if mine is None or theirs is None:
            lines.append(f"| {target} | {mine and round(mine['bpv'], 1)} | {theirs and theirs['method']} | – | NO |")
            continue
        ratio = mine["bpv"] / theirs["bpv"]
        lines.append(f"| {target} | {mine['bpv']:,.1f} ({mine['method']}) | {theirs['method']}: "
                     f"{theirs['bpv']:,.1f} | {ratio:.2f}x | {'yes' if ratio <= 0.8 else 'NO'} |")
    lossless = next(r for r in ours if r["method"] == "tensorzip lossless")
    shuffled = next((r for r in peers if r["method"] == "zstd-shuffled-3"), None)
    if shuffled is not None:
        lines += ["", f"Lossless: tensorzip {lossless['bpv']:,.1f} bytes/vector vs byte-shuffled zstd-3 "
                  f"{shuffled['bpv']:,.1f}: {'smaller' if lossless['bpv'] < shuffled['bpv'] else 'NOT smaller'}."]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section(Path(__file__).resolve().parent / "RESULTS.md", "embeddings", text)


if __name__ == "__main__":
    main()
