"""The fewest bytes that meet a recall@k target, found by measuring.

A sample of rows is held out as queries; their exact top-k on the original
collection (each query's own row excluded) is the ground truth. For each basis
(PCA, or the original axes) and each emphasis (how much less distortion the
strong components get), the distortion level of reverse water-filling is
searched by bisection for the largest level whose *decoded* collection still
meets the target on those queries; the smaller of the two encoded files wins.
Recall only falls as the level rises (up to noise on a finite sample), and the
size falls with it, so the largest passing level is the smallest passing file.

"Meets" means the recall's lower confidence bound (``recall_lower_bound``, over the
queries x k trials) is at least the target, so the target holds on fresh queries of
the same distribution, not only on the sample. Each candidate is scored from its
stored integers (``CodeScorer``), exactly as a search of the stored file would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import TargetUnreachableError
from ..quantization import TargetNotMet, bisect
from .code import EmbeddingCode, Projection, fit_basis, project, uniform_code
from .search import array_blocks, recall_at_k, recall_by_threshold, recall_lower_bound, top_k, top_k_of_scores
from .transform_search import CodeScorer

Progress = Callable[[int, int], None]  # (candidates measured, most there will be)

BISECTION_STEPS = 12
# The bisection stops once the level is known within this factor (in natural log): 2% in
# level, about 0.3% in bytes, two or three candidates fewer than its 12 steps.
LEVEL_TOLERANCE = 0.02
# The same for the level where a basis's code is as small as the best so far (a bound, not
# the answer): coarser.
SIZE_TOLERANCE = 0.1
SAMPLE_QUERIES = 500
# How much less distortion strong components get (see uniform_code); each is tried.
EMPHASES = (0.5, 1.0)


@dataclass(frozen=True)
class HeldOut:
    """Query rows and their true top-k on the original collection."""

    rows: np.ndarray | None  # collection rows used as queries (excluded from their own results)
    queries: np.ndarray
    truth: np.ndarray
    k: int
    metric: str

    def recall(self, code: EmbeddingCode, threads: int | None = None) -> float:
        """recall@k of ``code``'s decoded collection on the held-out queries."""
        scored = CodeScorer(code, threads).score_blocks(self.queries, self.metric)
        _, found = top_k_of_scores(scored, len(self.queries), self.k, exclude=self.rows)
        return recall_at_k(found, self.truth)

    def screen(self, code: EmbeddingCode, threads: int | None = None) -> float:
        """``recall`` without ranking (``recall_by_threshold``), the norms from the coordinates:
        what the bisection compares (the recall recorded is ``recall``, on the decoded vectors)."""
        scored = CodeScorer(code, threads, exact_norms=False).score_blocks(self.queries, self.metric)
        return recall_by_threshold(scored, self.truth, exclude=self.rows)

    def bound(self, recall: float) -> float:
        """The lower confidence bound on recall measured on these queries."""
        return recall_lower_bound(recall, len(self.queries) * self.k)

    def meets(self, recall: float, target: float) -> bool:
        """Whether the target holds with confidence (a target of 1 needs every hit: no bound reaches it)."""
        return recall >= 1.0 if target >= 1.0 else self.bound(recall) >= target


