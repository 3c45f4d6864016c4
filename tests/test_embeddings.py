"""Embedding collections: the solver's recall is real, targets are met or refused
clearly, lossless is bit-exact, search and rescoring agree with brute force."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

import tensorzip.embeddings as tze
from tensorzip.cli.main import main
from tensorzip.errors import OutputFileError, TargetUnreachableError, TensorzipError


def collection(count=3000, dim=48, seed=0) -> np.ndarray:
    """Clustered, anisotropic, normalized: like sentence embeddings, and small."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    mixing = rng.standard_normal((dim, dim)) * np.linspace(1.0, 0.1, dim)
    x = centres[rng.integers(0, 20, count)] + 0.6 * rng.standard_normal((count, dim)) @ mixing
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_recall(original: np.ndarray, decoded: np.ndarray, rows: np.ndarray, k: int) -> float:
    """recall@k by full sorting, written independently of tensorzip's search."""
    hits = 0
    for row in rows:
        exact = original @ original[row]
        approx = decoded @ original[row]
        exact[row] = approx[row] = -np.inf
        truth = np.argsort(-exact, kind="stable")[:k]
        found = np.argsort(-approx, kind="stable")[:k]
        hits += len(set(truth) & set(found))
    return hits / (len(rows) * k)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.97])
def test_reported_recall_is_the_recall_of_the_decoded_collection(target):
    x = collection()
    blob = tze.compress(x, recall=target, k=10, sample_queries=300)
    stored = tze.open(blob)
    assert stored.recall >= target
    rows = np.sort(np.random.default_rng(0).choice(len(x), size=300, replace=False))
    assert stored.recall == pytest.approx(brute_recall(x, stored.decode(), rows, 10), abs=1e-9)
    assert stored.bytes_per_vector == len(blob) / len(x)
    assert stored.bytes_per_vector < x[0].nbytes / 2


