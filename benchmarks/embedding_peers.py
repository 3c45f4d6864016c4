"""The compressed-embedding schemes tensorzip's recall-targeted embedding codec is compared with.

Why one interface: every scheme is charged the same way on the same data. Each
peer has ``name``, ``build(base)`` (fit on the collection itself and encode it),
``stored_bytes()`` and ``search(queries, k)``; a runner times ``build`` and
``search`` and divides ``stored_bytes()`` by the collection size, so codebooks,
ranges and rotations are amortized over the collection they were fitted on.

- ``stored_bytes`` counts everything a reader would need: codes, codebooks,
  ranges, projection matrices and a header. faiss peers count the length of
  ``faiss.serialize_index`` (codes + trained parameters + faiss's header); the
  numpy peers add an 8-byte shape header (n and d as uint32) to their arrays.
- ``search`` ranks by inner product (= cosine for the normalized collection)
  with float32 queries against the stored codes, without rescoring, and
  returns (Q, k) int64 row indices, best first. A peer keeps only what it
  stores, so any decoding happens inside ``search`` and is timed with it.
- Similarity ties go to the lower row index in ``exact_topk`` (the ground truth and
  every peer searched over decoded floats) and in the binary peer's Hamming scan;
  faiss's SQ and PQ scans break ties their own way.

faiss training is seeded (``ProductQuantizer.cp.seed``; OPQ's initial random
rotation and its inner PQ use faiss's fixed seed 1234), so runs repeat up to
the float rounding of multithreaded BLAS (two builds of PQ16, OPQ16 and SQ4 on the
same machine serialized byte-identical).
"""

import faiss
import numpy as np
import zstandard