def hold_out(vectors: np.ndarray, k: int, metric: str, sample: int = SAMPLE_QUERIES, seed: int = 0) -> HeldOut:
    """``sample`` rows of the collection as queries (seeded), each excluded from its own
    results: recall measured on the collection's own distribution."""
    count = len(vectors)
    if count < k + 1:
        raise TargetUnreachableError(f"measuring recall@{k} needs at least {k + 1} vectors; the collection has {count}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(count, size=min(sample, count), replace=False)).astype(np.int64)
    queries = np.asarray(vectors[rows], dtype=np.float32)
    _, truth = top_k(array_blocks(np.asarray(vectors, dtype=np.float32)), queries, k, metric, exclude=rows)
    return HeldOut(rows, queries, truth, k, metric)


def given_queries(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str) -> HeldOut:
    """The caller's own queries (their distribution, not the collection's): truth = exact top-k."""
    if len(vectors) < k:
        raise TargetUnreachableError(f"measuring recall@{k} needs at least {k} vectors; the collection has "
                                     f"{len(vectors)}")
    q = np.asarray(queries, dtype=np.float32)
    _, truth = top_k(array_blocks(np.asarray(vectors, dtype=np.float32)), q, k, metric)
    return HeldOut(None, q, truth, k, metric)


@dataclass(frozen=True)
class Solution:
    code: EmbeddingCode
    rotation: bool
    emphasis: float
    level: float
    recall: float  # measured on the held-out queries, on the decoded collection
    recall_bound: float  # its lower confidence bound (RECALL_CONFIDENCE), at least the target
    stored_bytes: int


def solve(vectors: np.ndarray, target: float, held_out: HeldOut, size_of: Callable[[EmbeddingCode], int],
          rotations: tuple[bool, ...] = (True, False), seed: int = 0, threads: int | None = None,
          progress: Progress | None = None) -> Solution:
    """The smallest code (by ``size_of``, the real encoded size) meeting ``target``."""
    if not 0.0 < target <= 1.0:
        raise TargetUnreachableError(f"a recall target must be in (0, 1], got {target}")
    best: Solution | None = None
    searches = len(rotations) * len(EMPHASES)
    per_search = 1 + BISECTION_STEPS
    report = None if progress is None else _monotone(progress, searches * per_search)
    for r, rotation in enumerate(rotations):
        projection = project(vectors, fit_basis(vectors, rotation, seed=seed))
        for e, emphasis in enumerate(EMPHASES):
            done = (r * len(EMPHASES) + e) * per_search
            # A search's calls move the bar within its own share; a search pruned or ended early
            # jumps to its share's end, so the bar ends at its total.
            step = None if report is None else (lambda call, _most, done=done: report(done + min(call, per_search)))
            found = _search(projection, emphasis, target, held_out, best, size_of, threads, step)
            if report is not None:
                report(done + per_search)
            if found is None:
                continue
            level, code, recall = found
            candidate = Solution(code, rotation, emphasis, level, recall, held_out.bound(recall), size_of(code))
            if best is None or candidate.stored_bytes < best.stored_bytes:
                best = candidate
    if best is None:
        raise TargetUnreachableError(
            f"recall@{held_out.k} >= {target} is not reached even at the finest quantization tried; "
            "store the collection losslessly (mode='lossless') instead"
        )
    return best


def _monotone(progress: Progress, total: int) -> Callable[[int], None]:
    """``progress`` that never moves back (a search's exact pass restarts its count)."""
    high = 0

    def report(done: int) -> None:
        nonlocal high
        if done > high:
            high = done
            progress(high, total)

    return report


def _search(projection: Projection, emphasis: float, target: float, held_out: HeldOut, best: Solution | None,
            size_of: Callable[[EmbeddingCode], int], threads: int | None,
            progress: Progress | None) -> tuple[float, EmbeddingCode, float] | None:
    """One (basis, emphasis) search: the largest passing level, or None where none passes or
    none can be smaller than ``best``."""
    finest = None
    if best is not None:  # only a code smaller than the best so far can win
        bracket = _levels_near_size(projection, emphasis, best.stored_bytes, size_of)
        if bracket is None:
            return None
        def passes(level: float) -> bool:
            return held_out.meets(held_out.screen(uniform_code(projection, level, emphasis), threads), target)

        # Pruned only when the finer end (a code just over the best's size) misses: smaller
        # codes sit at coarser levels, whose recall is lower still.
        fits, over = bracket
        if passes(fits):
            finest = fits
        elif over is not None and passes(over):
            finest = over
        else:
            return None
    return _largest_passing_level(projection, emphasis, target, held_out, threads, progress, finest)


def _level_range(projection: Projection) -> tuple[float, float]:
    """(finest, coarsest) distortion levels worth trying: the finest whose symbols still fit
    16 bits (step > largest |coordinate| / 2^15), the coarsest the top variance."""
    variances = projection.basis.variances
    top = float(variances.max()) if variances.size and variances.max() > 0 else 1.0
    reach = float(np.abs(projection.coordinates).max()) if projection.coordinates.size else 0.0
    finest = max(top * 1e-9, (reach / 30000.0) ** 2 / 12.0, 1e-30)
    return finest, max(top, finest)


def _levels_near_size(projection: Projection, emphasis: float, most_bytes: int,
                      size_of: Callable[[EmbeddingCode], int]) -> tuple[float, float | None] | None:
    """(the finest level found whose code is no larger than ``most_bytes``, the nearest finer
    level found larger, or None if none was tried); None if even the coarsest is larger.
    Size falls as the level rises, so every smaller code lies at the second level or coarser:
    the bisection's tolerance cannot hide one."""
    finest, coarsest = _level_range(projection)
    try:
        found = bisect(lambda level: (float(size_of(uniform_code(projection, level, emphasis))), None),
                       at_most=float(most_bytes), feasible_end=np.log(coarsest), best_end=np.log(finest),
                       max_iterations=BISECTION_STEPS, tolerance=SIZE_TOLERANCE, log_scale="ln",
                       try_best_end=False)
    except TargetNotMet:
        return None
    over = None if found.missed_coordinate is None else float(np.exp(found.missed_coordinate))
    return found.parameter, over


def _largest_passing_level(projection: Projection, emphasis: float, target: float, held_out: HeldOut,
                           threads: int | None = None, progress: Progress | None = None,
                           finest: float | None = None) -> tuple[float, EmbeddingCode, float] | None:
    """The largest distortion level (bisected in natural-log scale from the finest, or from
    ``finest`` when known to pass) whose decoded collection still meets the recall target:
    (level, code, recall), or None."""
    lowest, top = _level_range(projection)
    finest = lowest if finest is None else finest

    # Screened without ranking first; ranked exactly (as a search of the file would) when
    # exact ties at the k-th place made the screen pass a code that misses (degenerate data).
    for measure in (held_out.screen, held_out.recall):
        def recall_at(level: float, measure: Callable[..., float] = measure) -> tuple[float, EmbeddingCode]:
            code = uniform_code(projection, level, emphasis)
            return (1.0 if held_out.meets(measure(code, threads), target) else 0.0), code

        try:
            found = bisect(recall_at, at_least=1.0, feasible_end=np.log(finest), best_end=np.log(max(top, finest)),
                           max_iterations=BISECTION_STEPS, tolerance=LEVEL_TOLERANCE, log_scale="ln",
                           try_best_end=False, progress=progress)
        except TargetNotMet:
            return None
        code = found.result
        recall = held_out.recall(code, threads)
        if held_out.meets(recall, target):
            return found.parameter, code, recall
    return None
