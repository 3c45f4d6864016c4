"""A stored embedding collection: decode it, or search it without decoding it all at once."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import TensorzipError
from .search import array_blocks, top_k, top_k_of_scores
from .search import scores as score_block
from .storage import StoredCollection, read
from .transform_search import CodeScorer


class EmbeddingCollection:
    """Vectors from a .tzip embedding file; ``search`` scores a lossy collection from its
    stored integers (``CodeScorer``, made on the first search) and a lossless one block by block."""

    def __init__(self, stored: StoredCollection, stored_bytes: int, threads: int | None = None):
        self._stored = stored
        self.record: dict[str, Any] = stored.record
        self.stored_bytes = stored_bytes
        self.threads = threads
        self._scorer: CodeScorer | None = None

    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes | bytearray | memoryview,
             threads: int | None = None) -> EmbeddingCollection:
        """A collection from a path or bytes (``tensorzip.embeddings.open``), its size kept
        so ``bytes_per_vector`` counts everything stored."""
        size = os.path.getsize(source) if isinstance(source, (str, os.PathLike)) else len(memoryview(source))
        return cls(read(source, threads=threads), size, threads)

    @property
    def count(self) -> int:
        """Vectors in the collection."""
        return int(self.record["count"])

    @property
    def dim(self) -> int:
        """Dimensions of each vector."""
        return int(self.record["dim"])

    @property
    def bytes_per_vector(self) -> float:
        """Everything stored (codes, basis, steps, header), per vector."""
        return self.stored_bytes / self.count

    @property
    def recall(self) -> float | None:
        """recall@k measured when the collection was compressed (held-out rows as queries)."""
        return self.record.get("recall_at_k")

    def decode(self) -> np.ndarray:
        """All vectors as float32 (the original dtype for a lossless collection)."""
        if self._stored.vectors is not None:
            return self._stored.vectors
        assert self._stored.code is not None
        return self._stored.code.decode()

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, decoded block) over the collection, a few thousand vectors at a time,
        so a search never holds the whole decoded collection."""
        if self._stored.vectors is not None:
            return array_blocks(np.asarray(self._stored.vectors, dtype=np.float32))
        assert self._stored.code is not None
        return self._stored.code.blocks()

    def search(self, queries: Any, k: int = 10, *, rescore: int | None = None, originals: Any = None,
               metric: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` over the decoded vectors: (scores, row indices), each (Q, k).

        With ``rescore=R`` and ``originals`` (the float vectors, e.g. a memory-mapped
        .npy the user keeps), the top R candidates are re-ranked by their exact scores.
        """
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= self.count:
            raise TensorzipError(f"k must be an integer from 1 to the collection's {self.count} rows, got {k!r}")
        k = int(k)  # NumPy integers too (k taken from an array's shape or a config)
        if rescore is not None and (not isinstance(rescore, numbers.Integral) or isinstance(rescore, bool)
                                    or rescore < 1):
            raise TensorzipError(f"rescore must be a positive integer, got {rescore!r}")
        rescore = None if rescore is None else int(rescore)
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise TensorzipError(f"queries must have shape (n, {self.dim}), got {np.shape(queries)}")
        if not np.isfinite(q).all():
            bad = int(np.flatnonzero(~np.isfinite(q).all(axis=1))[0])
            raise TensorzipError(f"query {bad} holds NaN or infinity: its scores would rank no row "
                                 "meaningfully; pass finite query vectors")
        metric = metric or self.record.get("metric", "ip")
        if rescore is None:
            return self._top_k(q, k, metric)
        if originals is None:
            raise TensorzipError("rescore needs the original vectors (originals=...)")
        exact = np.asarray(originals)
        if exact.shape != (self.count, self.dim):
            raise TensorzipError(f"originals must have shape {(self.count, self.dim)}, got {exact.shape}")
        _, candidates = self._top_k(q, max(k, rescore), metric)


        rescored = np.stack([score_block(q[i : i + 1], exact[candidates[i]].astype(np.float32), metric)[0]
                             for i in range(len(q))])
        order = np.lexsort((candidates, -rescored), axis=1)[:, :k]
        return np.take_along_axis(rescored, order, axis=1), np.take_along_axis(candidates, order, axis=1)

    def _top_k(self, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        if self._stored.code is None:
            return top_k(self.blocks(), queries, k, metric)
        if self._scorer is None:
            self._scorer = CodeScorer(self._stored.code, self.threads)
        return top_k_of_scores(self._scorer.score_blocks(queries, metric), len(queries), k)