SEED = 1234
HEADER = 8  # n and d as uint32, for the peers whose stored form is plain arrays
_SCORE_BUDGET = 1 << 23  # score-matrix elements per block (32 MiB of float32)


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k largest scores, best first, ties by smaller index.

    argpartition alone would cut ties at the k-th score arbitrarily (quantized scores
    tie often); rows with a tie across the cut are redone exactly.
    """
    n = scores.shape[1]
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")
    cand = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    cand_scores = np.take_along_axis(scores, cand, axis=1)
    kth = cand_scores.min(axis=1)
    order = np.lexsort((cand, -cand_scores), axis=1)
    out = np.take_along_axis(cand, order, axis=1)
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    for i in tied:
        above = np.flatnonzero(scores[i] > kth[i])
        at = np.flatnonzero(scores[i] == kth[i])[: k - len(above)]
        rows = np.concatenate([above, at])
        out[i] = rows[np.lexsort((rows, -scores[i, rows]))]
    return out


def _blocked_topk(score_block, nq: int, n: int, k: int) -> np.ndarray:
    """Top-k over ``score_block(lo, hi) -> (hi - lo, n)`` scores, a block of queries at a time,
    so memory stays bounded."""
    block = max(1, _SCORE_BUDGET // max(1, n))
    out = np.empty((nq, min(k, n)), dtype=np.int64)
    for lo in range(0, nq, block):
        hi = min(nq, lo + block)
        out[lo:hi] = _topk_rows(score_block(lo, hi), k)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k (blocked float32 matmul, ties by index): the ground truth,
    and the search of every peer that stores a decodable float collection."""
    base = np.asarray(base, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    return _blocked_topk(lambda lo, hi: queries[lo:hi] @ base.T, len(queries), len(base), k)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k, with k = truth's width (found is cut to it)."""
    k = truth.shape[1]
    hits = (found[:, :k, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k)


def _int8_ranges(x: np.ndarray) -> np.ndarray:
    """Per-dimension (min, max), shape (2, d): sentence-transformers' calibration."""
    return np.stack([x.min(axis=0), x.max(axis=0)]).astype(np.float32)


def _int8_steps(ranges: np.ndarray) -> np.ndarray:
    steps = (ranges[1] - ranges[0]) / 255
    return np.where(steps > 0, steps, np.float32(1)).astype(np.float32)  # a constant dimension


def _int8_encode(x: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings(precision="int8")`` arithmetic:
    ``((x - min) / step - 128).astype(int8)`` with step = (max - min) / 255. The cast
    truncates toward zero, so code 0 covers two steps and codes -128 and 127 only the
    exact minimum and maximum; this is kept as is (the clip only guards rounding)."""
    t = (x - ranges[0]) / _int8_steps(ranges) - 128
    return np.clip(t, -128, 127).astype(np.int8)


def _int8_decode(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Centre of the interval each code stands for under that truncating encoder."""
    c = codes.astype(np.float32)
    centre = np.clip(c + np.float32(0.5) * np.sign(c), -128, 127)
    return ranges[0] + (centre + 128) * _int8_steps(ranges)


class Peer:
    """A compressed-embedding scheme. ``build`` fits and encodes the collection,
    ``stored_bytes`` is its whole stored size, ``search`` ranks without rescoring."""

    name: str

    def build(self, base: np.ndarray) -> None:
        raise NotImplementedError

    def stored_bytes(self) -> int:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError


class _DecodedPeer(Peer):
    """A peer searched exactly over its decoded float32 collection: subclasses store
    ``self._arrays`` (all they keep) and define ``_decode`` and, if needed, ``_query``."""

    _arrays: tuple

    def stored_bytes(self) -> int:
        return HEADER + sum(a.nbytes for a in self._arrays)

    def _decode(self) -> np.ndarray:
        raise NotImplementedError

    def _query(self, queries: np.ndarray) -> np.ndarray:
        return queries

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return exact_topk(self._decode(), self._query(np.asarray(queries, dtype=np.float32)), k)


class Float16(_DecodedPeer):
    """The collection as float16 (half the float32 size, ~3 decimal digits); exact search
    in float32 on the decoded values: the plain halving most vector stores offer."""

    name = "float16"

    def build(self, base):
        self._arrays = (base.astype(np.float16),)

    def _decode(self):
        return self._arrays[0].astype(np.float32)


class Int8(_DecodedPeer):
    """sentence-transformers' int8: per-dimension (min, max) calibrated on the collection,
    256 buckets per dimension (see ``_int8_encode``); stored: n*d bytes + 2*d float32 ranges.

    Search variant: float32 queries against the dequantized (bucket-centre) collection,
    i.e. asymmetric, like the faiss peers. sentence-transformers' own int8 search
    (usearch) also quantizes the queries and takes the inner product of the raw codes,
    which ignores the per-dimension offsets and scales: on 30,000 MiniLM vectors that gave
    recall@10 0.80 against 0.995 here. The asymmetric variant is the best these stored codes
    allow without rescoring, so it is the fair opponent. (The truncating encoder costs
    nothing measurable: plain floor-to-256-buckets gave 0.994.)
    """

    name = "int8"

    def build(self, base):
        ranges = _int8_ranges(base)
        self._arrays = (_int8_encode(base, ranges), ranges)

    def _decode(self):
        return _int8_decode(*self._arrays)


class Binary(Peer):
    """sentence-transformers' "ubinary": one bit per dimension (x > 0), packed, n*d/8 bytes.
    Without rescoring it is searched as it is used: queries binarized the same way, ranked
    by Hamming distance. The scan is faiss's ``IndexBinaryFlat`` (popcount, as a binary
    index would do it; a numpy XOR + popcount is ~20x slower and would misstate search
    time); it keeps the lower row index on ties, the same top-k as a stable sort."""

    name = "binary"

    def build(self, base):
        bits = np.packbits(base > 0, axis=1)  # rows padded with zero bits to whole bytes
        self._index = faiss.IndexBinaryFlat(8 * bits.shape[1])
        self._index.add(bits)

    def stored_bytes(self):
        return HEADER + self._index.ntotal * self._index.code_size

    def search(self, queries, k):
        _, found = self._index.search(np.packbits(np.asarray(queries) > 0, axis=1), k)
        return found.astype(np.int64)


class Matryoshka(_DecodedPeer):
    """The first ``dims`` dimensions, re-normalized, as float16; queries use their first
    ``dims`` too. Models trained with Matryoshka loss keep most recall this way; for others
    it shows what plain truncation costs."""

    def __init__(self, dims: int):
        self.dims = dims
        self.name = f"matryoshka-{dims}-fp16"

    def build(self, base):
        x = base[:, : self.dims].astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
        self._arrays = (x.astype(np.float16),)

    def _decode(self):
        return self._arrays[0].astype(np.float32)

    def _query(self, queries):
        return np.ascontiguousarray(queries[:, : self.dims])


class PcaInt8(Peer):
    """PCA (fit on the centered collection) to ``dims`` dimensions, then int8 with
    per-dimension ranges as in ``Int8``. Stored: n*dims bytes + the d*dims float32 basis
    P + the float32 mean + the ranges.

    The collection is reconstructed as mean + P c (c: dequantized coordinates) and
    queries are scored exactly against that: q . (mean + P c) = q . mean + (P^T q) . c.
    The query is projected uncentered; projecting (q - mean) would drop the
    per-row term mean . P c and change the ranking. q . mean is the same for every
    row, so it is added only to keep the scores exact.
    """

    def __init__(self, dims: int):
        self.dims = dims
        self.name = f"pca-{dims}-int8"

    def build(self, base):
        x = base.astype(np.float64)
        mean = x.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False))
        basis = vectors[:, np.argsort(values)[::-1][: self.dims]]
        basis *= np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(self.dims)])  # fixed signs
        self._mean = mean.astype(np.float32)
        self._basis = basis.astype(np.float32)
        coords = (base - self._mean) @ self._basis
        self._ranges = _int8_ranges(coords)
        self._codes = _int8_encode(coords, self._ranges)

    def stored_bytes(self):
        return HEADER + sum(a.nbytes for a in (self._codes, self._basis, self._mean, self._ranges))

    def search(self, queries, k):
        queries = np.asarray(queries, dtype=np.float32)
        coords = _int8_decode(self._codes, self._ranges)
        projected = queries @ self._basis
        offset = queries @ self._mean
        return _blocked_topk(
            lambda lo, hi: offset[lo:hi, None] + projected[lo:hi] @ coords.T, len(queries), len(coords), k
        )


