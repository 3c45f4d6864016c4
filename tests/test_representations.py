"""Representation-matrix measures, each checked against an independent computation
(SVD, brute-force cosines, a k-d tree, explicit loops, the n x n logdet) on data whose
answer is known."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from tensorzip.analysis.representations import (
    analyze_representations,
    anisotropy,
    coding_rate,
    coding_rate_reduction,
    distinct_rows,
    effective_rank,
    neural_collapse_nc1,
    neural_collapse_nc2,
    stable_rank,
    two_nearest_distances,
    twonn_dimension,
)
from tensorzip.errors import TensorzipError, UnsupportedDtypeError

KEYS = {"rows", "dims", "dtype", "effective_rank", "stable_rank", "spectrum", "energy", "components_for",
        "anisotropy", "twonn_dimension", "labels", "sampled", "notes"}
LABEL_KEYS = {"classes", "nc1", "nc2_equinorm", "nc2_equiangular", "nc2_max_angle", "coding_rate_reduction",
              "coding_rate", "eps2"}


def _orthonormal(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((rows, columns)))[0]


def _simplex_etf(rng: np.random.Generator, classes: int, dims: int) -> np.ndarray:
    """C class means in d dims with equal norms and pairwise cosine -1/(C-1), summing to 0."""
    centered_identity = np.eye(classes) - np.full((classes, classes), 1.0 / classes)
    return np.sqrt(classes / (classes - 1)) * centered_identity @ _orthonormal(rng, dims, classes).T


# --- spectrum: ranks, energy ---------------------------------------------------------------


def test_known_rank_shows_in_every_spectrum_measure():
    rng = np.random.default_rng(0)
    rank = 5
    x = rng.standard_normal((300, rank)) @ rng.standard_normal((rank, 40)) + rng.standard_normal(40)
    report = analyze_representations(x)
    assert report["effective_rank"] <= rank + 1e-9
    assert report["stable_rank"] <= rank + 1e-9
    assert len(report["spectrum"]) == 40
    assert sum(report["spectrum"]) == pytest.approx(1.0)
    assert max(report["spectrum"][rank:]) < 1e-12
    assert report["components_for"]["0.99"] <= rank
    assert report["energy"]["k"] == [1, 2, 4, 8, 16, 32, 40]
    assert report["energy"]["fraction"][3:] == pytest.approx([1.0] * 4)


def test_identical_singular_values_give_the_rank_exactly():
    for rank in (1, 3, 7):
        assert effective_rank(np.full(rank, 2.5)) == pytest.approx(rank, rel=1e-12)
        assert stable_rank(np.full(rank, 2.5)) == pytest.approx(rank, rel=1e-12)
    rng = np.random.default_rng(1)
    rank, n, d = 6, 200, 30
    columns = rng.standard_normal((n, rank))
    q = np.linalg.qr(columns - columns.mean(axis=0))[0]  # orthonormal columns that each sum to 0
    x = 3.0 * q @ _orthonormal(rng, d, rank).T + rng.standard_normal(d)  # offset: removed by centering
    report = analyze_representations(x)
    assert report["stable_rank"] == pytest.approx(rank, rel=1e-9)
    assert report["effective_rank"] == pytest.approx(rank, rel=1e-9)
    assert report["components_for"] == {"0.9": rank, "0.95": rank, "0.99": rank}  # all variance equal


@pytest.mark.parametrize("shape", [(60, 12), (12, 60), (40, 40), (3, 5)])
def test_ranks_and_spectrum_match_numpy_svd(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * np.geomspace(1, 0.01, shape[1]) + 4.0
    report = analyze_representations(x)

    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)[: min(shape[0] - 1, shape[1])]
    p = s / s.sum()
    assert report["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert report["stable_rank"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-9)
    assert report["spectrum"] == pytest.approx(s**2 / (s**2).sum(), abs=1e-12)
    explained = np.cumsum(s**2) / (s**2).sum()
    for fraction, k in report["components_for"].items():
        assert k == next(i + 1 for i, e in enumerate(explained) if e >= float(fraction))
    for k, fraction in zip(report["energy"]["k"], report["energy"]["fraction"], strict=True):
        assert fraction == pytest.approx(explained[min(k, len(explained)) - 1])


# --- anisotropy --------------------------------------------------------------------------


def test_anisotropy_matches_brute_force_cosines():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 8)) + 0.7
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosines = unit @ unit.T
    brute = cosines[~np.eye(50, dtype=bool)].mean()
    assert anisotropy(x) == pytest.approx(brute, rel=1e-12)

    with_zero_row = np.vstack([x, np.zeros(8)])  # a zero row has no direction: left out
    report = analyze_representations(with_zero_row)
    assert report["anisotropy"] == pytest.approx(brute, rel=1e-12)
    assert any("all-zero rows" in note for note in report["notes"])


def test_anisotropy_of_identical_rows_is_one():
    assert anisotropy(np.tile([0.3, -1.0, 2.0], (20, 1))) == pytest.approx(1.0)
    assert anisotropy(np.zeros((4, 3))) is None


# --- TwoNN ------------------------------------------------------------------------------


def test_nearest_distances_match_a_kd_tree():
    spatial = pytest.importorskip("scipy.spatial")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 7)) * 0.01 + 1e3  # far from the origin: cancellation would show
    r1, r2 = two_nearest_distances(x)
    expected, _ = spatial.cKDTree(x).query(x, k=3)
    np.testing.assert_allclose(r1, expected[:, 1], rtol=1e-9)
    np.testing.assert_allclose(r2, expected[:, 2], rtol=1e-9)


@pytest.mark.parametrize(("dimension", "tolerance"), [(2, 0.10), (5, 0.15)])
def test_twonn_finds_the_dimension_of_an_embedded_hypercube(dimension, tolerance):
    rng = np.random.default_rng(4)
    cube = rng.random((3000, dimension))
    x = cube @ _orthonormal(rng, 30, dimension).T + rng.standard_normal(30)
    estimate = analyze_representations(x)["twonn_dimension"]
    assert abs(estimate - dimension) <= tolerance * dimension


def test_twonn_estimator_on_a_known_pareto_law():
    rng = np.random.default_rng(5)
    mu = rng.pareto(3.0, 200_000) + 1.0  # f(mu) = 3 mu^-4, the law of r2/r1 in 3 dimensions
    assert twonn_dimension(np.ones_like(mu), mu) == pytest.approx(3.0, rel=0.02)
    assert twonn_dimension(np.array([0.0, 1.0, 1.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(
        2 / (np.log(2) + np.log(4)))  # the r1 == 0 point is left out


def test_duplicates_are_dropped_and_said():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((400, 3))
    report = analyze_representations(np.vstack([x, x[:25]]))
    assert report["twonn_dimension"] == analyze_representations(x)["twonn_dimension"]
    assert any("25 duplicate rows" in note for note in report["notes"])


def test_distinct_rows_agree_with_numpy_unique():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (300, 2)).astype(np.float64)  # many repeats
    x[0], x[1] = [0.0, 1.0], [-0.0, 1.0]
    _, first = np.unique(x + 0.0, axis=0, return_index=True)
    np.testing.assert_array_equal(distinct_rows(x), np.sort(first))


def test_sampling_is_seeded_and_reported():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((600, 4))
    report = analyze_representations(x, max_rows_exact=300, seed=1)
    assert report["sampled"] is True
    assert any("TwoNN on 300 of 600 distinct rows" in note for note in report["notes"])
    assert report == analyze_representations(x, max_rows_exact=300, seed=1)
    assert report["twonn_dimension"] != analyze_representations(x, max_rows_exact=300, seed=2)["twonn_dimension"]
    assert analyze_representations(x)["sampled"] is False


# --- neural collapse ------------------------------------------------------------------------


def _nc1_by_loops(x: np.ndarray, labels: np.ndarray) -> float:
    classes = sorted(set(labels.tolist()))
    global_mean = x.mean(axis=0)
    means = {c: x[labels == c].mean(axis=0) for c in classes}
    within = sum(np.outer(row - means[c], row - means[c]) for row, c in zip(x, labels, strict=True)) / len(x)
    between = sum(np.outer(means[c] - global_mean, means[c] - global_mean) for c in classes) / len(classes)
    return float(np.trace(within @ np.linalg.pinv(between)) / len(classes))


def _nc2_by_loops(x: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    classes = sorted(set(labels.tolist()))
    centered = [x[labels == c].mean(axis=0) - x.mean(axis=0) for c in classes]
    norms = [float(np.sqrt(v @ v)) for v in centered]
    cosines = [float(centered[a] @ centered[b]) / (norms[a] * norms[b])
               for a in range(len(classes)) for b in range(a + 1, len(classes))]
    shift = 1.0 / (len(classes) - 1)
    return (float(np.std(norms) / np.mean(norms)), float(np.std(cosines)),
            float(np.mean([abs(c + shift) for c in cosines])))


def test_nc_measures_match_direct_loops():
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, 80)
    x = rng.standard_normal((80, 6)) + 2.0 * rng.standard_normal((4, 6))[labels]
    assert neural_collapse_nc1(x, labels) == pytest.approx(_nc1_by_loops(x, labels), rel=1e-9)
    nc2 = neural_collapse_nc2(x, labels)
    expected = _nc2_by_loops(x, labels)
    assert [nc2["nc2_equinorm"], nc2["nc2_equiangular"], nc2["nc2_max_angle"]] == pytest.approx(expected, rel=1e-9)


def test_collapsed_simplex_etf_scores_zero_and_random_scores_high():
    rng = np.random.default_rng(10)
    classes, per_class, dims = 5, 30, 16
    labels = np.repeat(np.arange(classes), per_class)
    collapsed = 4.0 * _simplex_etf(rng, classes, dims)[labels] + 7.0  # shift: measured from the global mean
    section = analyze_representations(collapsed, labels)["labels"]
    assert section["classes"] == classes
    assert section["nc1"] == pytest.approx(0.0, abs=1e-12)
    for key in ("nc2_equinorm", "nc2_equiangular", "nc2_max_angle"):
        assert section[key] == pytest.approx(0.0, abs=1e-9)

    noisy = rng.standard_normal((classes * per_class, dims)) + 0.3 * rng.standard_normal((classes, dims))[labels]
    section = analyze_representations(noisy, labels)["labels"]
    assert section["nc1"] > 1.0
    assert section["nc2_equiangular"] > 0.05 and section["nc2_max_angle"] > 0.05
    assert section["nc2_equinorm"] > 0.05


# --- coding rate --------------------------------------------------------------------------


def _rate_by_slogdet(z: np.ndarray, eps2: float) -> float:
    """R(Z) through the n x n form of Sylvester's identity."""
    n, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(n) + d / (n * eps2) * z @ z.T)[1]


