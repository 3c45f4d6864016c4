"""Measures of a representation matrix (rows = samples, columns = dimensions): how many
dimensions its information really occupies, and so how far a transform coder can cut it.

The spectrum measures (effective rank, stable rank, explained energy) say how many
principal components carry the variance, i.e. how far PCA truncation can go. Anisotropy
says whether the vectors crowd into a narrow cone (a common offset a coder should remove
first). The TwoNN intrinsic dimension says how many coordinates the points need locally,
which can be far fewer than the linear rank when the data lie on a curved manifold. With
class labels, the neural-collapse and coding-rate measures say how much of the geometry is
class structure.

Everything is computed in float64 and exactly, except TwoNN, which runs on at most
``max_rows_exact`` rows (a seeded sample); ``analyze_representations`` says so in its notes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import TensorzipError, UnsupportedDtypeError

ProgressCallback = Callable[[int, int], None]  # (steps done, steps total)

ENERGY_FRACTIONS = (0.9, 0.95, 0.99)
MCR2_EPS2 = 0.5  # distortion eps^2 used by Yu et al. (2020) in their experiments
_SEARCH_BLOCK_ELEMENTS = 1 << 23  # distance-block entries per TwoNN step: 32 MiB of float32
_NEIGHBOUR_CANDIDATES = 3  # float32 candidates re-measured in float64 per point


# ---------------------------------------------------------------------------
# Spectrum


def covariance_spectrum(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of the sample covariance ``Xc^T Xc / (n - 1)`` of the centered matrix,
    descending, as many as its rank can reach: ``min(n - 1, d)``.

    The smaller of the two Gram matrices (``d x d`` or ``n x n``) is decomposed with
    ``eigh``; both have the same non-zero eigenvalues. Eigenvalues below the rounding
    level of the Gram matrix (``lambda_max * max(n, d) * eps``) are set to 0, so that a
    matrix of rank r shows exactly r non-zero values rather than rounding noise.
    """
    x = np.asarray(matrix, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        return np.zeros(0)
    centered = x - x.mean(axis=0)
    gram = centered @ centered.T if n < d else centered.T @ centered
    eigenvalues = np.linalg.eigvalsh(gram)[::-1][: min(n - 1, d)] / (n - 1)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    if eigenvalues.size and eigenvalues[0] > 0:
        eigenvalues[eigenvalues < eigenvalues[0] * max(n, d) * np.finfo(np.float64).eps] = 0.0
    return eigenvalues


def effective_rank(singular_values: np.ndarray) -> float:
    """Effective rank ``exp(H(p))``, ``p_i = sigma_i / sum_j sigma_j``, H the Shannon entropy
    in nats (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality").

    A real number between 1 and the rank: r equal singular values give exactly r, one
    dominant value gives about 1. 0 for a zero matrix (nothing to spread).
    """
    sigma = np.asarray(singular_values, dtype=np.float64)
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def stable_rank(singular_values: np.ndarray) -> float:
    """Stable rank ``||X||_F^2 / ||X||_2^2 = sum sigma_i^2 / max sigma_i^2`` (Rudelson &
    Vershynin 2007, "Sampling from large matrices: an approach through geometric functional
    analysis"). Never above the rank, and unlike the rank not moved by tiny singular values.
    0 for a zero matrix.
    """
    squares = np.asarray(singular_values, dtype=np.float64) ** 2
    top = squares.max(initial=0.0)
    return float(squares.sum() / top) if top > 0 else 0.0


def energy_ks(dims: int) -> list[int]:
    """The component counts the energy curve is reported at: 1, 2, 4, ... below ``dims``, then ``dims``."""
    ks = [1 << i for i in range(max(dims - 1, 0).bit_length())]
    return [*ks, dims]


def explained_energy(eigenvalues: np.ndarray, ks: list[int]) -> list[float]:
    """Cumulative fraction of the variance in the top k principal components, for each k.

    Components beyond the spectrum's length hold no variance. With no variance at all
    (a constant matrix) every fraction is 1: nothing is left to explain.
    """
    cumulative = _cumulative_fraction(eigenvalues)
    if cumulative.size == 0:
        return [1.0 for _ in ks]
    return [float(cumulative[min(k, cumulative.size) - 1]) for k in ks]


def components_for(eigenvalues: np.ndarray, fraction: float) -> int:
    """The smallest number of principal components whose variance is at least ``fraction``
    of the total: how far PCA truncation can go at that energy. 0 for a constant matrix."""
    cumulative = _cumulative_fraction(eigenvalues)
    if cumulative.size == 0:
        return 0
    # A tolerance so that a fraction reached exactly is not missed by rounding in the sum.
    return int(min(np.searchsorted(cumulative, fraction - 1e-12, side="left") + 1, cumulative.size))


def _cumulative_fraction(eigenvalues: np.ndarray) -> np.ndarray:
    values = np.asarray(eigenvalues, dtype=np.float64)
    total = values.sum()
    return np.cumsum(values) / total if total > 0 else np.zeros(0)


# ---------------------------------------------------------------------------
# Anisotropy


def anisotropy(matrix: np.ndarray) -> float | None:
    """Mean cosine similarity between distinct rows (Ethayarajh 2019, "How contextual are
    contextualized word representations?").

    Exact in O(n d): with unit rows ``u_i``, ``||sum u_i||^2 = n + sum_{i != j} cos(i, j)``, so
    the mean over the ``n (n - 1)`` ordered pairs is ``(||sum u_i||^2 - n) / (n (n - 1))``.
    Near 0 for isotropic vectors, near 1 when they all point one way. Zero rows have no
    direction and are left out; None when fewer than two rows remain.
    """
    x = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    nonzero = norms > 0
    n = int(nonzero.sum())
    if n < 2:
        return None
    total = (x[nonzero] / norms[nonzero, None]).sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


# ---------------------------------------------------------------------------
# TwoNN intrinsic dimension


def two_nearest_distances(
    points: np.ndarray,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances from each point to its nearest and second-nearest other point.

    Exact search in row blocks (no n^2 memory): each block's squared distances come from one
    matrix product, ``|x_j|^2 - 2 x_i . x_j`` (``|x_i|^2`` is the same for the whole row and
    does not change the ranking). The product runs in float32, which halves its time; the
    best ``_NEIGHBOUR_CANDIDATES`` per point are then measured again exactly in float64 from
    the coordinate differences, so the distances returned carry no cancellation error.
    ``progress(blocks_done)`` is called after each block. Needs at least 3 points.
    """
    x = np.asarray(points, dtype=np.float64)
    m = x.shape[0]
    if m < 3:
        raise TensorzipError(f"two nearest neighbours need at least 3 points, got {m}")
    x = x - x.mean(axis=0)  # smaller norms: less cancellation in the float32 product
    scale = np.abs(x).max()
    scaled = x / scale if scale > 0 else x  # keeps squares inside float32's range; ranking unchanged
    left = np.hstack([scaled, np.ones((m, 1))]).astype(np.float32)
    right = np.hstack([-2.0 * scaled, np.einsum("ij,ij->i", scaled, scaled)[:, None]]).astype(np.float32)
    k = min(_NEIGHBOUR_CANDIDATES, m - 1)
    block = max(1, min(m, _SEARCH_BLOCK_ELEMENTS // m))
    r1, r2 = np.empty(m), np.empty(m)
    for number, start in enumerate(range(0, m, block), 1):
        stop = min(start + block, m)
        rows = np.arange(stop - start)
        scores = left[start:stop] @ right.T  # |x_j|^2 - 2 x_i . x_j
        scores[rows, rows + start] = np.inf  # not its own neighbour
        candidates = np.empty((stop - start, k), dtype=np.intp)
        for c in range(k):  # k passes of argmin beat argpartition by far here
            candidates[:, c] = np.argmin(scores, axis=1)
            scores[rows, candidates[:, c]] = np.inf
        differences = x[start:stop, None, :] - x[candidates]
        distances = np.sort(np.sqrt(np.einsum("bkd,bkd->bk", differences, differences)), axis=1)
        r1[start:stop], r2[start:stop] = distances[:, 0], distances[:, 1]
        if progress is not None:
            progress(number)
    return r1, r2


def twonn_search_blocks(points: int) -> int:
    """How many blocks (progress steps) ``two_nearest_distances`` takes for this many points."""
    block = max(1, min(points, _SEARCH_BLOCK_ELEMENTS // max(points, 1)))
    return -(-points // block)


def twonn_dimension(r1: np.ndarray, r2: np.ndarray) -> float | None:
    """TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez & Laio 2017, "Estimating the
    intrinsic dimension of datasets by a minimal neighborhood information").

    With ``mu_i = r2_i / r1_i`` (second- over first-neighbour distance), mu follows a Pareto
    law ``f(mu) = d mu^(-d-1)`` whatever the density, if it is locally constant; the maximum
    likelihood estimate is ``d = n / sum_i log mu_i``. Points with ``r1 == 0`` (duplicates)
    have no ratio and are left out. None when no ratio exceeds 1 (e.g. a regular grid).
    """
    r1, r2 = np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64)
    keep = r1 > 0
    logs = np.log(r2[keep] / r1[keep]).sum()
    return float(keep.sum() / logs) if logs > 0 else None


def distinct_rows(matrix: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, ascending. Rows are compared
    by their bytes (each row one opaque item, so the sort is one memcmp per comparison),
    after adding 0.0 so that -0.0 counts as 0.0."""
    x = np.ascontiguousarray(np.asarray(matrix, dtype=np.float64) + 0.0)
    if x.shape[0] < 2:
        return np.arange(x.shape[0])
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).reshape(-1)
    return np.sort(np.unique(rows, return_index=True)[1])


# ---------------------------------------------------------------------------
# Class structure: neural collapse and coding rate


def _class_layout(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, counts): ``order`` sorts the rows by class, class c is
    ``order[starts[c]:starts[c] + counts[c]]``."""
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    return order, starts, counts


def class_means(matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The mean row of each class, classes in ``np.unique(labels)`` order (C x d)."""
    x = np.asarray(matrix, dtype=np.float64)
    order, starts, counts = _class_layout(labels)
    return np.add.reduceat(x[order], starts, axis=0) / counts[:, None]


def neural_collapse_nc1(matrix: np.ndarray, labels: np.ndarray) -> float | None:
    """NC1, within-class variability relative to between-class: ``Tr(Sigma_W Sigma_B^+) / C``
    (Papyan, Han & Donoho 2020, "Prevalence of neural collapse during the terminal phase of
    deep learning training").

    ``Sigma_W = 1/n sum_i (h_i - mu_{c(i)})(h_i - mu_{c(i)})^T``,
    ``Sigma_B = 1/C sum_c (mu_c - mu_G)(mu_c - mu_G)^T``, mu_G the mean of all rows.
    0 when every sample sits on its class mean. Between-class directions whose variance is
    below Sigma_B's rounding level count as absent. Computed without any d x d matrix: with
    ``mu_c - mu_G = U S V^T``, ``Sigma_B^+ = sum_k C / s_k^2 v_k v_k^T``, so the trace is
    ``C sum_k ||W v_k||^2 / (n s_k^2)``, W the within-class deviations. None when all class
    means coincide (Sigma_B = 0: no between-class spread to compare with).
    """
    x = np.asarray(matrix, dtype=np.float64)
    order, starts, counts = _class_layout(labels)
    ordered = x[order]
    means = np.add.reduceat(ordered, starts, axis=0) / counts[:, None]
    between = means - x.mean(axis=0)
    _, s, vt = np.linalg.svd(between, full_matrices=False)
    if s.size == 0 or s[0] <= 0:
        return None
    # Sigma_B's eigenvalues are s^2 / C: drop those at its rounding level, as covariance_spectrum
    # does, or rounding noise in the class means would be divided by its own square.
    keep = s > s[0] * np.sqrt(max(between.shape) * np.finfo(np.float64).eps)
    directions = np.ascontiguousarray(vt[keep].T)
    # W v_k = X v_k - mu_c . v_k: project first, so the n x d deviations are never formed
    projected = ordered @ directions - np.repeat(means @ directions, counts, axis=0)
    return float((np.einsum("ij,ij->j", projected, projected) / (x.shape[0] * s[keep] ** 2)).sum())


def neural_collapse_nc2(matrix: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """NC2, how close the centered class means ``mu_c - mu_G`` are to a simplex equiangular
    tight frame (Papyan, Han & Donoho 2020):

    - ``nc2_equinorm``: std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G|| (equal lengths -> 0);
    - ``nc2_equiangular``: std over pairs c != c' of cos(mu_c - mu_G, mu_c' - mu_G)
      (equal angles -> 0);
    - ``nc2_max_angle``: mean over pairs of |cos + 1/(C - 1)| (maximally separated,
      cos = -1/(C - 1) -> 0).

    A class mean equal to the global mean has no direction; its cosines count as 0.
    """
    x = np.asarray(matrix, dtype=np.float64)
    centered_means = class_means(x, labels) - x.mean(axis=0)
    classes = centered_means.shape[0]
    if classes < 2:
        raise TensorzipError(f"NC2 needs at least 2 classes, got {classes}")
    norms = np.linalg.norm(centered_means, axis=1)
    mean_norm = norms.mean()
    directions = np.divide(centered_means, norms[:, None], out=np.zeros_like(centered_means), where=norms[:, None] > 0)
    cosines = (directions @ directions.T)[np.triu_indices(classes, k=1)]
    return {
        "nc2_equinorm": float(norms.std() / mean_norm) if mean_norm > 0 else 0.0,
        "nc2_equiangular": float(cosines.std()),
        "nc2_max_angle": float(np.abs(cosines + 1.0 / (classes - 1)).mean()),
    }


def _logdet_identity_plus(scale: float, z: np.ndarray) -> float:
    """``logdet(I + scale Z^T Z)`` through the smaller Gram matrix (Sylvester's identity:
    ``logdet(I_d + a Z^T Z) = logdet(I_n + a Z Z^T)``) and a Cholesky factor."""
    gram = z @ z.T if z.shape[0] < z.shape[1] else z.T @ z
    matrix = np.eye(gram.shape[0]) + scale * gram
    try:
        return float(2.0 * np.log(np.diag(np.linalg.cholesky(matrix))).sum())
    except np.linalg.LinAlgError:  # only if rounding broke positive definiteness
        return float(np.linalg.slogdet(matrix)[1])


def coding_rate(z: np.ndarray, eps2: float = MCR2_EPS2) -> float:
    """Coding rate ``R(Z) = 1/2 logdet(I + d / (n eps^2) Z^T Z)`` in nats (Yu, Chan, You, Song
    & Ma 2020, "Learning diverse and discriminative representations via the principle of
    maximal coding rate reduction"): about the nats per sample needed to code the rows up
    to mean squared distortion eps^2, under a Gaussian model. Z is n x d, rows are samples; the paper applies
    it to unit-norm rows. 0 for an empty Z.
    """
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    if n == 0:
        return 0.0
    return 0.5 * _logdet_identity_plus(d / (n * eps2), z)


def coding_rate_reduction(z: np.ndarray, labels: np.ndarray, eps2: float = MCR2_EPS2) -> float:
    """Rate reduction ``Delta R = R(Z) - sum_j (n_j / n) R(Z_j)`` (Yu et al. 2020, MCR^2): how
    much cheaper the rows are to code once the class is known. Never negative (logdet is
    concave); 0 when every class has the same second-moment matrix, large when the classes
    lie in different subspaces.
    """
    z = np.asarray(z, dtype=np.float64)
    order, starts, counts = _class_layout(labels)
    ordered = z[order]
    per_class = sum(
        count / z.shape[0] * coding_rate(ordered[start : start + count], eps2)
        for start, count in zip(starts, counts, strict=True)
    )
    return coding_rate(z, eps2) - per_class


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# ---------------------------------------------------------------------------
# Entry point


MAX_MAGNITUDE = 1e150  # |x| beyond this: x^2 summed over rows overflows float64


def analyze_representations(
    matrix: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    max_rows_exact: int = 20000,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Every measure of this module on one representation matrix, as a JSON-serialisable dict.

    ``matrix`` is n x d, rows = samples (any real dtype; computed in float64). ``labels``
    (optional, length n, any sortable values) adds the neural-collapse and coding-rate
    measures. TwoNN runs on at most ``max_rows_exact`` distinct rows, sampled with
    ``seed``; everything else uses all rows. ``progress(done, total)`` is called as steps
    finish (one per TwoNN block), for a progress bar. Values that a degenerate matrix leaves
    undefined (anisotropy with fewer than two non-zero rows, TwoNN with fewer than three
    distinct rows, NC1 when all class means coincide) are None, with a note saying why.

    Raises ``UnsupportedDtypeError`` for non-real dtypes and ``TensorzipError`` for a matrix
    that is not 2-D, empty, or not finite, for labels of the wrong shape, and for
    ``max_rows_exact < 3``.
    """
    x = _validated_matrix(matrix)
    n, d = x.shape
    if not isinstance(max_rows_exact, (int, np.integer)) or max_rows_exact < 3:
        raise TensorzipError(f"max_rows_exact must be an integer >= 3, got {max_rows_exact!r}")
    classes = _validated_labels(labels, n)
    notes: list[str] = []

    distinct = distinct_rows(x)
    twonn_rows = distinct
    if distinct.size > max_rows_exact:
        twonn_rows = np.sort(np.random.default_rng(seed).choice(distinct, size=max_rows_exact, replace=False))
    blocks = twonn_search_blocks(twonn_rows.size) if twonn_rows.size >= 3 else 0
    total = 2 + blocks + (classes is not None)
    done = 0

    def step(count: int = 1) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    eigenvalues = covariance_spectrum(x)
    singular_values = np.sqrt(eigenvalues)
    total_variance = eigenvalues.sum()
    if total_variance <= 0:
        notes.append("every row is the same: no variance, so the ranks are 0 and 0 components are needed")
    spectrum = eigenvalues / total_variance if total_variance > 0 else eigenvalues
    ks = energy_ks(d)
    step()

    mean_cosine = anisotropy(x)
    zero_rows = int((~np.any(x != 0, axis=1)).sum())
    if zero_rows:
        notes.append(f"anisotropy: {zero_rows:,} all-zero rows have no direction and were left out")
    if mean_cosine is None:
        notes.append("anisotropy: needs at least two non-zero rows")
    step()

    label_report = None
    if classes is not None:
        label_report = _label_measures(x, labels, classes, notes)
        step()

    dimension = _twonn(x, n, distinct, twonn_rows, notes, lambda blocks_done: step())

    return {
        "rows": int(n),
        "dims": int(d),
        "dtype": str(np.asarray(matrix).dtype),
        "effective_rank": effective_rank(singular_values),
        "stable_rank": stable_rank(singular_values),
        "spectrum": [float(v) for v in spectrum],
        "energy": {"k": ks, "fraction": explained_energy(eigenvalues, ks)},
        "components_for": {str(f): components_for(eigenvalues, f) for f in ENERGY_FRACTIONS},
        "anisotropy": mean_cosine,
        "twonn_dimension": dimension,
        "labels": label_report,
        "sampled": bool(twonn_rows.size < distinct.size),
        "notes": notes,
    }


def _twonn(
    x: np.ndarray, n: int, distinct: np.ndarray, rows: np.ndarray, notes: list[str], block_done: Callable[[int], None]
) -> float | None:
    """The TwoNN estimate on the chosen rows, with notes on duplicates and sampling."""
    duplicates = n - distinct.size
    if duplicates:
        notes.append(f"TwoNN: {duplicates:,} duplicate rows dropped (a point at distance 0 has no distance ratio)")
    if rows.size < 3:
        notes.append(f"TwoNN: needs at least 3 distinct rows, got {rows.size}")
        return None
    if rows.size < distinct.size:
        notes.append(
            f"TwoNN on {rows.size:,} of {distinct.size:,} distinct rows (seeded sample): the exact "
            f"neighbour search costs rows^2 x dims, so it is capped at max_rows_exact={rows.size:,}"
        )
    r1, r2 = two_nearest_distances(x[rows], progress=block_done)
    dimension = twonn_dimension(r1, r2)
    if dimension is None:
        notes.append("TwoNN: every point's two nearest neighbours are equally far (a regular grid?): undefined")
    return dimension


def _label_measures(x: np.ndarray, labels: np.ndarray, classes: int, notes: list[str]) -> dict[str, Any] | None:
    """The labels section, or None with a note when there is only one class."""
    if classes < 2:
        notes.append("labels: only one class, so the class measures (neural collapse, rate reduction) were skipped")
        return None
    labels = np.asarray(labels).reshape(-1)
    nc1 = neural_collapse_nc1(x, labels)
    if nc1 is None:
        notes.append("labels: all class means coincide (no between-class spread), so NC1 is undefined")
    z = _unit_rows(x)
    return {
        "classes": int(classes),
        "nc1": nc1,
        **neural_collapse_nc2(x, labels),
        "coding_rate_reduction": float(coding_rate_reduction(z, labels, MCR2_EPS2)),
        "coding_rate": float(coding_rate(z, MCR2_EPS2)),
        "eps2": MCR2_EPS2,
    }


def _validated_matrix(matrix: np.ndarray) -> np.ndarray:
    """A float64 copy (never the caller's buffer) of a finite, non-empty 2-D real matrix."""
    array = np.asarray(matrix)
    if array.dtype.kind in "cUSMm":  # complex, text, dates: a float conversion would lose or invent data
        raise UnsupportedDtypeError(f"representation matrix must be real numbers, got dtype {array.dtype}")
    try:
        x = np.array(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UnsupportedDtypeError(
            f"representation matrix of dtype {array.dtype} cannot be read as real numbers: {error}"
        ) from None
    if x.ndim != 2:
        raise TensorzipError(
            f"representation matrix must be 2-D (rows = samples, columns = dimensions), got shape {x.shape}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise TensorzipError(f"representation matrix is empty (shape {x.shape})")
    finite = np.isfinite(x)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise TensorzipError(
            f"representation matrix has {int((~finite).sum()):,} NaN or infinite values; "
            f"the first is at row {row}, column {column} ({x[row, column]})"
        )
    largest = float(np.abs(x).max())
    if largest > MAX_MAGNITUDE:  # squares and covariances would overflow float64 to inf
        raise TensorzipError(f"representation matrix holds values up to {largest:.3g}, whose squares overflow "
                             f"float64 (the limit is {MAX_MAGNITUDE:g}); scale it first")
    return x


def _validated_labels(labels: np.ndarray | None, rows: int) -> int | None:
    """The number of classes, after checking the labels fit the matrix; None without labels."""
    if labels is None:
        return None
    array = np.asarray(labels)
    if array.ndim != 1:
        raise TensorzipError(f"labels must be 1-D (one per row), got shape {array.shape}")
    if array.shape[0] != rows:
        raise TensorzipError(f"labels has {array.shape[0]:,} entries but the matrix has {rows:,} rows")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorzipError("labels contain NaN or infinite values")
    try:
        return int(np.unique(array).size)
    except TypeError as error:
        raise TensorzipError(f"labels cannot be sorted into classes: {error}") from None