class Faiss(Peer):
    """A faiss index from an ``index_factory`` string, inner-product metric, searched
    asymmetrically (float queries against the codes, faiss's default for SQ and PQ).

    Trained on the whole collection (OPQ's rotation on at most faiss's default 65,536 rows).
    OPQ alternates PQ training and re-encoding with a rotation update, and each alternation
    costs about a PQ build, so ``opq_iters`` caps the alternations (faiss default 50; see
    ``OPQ_ITERS``). stored_bytes is the length of ``faiss.serialize_index``: codes,
    codebooks / ranges, the OPQ matrix and faiss's header.

    During training faiss's nearest-centroid search is forced onto its BLAS path
    (``distance_compute_blas_threshold`` = 0, restored afterwards). With faiss 1.15.1's default
    threshold (128,000) k-means assignment at this size takes a direct SIMD loop that is ~7x
    slower at 4-dim sub-vectors: PQ96 trained in 30 s instead of 5 s, OPQ96 in 127 s instead
    of 22 s, for the same recall up to float rounding. Search keeps faiss's defaults.
    """

    def __init__(self, spec: str, name: str, opq_iters: int | None = None):
        self.spec = spec
        self.name = name
        self.opq_iters = opq_iters

    def build(self, base):
        base = np.ascontiguousarray(base, dtype=np.float32)
        index = faiss.index_factory(base.shape[1], self.spec, faiss.METRIC_INNER_PRODUCT)
        inner = index
        if isinstance(index, faiss.IndexPreTransform):
            opq = faiss.downcast_VectorTransform(index.chain.at(0))
            if self.opq_iters is not None:
                opq.niter = self.opq_iters
            inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexPQ):
            inner.pq.cp.seed = SEED
            # index_factory turns on polysemous training for PQ: a search over centroid-id permutations
            # (minutes here) that only helps Hamming pre-filtering; asymmetric search ranks the same
            # without it, so it would only inflate build time.
            inner.do_polysemous_training = False
        blas_threshold = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = 0  # see the class docstring
        try:
            index.train(base)
            index.add(base)
        finally:
            faiss.cvar.distance_compute_blas_threshold = blas_threshold
        self._index = index
        self._bytes = len(faiss.serialize_index(index))

    def stored_bytes(self):
        return self._bytes

    def search(self, queries, k):
        _, found = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return found.astype(np.int64)


class Zstd(_DecodedPeer):
    """Lossless: the float32 collection bytes through zstd, plain or byte-shuffled first
    (the 4 bytes of each float grouped by position, as blosc's shuffle does, so zstd sees
    the slowly varying sign/exponent bytes together). Only the size matters here: search
    decompresses and is exact (recall 1.0). ``build`` checks the round trip is exact."""

    def __init__(self, level: int, shuffle: bool):
        self.level = level
        self.shuffle = shuffle
        self.name = f"zstd-shuffled-{level}" if shuffle else f"zstd-{level}"

    def build(self, base):
        base = np.ascontiguousarray(base, dtype=np.float32)
        self._shape = base.shape
        raw = base.view(np.uint8).reshape(-1, 4)
        raw = np.ascontiguousarray(raw.T) if self.shuffle else raw
        self._arrays = (np.frombuffer(zstandard.ZstdCompressor(level=self.level).compress(raw), np.uint8),)
        if not np.array_equal(self._decode().view(np.uint32), base.view(np.uint32)):  # bitwise, NaN-safe
            raise AssertionError(f"{self.name}: round trip is not exact")

    def _decode(self):
        raw = np.frombuffer(zstandard.ZstdDecompressor().decompress(self._arrays[0]), np.uint8)
        if self.shuffle:
            raw = raw.reshape(4, -1).T
        return np.ascontiguousarray(raw).view(np.float32).reshape(self._shape)