@pytest.mark.parametrize("shape", [(20, 50), (50, 20)])
def test_coding_rate_matches_the_n_by_n_logdet(shape):
    rng = np.random.default_rng(11)
    z = rng.standard_normal(shape)
    assert coding_rate(z, 0.5) == pytest.approx(_rate_by_slogdet(z, 0.5), rel=1e-10)
    assert coding_rate(z, 0.1) == pytest.approx(_rate_by_slogdet(z, 0.1), rel=1e-10)


def test_rate_reduction_is_zero_for_identical_classes_and_large_for_orthogonal_ones():
    rng = np.random.default_rng(12)
    z = rng.standard_normal((30, 10))
    labels = rng.integers(0, 3, 30)
    expected = _rate_by_slogdet(z, 0.5) - sum(
        (labels == c).mean() * _rate_by_slogdet(z[labels == c], 0.5) for c in range(3))
    assert coding_rate_reduction(z, labels) == pytest.approx(expected, rel=1e-10)
    assert coding_rate_reduction(z, labels) >= 0

    same_rows_in_each_class = np.vstack([z, z])  # every class has the same second moments
    assert coding_rate_reduction(same_rows_in_each_class, np.repeat([0, 1], 30)) == pytest.approx(0.0, abs=1e-10)
    assert coding_rate_reduction(z, np.zeros(30)) == pytest.approx(0.0, abs=1e-12)

    basis = _orthonormal(rng, 10, 10)  # two classes in orthogonal 5-dim subspaces
    split = np.vstack([rng.standard_normal((30, 5)) @ basis[:, :5].T, rng.standard_normal((30, 5)) @ basis[:, 5:].T])
    assert coding_rate_reduction(split, np.repeat([0, 1], 30)) > 1.0


