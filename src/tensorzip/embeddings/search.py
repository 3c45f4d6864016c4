"""Exact top-k search over a collection given block by block, and recall@k.

Used three ways: ground truth on the original vectors, search on decoded vectors
(the solver and ``EmbeddingCollection.search``), and rescoring. Memory stays at
one block of the collection plus a (queries x k) running best.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import TensorzipError

METRICS = ("ip", "l2")


def scores(queries: np.ndarray, block: np.ndarray, metric: str) -> np.ndarray:
    """Higher is better: inner product, or minus the squared L2 distance."""
    dots = queries @ block.T
    if metric == "ip":
        return dots
    if metric == "l2":
        block_norms = np.einsum("ij,ij->i", block, block)[None, :]
        return 2.0 * dots - block_norms - np.einsum("ij,ij->i", queries, queries)[:, None]
    raise TensorzipError(f"metric must be one of {METRICS}, got {metric!r}")


def top_k(blocks: Iterable[tuple[int, np.ndarray]], queries: np.ndarray, k: int, metric: str = "ip",
          exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), each (Q, k), best first; among the candidates kept, ties go to
    the lower index.

    ``exclude[i]``: a collection row that query i must not return (itself, when the
    queries are rows of the collection).
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    scored = ((start, scores(q, np.asarray(block, dtype=np.float32), metric)) for start, block in blocks)
    return top_k_of_scores(scored, len(q), k, exclude)


def top_k_of_scores(score_blocks: Iterable[tuple[int, np.ndarray]], queries: int, k: int,
                    exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` over blocks of scores already computed: (first row, (Q, rows) scores). A
    float32 block may be changed in place (excluded rows set to minus infinity)."""
    best_scores = np.full((queries, 0), -np.inf, dtype=np.float32)
    best_index = np.zeros((queries, 0), dtype=np.int64)
    for start, block_scores in score_blocks:
        s = np.asarray(block_scores, dtype=np.float32)
        width = s.shape[1]
        nan = np.isnan(s)
        if nan.any():  # a NaN would outrank every score in the partition below; rank it last
            s = np.where(nan, np.float32(-np.inf), s)
        if exclude is not None:
            rows = np.flatnonzero((exclude >= start) & (exclude < start + width))
            if rows.size and not s.flags.writeable:
                s = s.copy()
            s[rows, exclude[rows] - start] = -np.inf
        if width > k:  # only each row's k best can enter the running best
            part = np.argpartition(s, width - k, axis=1)[:, width - k :]
            s = np.take_along_axis(s, part, axis=1)
            index = part + start
        else:
            index = np.broadcast_to(np.arange(start, start + width, dtype=np.int64), s.shape)
        all_scores = np.concatenate([best_scores, s], axis=1)
        all_index = np.concatenate([best_index, index], axis=1)
        keep = min(k, all_scores.shape[1])
        # Sort by (-score, index): lexsort's last key is primary.
        order = np.lexsort((all_index, -all_scores), axis=1)[:, :keep]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_index = np.take_along_axis(all_index, order, axis=1)
    return best_scores, best_index


def recall_by_threshold(score_blocks: Iterable[tuple[int, np.ndarray]], truth: np.ndarray,
                        exclude: np.ndarray | None = None) -> float:
    """recall@k from blocks of scores without ranking them: a true neighbour counts as found
    when its score reaches the k-th best score of its query. Equal to ``recall_at_k`` of
    ``top_k_of_scores`` except where scores tie exactly at the k-th place; about twice as
    fast (a partition of values, no indices, no sort), so the solver screens candidates
    with it and measures the one it keeps with ``top_k``."""
    queries, k = truth.shape
    best = np.full((queries, k), -np.inf, dtype=np.float32)
    truth_scores = np.full((queries, k), -np.inf, dtype=np.float32)
    for start, block_scores in score_blocks:
        s = np.asarray(block_scores, dtype=np.float32)
        width = s.shape[1]
        nan = np.isnan(s)
        if nan.any():  # a NaN would outrank every score in the partition below; rank it last
            s = np.where(nan, np.float32(-np.inf), s)
        if exclude is not None:
            rows = np.flatnonzero((exclude >= start) & (exclude < start + width))
            if rows.size and not s.flags.writeable:
                s = s.copy()
            s[rows, exclude[rows] - start] = -np.inf
        inside = (truth >= start) & (truth < start + width)
        if inside.any():
            q, j = np.nonzero(inside)
            truth_scores[q, j] = s[q, truth[q, j] - start]
        top = np.partition(s, width - k, axis=1)[:, width - k :] if width > k else s
        merged = np.concatenate([best, top], axis=1)
        best = np.partition(merged, merged.shape[1] - k, axis=1)[:, merged.shape[1] - k :]
    kth = best.min(axis=1, keepdims=True)
    return float(np.count_nonzero(truth_scores >= kth)) / truth.size if truth.size else 1.0


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k."""
    if truth.size == 0:
        return 1.0
    k = truth.shape[1]
    hits = sum(len(np.intersect1d(f[:k], t)) for f, t in zip(found, truth, strict=True))
    return hits / (len(truth) * k)


# One-sided confidence of the recorded recall bound, and its normal quantile.
RECALL_CONFIDENCE = 0.95
_Z = 1.6448536269514722


def recall_lower_bound(recall: float, trials: int) -> float:
    """A lower confidence bound (one-sided, RECALL_CONFIDENCE) on the recall a fresh sample of
    queries from the same distribution would see, from ``recall`` measured over ``trials``
    (queries x k) hits or misses: the Wilson score bound of a binomial proportion.

    Why: the solver used to stop where its estimate touched the target, and on fresh
    queries the target was then missed about half the time (0.948 for --recall 0.95)."""
    if trials <= 0:
        return 0.0
    z2 = _Z * _Z
    centre = recall + z2 / (2 * trials)
    spread = _Z * np.sqrt(max(recall * (1 - recall), 0.0) / trials + z2 / (4 * trials * trials))
    return float(max(0.0, (centre - spread) / (1 + z2 / trials)))


def array_blocks(vectors: np.ndarray, rows: int = 8192) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block) over an array, as ``EmbeddingCode.blocks`` gives decoded ones."""
    for start in range(0, len(vectors), rows):
        yield start, vectors[start : start + rows]