PQ_SUBQUANTIZERS = (16, 32, 48, 96)
# OPQ alternations: on the 30,000 x 384 MiniLM collection 10 instead of faiss's 50 cost OPQ32
# 0.010 recall@10 (0.693 vs 0.703) and cut its build from 68 s to 18 s, which keeps the whole
# sweep under ~2 minutes on two cores. A 10,000-row rotation sample with 25 alternations took
# about as long (16 s) and ranked worse (0.685).
OPQ_ITERS = 10
MATRYOSHKA_DIMS = (64, 128, 192, 256)
PCA_DIMS = (64, 96, 128, 192)


def all_peers(dim: int) -> list[Peer]:
    """Every peer that applies to ``dim``-dimensional vectors (PQ needs m | dim; truncation
    and PCA need fewer dimensions than ``dim``), in table order."""
    peers: list[Peer] = [Float16(), Int8(), Binary(), Faiss("SQ8", "faiss-SQ8"), Faiss("SQ4", "faiss-SQ4")]
    ms = [m for m in PQ_SUBQUANTIZERS if dim % m == 0]
    peers += [Faiss(f"PQ{m}", f"faiss-PQ{m}") for m in ms]
    peers += [Faiss(f"OPQ{m},PQ{m}", f"faiss-OPQ{m}", opq_iters=OPQ_ITERS) for m in ms]
    peers += [Matryoshka(k) for k in MATRYOSHKA_DIMS if k < dim]
    peers += [PcaInt8(k) for k in PCA_DIMS if k < dim]
    peers += [Zstd(3, shuffle=False), Zstd(3, shuffle=True)]
    return peers


def _synthetic(n: int, nq: int, d: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in for sentence embeddings when the real files are absent: a shared mean direction,
    n/30 topic centres and within-topic spread, all with a slowly decaying spectrum in a random
    basis, plus isotropic noise, normalized; queries are fresh draws from the same topics.
    Tuned to look like all-MiniLM-L6-v2 output: random-pair cosine ~0.11, top-10 neighbour
    cosine ~0.7, and 53% / 70% / 82% of the variance in the first 64 / 128 / 192 components."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = (1 + np.arange(d)) ** -0.35
    mean = rotation @ (spectrum * rng.standard_normal(d)) * 0.45
    topics = (rng.standard_normal((max(1, n // 30), d)) * spectrum) @ rotation.T

    def draw(m):
        within = (rng.standard_normal((m, d)) * spectrum) @ rotation.T
        x = mean + topics[rng.integers(len(topics), size=m)] + 0.7 * within + 0.03 * rng.standard_normal((m, d))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


if __name__ == "__main__":
    import argparse
    import time
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Recall and size of every embedding peer, no rescoring.")
    parser.add_argument(
        "--data",
        choices=["auto", "random", "synthetic"],
        default="auto",
        help="auto: benchmarks/.data/embeddings/{collection,queries}.npy if present, else synthetic",
    )
    parser.add_argument("--n", type=int, default=30_000, help="collection size for random/synthetic data")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated name substrings to run")
    args = parser.parse_args()

    folder = Path(__file__).resolve().parent / ".data" / "embeddings"
    if args.data == "auto" and (folder / "collection.npy").exists():
        source = str(folder)
        base = np.load(folder / "collection.npy").astype(np.float32)
        queries = np.load(folder / "queries.npy").astype(np.float32)[: args.queries]
    elif args.data == "random":
        source = "random normal, normalized"
        rng = np.random.default_rng(SEED)
        base, queries = (rng.standard_normal((m, 384)).astype(np.float32) for m in (args.n, args.queries))
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    else:
        source = "synthetic (topics + low-rank + noise, normalized)"
        base, queries = _synthetic(args.n, args.queries, 384)

    start = time.perf_counter()
    truth = exact_topk(base, queries, args.k)
    print(
        f"data: {source}; base {base.shape}, queries {queries.shape}; faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads; exact top-{args.k} in {time.perf_counter() - start:.2f} s\n"
    )
    print(f"| peer | bytes/vector | recall@{args.k} | build s | search s |")
    print("|---|--:|--:|--:|--:|")
    wanted = [w for w in args.only.split(",") if w]
    total = 0.0
    for peer in all_peers(base.shape[1]):
        if wanted and not any(w in peer.name for w in wanted):
            continue
        start = time.perf_counter()
        peer.build(base)
        built = time.perf_counter() - start
        start = time.perf_counter()
        found = peer.search(queries, args.k)
        searched = time.perf_counter() - start
        total += built
        print(
            f"| {peer.name} | {peer.stored_bytes() / len(base):.2f} | {recall_at_k(found, truth):.4f} "
            f"| {built:.2f} | {searched:.3f} |",
            flush=True,
        )
    print(f"\ntotal build: {total:.1f} s")