def test_labels_section_codes_unit_rows():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((40, 6)) * 5.0
    labels = np.array(["cat", "dog"] * 20)
    section = analyze_representations(x, labels)["labels"]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert section["eps2"] == 0.5
    assert section["coding_rate"] == pytest.approx(_rate_by_slogdet(unit, 0.5), rel=1e-10)
    per_class = sum(0.5 * _rate_by_slogdet(unit[labels == c], 0.5) for c in ("cat", "dog"))
    assert section["coding_rate_reduction"] == pytest.approx(section["coding_rate"] - per_class, rel=1e-10)


# --- the report as a whole ------------------------------------------------------------------


def test_report_has_exactly_the_documented_keys_and_is_plain_json():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((100, 12)).astype(np.float32)
    calls: list[tuple[int, int]] = []
    labels = rng.integers(0, 3, 100)
    report = analyze_representations(x, labels, progress=lambda done, total: calls.append((done, total)))
    assert set(report) == KEYS and set(report["labels"]) == LABEL_KEYS
    assert set(report["components_for"]) == {"0.9", "0.95", "0.99"}
    assert report["rows"] == 100 and report["dims"] == 12 and report["dtype"] == "float32"
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # plain types only
    assert [done for done, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][0] == calls[-1][1] == len(calls)