def test_higher_targets_cost_more_bytes():
    x = collection()
    sizes = [len(tze.compress(x, recall=t, sample_queries=300)) for t in (0.7, 0.9, 0.99)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_unreachable_targets_are_refused_clearly():
    x = collection(count=200)
    with pytest.raises(tze.TargetUnreachableError, match="must be in"):
        tze.compress(x, recall=1.2)
    with pytest.raises(tze.TargetUnreachableError, match="at least 11 vectors"):
        tze.compress(x[:5], recall=0.9)
    with pytest.raises(tze.TargetUnreachableError, match="below the target"):
        tze.compress(x, recall=0.99, mode="binary")
    with pytest.raises(TensorzipError, match="needs a target"):
        tze.compress(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_lossless_is_bit_exact(dtype):
    x = collection(count=500).astype(dtype)
    back = tze.open(tze.compress(x, mode="lossless")).decode()
    assert back.dtype == x.dtype and back.tobytes() == x.tobytes()


@pytest.mark.parametrize("mode", ["int8", "int4", "binary"])
def test_fixed_level_modes_decode_to_their_levels(mode):
    x = collection(count=800)
    stored = tze.open(tze.compress(x, mode=mode, rotation=False))
    levels = {"int8": 256, "int4": 16, "binary": 2}[mode]
    symbols = stored._stored.code.symbols  # one row per dimension
    assert symbols.dtype == np.uint8
    for row in symbols:
        assert len(np.unique(row)) <= levels and row.max() < levels
    assert stored.recall is not None and stored.decode().shape == x.shape


def test_edge_shapes():
    one = collection(count=1)
    assert tze.open(tze.compress(one, mode="lossless")).decode().tobytes() == one.tobytes()
    assert tze.open(tze.compress(one, mode="int8")).decode().shape == one.shape
    narrow = collection(count=400, dim=1)
    stored = tze.open(tze.compress(narrow, recall=0.5))
    assert stored.decode().shape == (400, 1)
    zeros = np.zeros((50, 8), np.float32)
    stored = tze.open(tze.compress(zeros, recall=0.9))
    assert np.array_equal(stored.decode(), zeros) and stored.recall == 1.0
    with pytest.raises(TensorzipError, match="at least one vector"):
        tze.compress(np.zeros((0, 8), np.float32), mode="lossless")
    with pytest.raises(TensorzipError, match="2-D"):
        tze.compress(np.zeros(8, np.float32), mode="lossless")


def test_nan_and_bad_dtypes_are_refused():
    x = collection(count=100)
    x[37, 3] = np.nan
    with pytest.raises(TensorzipError, match="NaN or infinity .*vector 37"):
        tze.compress(x, recall=0.9)
    with pytest.raises(TensorzipError, match="floating point"):
        tze.compress(np.ones((10, 4), np.int32), mode="lossless")


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_search_matches_brute_force_on_the_decoded_vectors(metric):
    x = collection(count=1500)
    stored = tze.open(tze.compress(x, recall=0.9, metric=metric, sample_queries=200))
    queries = collection(count=20, seed=5)
    _, rows = stored.search(queries, k=5)
    decoded = stored.decode()
    for q, found in zip(queries, rows, strict=True):
        s = decoded @ q if metric == "ip" else -((decoded - q) ** 2).sum(1)
        assert set(found) == set(np.argsort(-s, kind="stable")[:5])


def test_rescoring_with_the_originals_reaches_exact_results():
    x = collection(count=1500)
    stored = tze.open(tze.compress(x, recall=0.8, sample_queries=200))
    queries = collection(count=30, seed=6)
    exact = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :10]
    _, plain = stored.search(queries, k=10)
    _, rescored = stored.search(queries, k=10, rescore=100, originals=x)
    def hits(found):
        return sum(len(set(f) & set(t)) for f, t in zip(found, exact, strict=True))
    assert hits(rescored) >= hits(plain)
    assert hits(rescored) / exact.size > 0.95
    with pytest.raises(TensorzipError, match="originals"):
        stored.search(queries, k=10, rescore=40)


def test_saved_file_and_cli(tmp_path, capsys):
    x = collection(count=1200)
    source = tmp_path / "vectors.npy"
    np.save(source, x)
    assert main(["embeddings", "compress", str(source), "--recall", "0.9", "-o", str(tmp_path / "v.tzip")]) == 0
    out = capsys.readouterr().out
    assert "recall@10" in out and "bytes/vector" in out
    stored = tze.open(tmp_path / "v.tzip")
    assert stored.recall >= 0.9
    assert main(["embeddings", "decompress", str(tmp_path / "v.tzip"), "-o", str(tmp_path / "back.npy")]) == 0
    assert np.load(tmp_path / "back.npy").shape == x.shape
    with pytest.raises(SystemExit) as exited:  # a usage error, found by the parser: status 2
        main(["embeddings", "compress", str(source), "--recall", "1.5"])
    assert exited.value.code == 2 and "--recall: 1.5 is outside (0, 1]" in capsys.readouterr().err


def test_recall_on_the_callers_own_queries():
    x = collection(count=1500)
    queries = collection(count=200, seed=9)
    stored = tze.open(tze.compress(x, recall=0.9, queries=queries))
    assert stored.record["recall_measured_on"] == "given queries"
    decoded = stored.decode()
    hits = 0
    for q in queries:
        truth = np.argsort(-(x @ q), kind="stable")[:10]
        found = np.argsort(-(decoded @ q), kind="stable")[:10]
        hits += len(set(truth) & set(found))
    assert stored.recall == pytest.approx(hits / (len(queries) * 10), abs=1e-9)
    assert stored.recall >= 0.9
    with pytest.raises(TensorzipError, match="dimensions"):
        tze.compress(x, recall=0.9, queries=queries[:, :5])


def test_verbs_of_the_package(tmp_path):
    """save_file takes the vectors first, as tz.save_file; the old save(target, vectors)
    still works, with a DeprecationWarning; load_file, decompress and the file-to-file
    verbs give the same vectors."""
    x = collection(count=400)
    blob = tze.compress(x, mode="int8")
    record = tze.save_file(x, tmp_path / "new.tzip", mode="int8")
    assert (tmp_path / "new.tzip").read_bytes() == blob and record["stored_bytes"] == len(blob)
    with pytest.warns(DeprecationWarning, match="save_file"):
        assert tze.save(tmp_path / "old.tzip", x, mode="int8") == record
    assert (tmp_path / "old.tzip").read_bytes() == blob
    decoded = tze.decompress(blob)
    assert tze.load_file(tmp_path / "new.tzip").tobytes() == decoded.tobytes() == tze.open(blob).decode().tobytes()
    assert tze.TargetUnreachableError is TargetUnreachableError

    np.save(tmp_path / "x.npy", x)
    report = tze.compress_file(tmp_path / "x.npy", tmp_path / "x.tzip", mode="int8")
    assert (tmp_path / "x.tzip").read_bytes() == blob
    assert report.compressed_bytes == len(blob) and report.original_bytes == (tmp_path / "x.npy").stat().st_size
    assert report.record["count"] == 400 and report.bytes_per_vector == len(blob) / 400
    assert report.to_json() == {**record, "source": str(tmp_path / "x.npy"), "target": str(tmp_path / "x.tzip"),
                                "original_bytes": report.original_bytes, "compressed_bytes": len(blob),
                                "seconds": report.seconds, "ratio": report.ratio}
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.compressed_bytes = 0  # type: ignore[misc]
    back = tze.decompress_file(tmp_path / "x.tzip", tmp_path / "back.npy")
    assert np.load(tmp_path / "back.npy").tobytes() == decoded.tobytes()
    assert back.output_bytes == (tmp_path / "back.npy").stat().st_size and back.shape == (400, 48)
    with pytest.raises(OutputFileError, match="input"):
        tze.compress_file(tmp_path / "x.npy", tmp_path / "x.npy", mode="int8")
    with pytest.raises(OutputFileError, match="exists"):
        tze.decompress_file(tmp_path / "x.tzip", tmp_path / "back.npy", overwrite=False)
    with pytest.raises(TargetUnreachableError, match="below the target"):
        tze.compress_file(tmp_path / "x.npy", tmp_path / "y.tzip", recall=0.999, mode="binary")
    assert not (tmp_path / "y.tzip").exists()


def _scores_by_decoding(stored, queries, metric):
    decoded = stored.decode().astype(np.float64)
    q = np.asarray(queries, dtype=np.float64)
    dots = q @ decoded.T
    if metric == "ip":
        return dots
    return 2 * dots - (decoded * decoded).sum(1)[None, :] - (q * q).sum(1)[:, None]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("rotation", [True, False])
@pytest.mark.parametrize("unit", [True, False])
@pytest.mark.parametrize("level", [1e-4, 1e-7])  # 1e-7: 16-bit symbols
@pytest.mark.parametrize("queries", [1, 5, 40])  # the native kernel, then BLAS over widened blocks
def test_search_from_stored_integers_ranks_as_the_decoded_vectors_do(metric, rotation, unit, level, queries):
    """Search scores a lossy collection without decoding it; its top 10 must be the top 10
    of the decoded vectors (scores equal to float32 rounding; ties may swap)."""
    x = collection(count=2500)
    if not unit:
        x = x * np.random.default_rng(1).uniform(0.5, 2.0, (len(x), 1)).astype(np.float32)
    stored = tze.open(tze.compress(x, level=level, rotation=rotation, metric=metric))
    if level == 1e-7:
        assert stored._stored.code.symbols.dtype == np.uint16
    q = collection(count=queries, seed=5) * (1.0 if unit else 1.7)
    got_scores, got_index = stored.search(q, k=10, metric=metric)
    exact = _scores_by_decoding(stored, q, metric)
    scale = np.abs(exact).max()
    for row in range(queries):
        assert np.allclose(got_scores[row], exact[row, got_index[row]], rtol=0, atol=1e-5 * scale)
        kth = np.sort(exact[row])[::-1][9]
        assert np.all(exact[row, got_index[row]] >= kth - 1e-5 * scale), "a vector outside the top 10 was returned"


def test_targets_are_met_with_confidence_and_both_figures_are_recorded():
    """The solver stops where the recall's lower confidence bound reaches the target, so
    the target holds on fresh queries; the estimate and the bound are both recorded."""
    from tensorzip.embeddings.search import recall_lower_bound

    x = collection()
    record = tze.open(tze.compress(x, recall=0.9, k=10, sample_queries=300)).record
    trials = record["recall_queries"] * record["k"]
    assert record["recall_confidence"] == 0.95
    assert record["recall_lower_bound"] == pytest.approx(recall_lower_bound(record["recall_at_k"], trials))
    assert record["recall_at_k"] > record["recall_lower_bound"] >= 0.9


def test_the_recall_bound_is_a_wilson_lower_bound():
    from tensorzip.embeddings.search import recall_lower_bound

    # Values of the one-sided 95% Wilson score bound, computed by hand from its formula.
    assert recall_lower_bound(0.95, 5000) == pytest.approx(0.94468, abs=1e-5)
    assert recall_lower_bound(0.5, 100) == pytest.approx(0.41885, abs=1e-5)
    assert recall_lower_bound(1.0, 5000) < 1.0
    assert recall_lower_bound(0.9, 50_000) > recall_lower_bound(0.9, 500)  # more trials, tighter bound
    assert recall_lower_bound(0.0, 10) == 0.0 and recall_lower_bound(0.7, 0) == 0.0


def test_info_reports_the_recall_bound_beside_the_estimate(tmp_path):
    import tensorzip as tz

    path = tmp_path / "vectors.tzip"
    tze.save_file(collection(), path, recall=0.9, sample_queries=300)
    achieved = tz.info(path)["achieved"]
    record = tze.open(path).record
    assert achieved["recall_at_k"] == record["recall_at_k"]
    assert achieved["lower_bound"] == record["recall_lower_bound"] >= 0.9
    assert achieved["confidence"] == 0.95


def test_queries_with_nan_or_infinity_are_refused_and_nan_scores_rank_last():
    """A NaN query would rank arbitrary rows first; a NaN score (a lossless collection
    holding NaN) must not push a real neighbour out of the top k."""
    from tensorzip.embeddings.search import top_k_of_scores

    stored = tze.open(tze.compress(collection(count=500), recall=0.9, sample_queries=100))
    queries = collection(count=3, seed=4)
    queries[1, 7] = np.inf
    with pytest.raises(TensorzipError, match="query 1 holds NaN or infinity"):
        stored.search(queries, k=5)
    scores = np.array([[0.5, np.nan, 0.9, np.nan, 0.1, 0.7]], dtype=np.float32)
    best, rows = top_k_of_scores([(0, scores)], 1, 3)
    assert rows.tolist() == [[2, 5, 0]]
    assert best[0].tolist() == pytest.approx([0.9, 0.7, 0.5])


def test_the_solvers_progress_only_moves_forward_and_ends_at_its_total(tmp_path):
    calls = []
    tze.save_file(collection(count=800), tmp_path / "c.tzip", recall=0.9, sample_queries=100,
                  progress=lambda done, most: calls.append((done, most)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert calls[-1][0] == calls[-1][1]