@pytest.mark.parametrize("x", [
    np.ones((1, 4)), np.arange(8.0).reshape(2, 4), np.full((10, 3), 2.5), np.linspace(0, 1, 10)[:, None] ** 2,
    np.zeros((5, 2)), np.eye(3),
], ids=["one-row", "two-rows", "constant", "one-dim", "zeros", "three-rows"])
def test_degenerate_matrices_give_defined_plain_values(x):
    report = analyze_representations(x)
    json.dumps(report, allow_nan=False)
    assert report["rows"] == x.shape[0] and len(report["spectrum"]) == min(x.shape[0] - 1, x.shape[1])
    if np.ptp(x, axis=0).max() == 0:  # no variance
        assert report["effective_rank"] == report["stable_rank"] == 0.0
        assert report["components_for"] == {"0.9": 0, "0.95": 0, "0.99": 0}
        assert report["twonn_dimension"] is None and report["notes"]
    if x.shape[1] == 1:
        assert report["effective_rank"] == report["stable_rank"] == pytest.approx(1.0)
        assert report["twonn_dimension"] is not None


def test_other_dtypes_and_the_callers_array_is_untouched():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((50, 6))
    copy = x.copy()
    report = analyze_representations(x)
    np.testing.assert_array_equal(x, copy)
    bf16 = analyze_representations(x.astype(ml_dtypes.bfloat16))
    assert bf16["dtype"] == "bfloat16" and bf16["effective_rank"] == pytest.approx(report["effective_rank"], rel=0.02)
    assert analyze_representations(np.arange(60).reshape(20, 3) % 7)["dtype"] == "int64"


def test_one_class_skips_the_label_measures_with_a_note():
    report = analyze_representations(np.random.default_rng(16).standard_normal((20, 3)), np.full(20, 7))
    assert report["labels"] is None
    assert any("only one class" in note for note in report["notes"])


@pytest.mark.parametrize(("matrix", "labels", "message"), [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), None, "NaN or infinite.*row 0, column 1"),
    (np.array([[1.0, 2.0], [np.inf, 1.0]]), None, "row 1, column 0"),
    (np.arange(5.0), None, "must be 2-D"),
    (np.zeros((2, 2, 2)), None, "must be 2-D"),
    (np.zeros((0, 4)), None, "empty"),
    (np.zeros((4, 2)), np.zeros(3), "labels has 3 entries but the matrix has 4 rows"),
    (np.zeros((4, 2)), np.zeros((4, 1)), "labels must be 1-D"),
    (np.zeros((4, 2)), np.array([0.0, 1.0, np.nan, 1.0]), "labels contain NaN"),
])
def test_bad_input_raises_a_clear_error(matrix, labels, message):
    with pytest.raises(TensorzipError, match=message):
        analyze_representations(matrix, labels)


def test_bad_dtype_and_arguments():
    with pytest.raises(UnsupportedDtypeError, match="complex128"):
        analyze_representations(np.ones((3, 3), dtype=complex))
    with pytest.raises(TensorzipError, match="max_rows_exact"):
        analyze_representations(np.ones((3, 3)), max_rows_exact=2)
