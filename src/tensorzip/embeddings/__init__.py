"""Embedding collections: the fewest bytes that keep a stated recall@k, measured.

    >>> import numpy as np, tensorzip.embeddings as tze
    >>> rng = np.random.default_rng(0)
    >>> vectors = rng.standard_normal((2000, 32)).astype(np.float32) * np.linspace(1, 0.1, 32, dtype=np.float32)
    >>> blob = tze.compress(vectors, recall=0.9, k=10)
    >>> collection = tze.open(blob)
    >>> collection.recall >= 0.9, collection.bytes_per_vector < vectors[0].nbytes
    (True, True)
    >>> scores, rows = collection.search(vectors[:5], k=3)
    >>> rows.shape
    (5, 3)

Modes: ``"transform"`` (PCA or the original axes, truncation, reverse
water-filling, entropy-coded integers; with ``recall=`` the solver picks the
level, with ``level=`` the caller does), ``"lossless"`` (bit-exact floats),
and fixed-level quantizers for comparison: ``"int8"``, ``"int4"``, ``"binary"``.

The verbs are the package's: ``compress`` / ``decompress`` for bytes, ``save_file``
(vectors first, then the path, as ``tz.save_file``) / ``load_file`` for a path,
``compress_file`` / ``decompress_file`` from a ``.npy`` file to a ``.npy`` file, each
returning a frozen report; ``open`` gives a collection to search without decoding it
all. A recall target that cannot be met raises ``TargetUnreachableError``.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vectors.tzip")
    >>> tze.save_file(vectors, path, mode="int8")["bytes_per_vector"] < vectors[0].nbytes
    True
    >>> tze.load_file(path).shape == tze.decompress(tze.compress(vectors, mode="int8")).shape == vectors.shape
    True
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np

from .. import dtypes
from ..container.kinds import load_npy
from ..errors import TargetUnreachableError, TensorzipError
from ..files import DecompressionReport, SizeAndSpeed
from ..outputs.atomic import atomic_output, refuse_output_over_inputs
from .code import EmbeddingCode, fit_basis, fixed_levels_code, project, uniform_code
from .collection import EmbeddingCollection
from .search import METRICS, RECALL_CONFIDENCE
from .solver import given_queries, hold_out, solve
from .storage import to_bytes, write

MODES = ("transform", "lossless", "int8", "int4", "binary")
_LEVELS = {"int8": 256, "int4": 16, "binary": 2}

__all__ = ["METRICS", "MODES", "EmbeddingCollection", "EmbeddingsDecompressionReport", "EmbeddingsReport",
           "TargetUnreachableError", "compress", "compress_file", "decompress", "decompress_file", "load_file", "open",
           "save", "save_file"]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview


@dataclass(frozen=True)
class EmbeddingsReport(SizeAndSpeed):
    """What ``compress_file`` did: the input and output sizes and the stored record (mode,
    the recall target and the recall@k measured on the decoded collection)."""

    source: str
    target: str
    original_bytes: int  # the input file's size
    compressed_bytes: int  # the output file's size, everything counted
    seconds: float
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_per_vector(self) -> float:
        """Everything stored (codes, basis, steps, header), per vector."""
        return self.compressed_bytes / max(1, self.record.get("count", 0))

    @property
    def recall(self) -> float | None:
        """recall@k measured on the decoded collection (None where none was measured)."""
        return self.record.get("recall_at_k")

    def to_json(self) -> dict[str, Any]:
        """The record with the sizes, as plain JSON values (``tensorzip embeddings compress --json``)."""
        sizes = {key: value for key, value in asdict(self).items() if key != "record"}
        return {**self.record, **sizes, "stored_bytes": self.compressed_bytes,
                "bytes_per_vector": self.bytes_per_vector, "ratio": self.ratio}


@dataclass(frozen=True)
class EmbeddingsDecompressionReport(DecompressionReport):
    """What ``decompress_file`` wrote: the decoded vectors as a ``.npy`` file (a
    ``tz.DecompressionReport``, with the vectors' shape and dtype)."""

    shape: tuple[int, int] = (0, 0)
    dtype: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {**super().to_json(), "shape": list(self.shape)}


def _checked(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise TensorzipError(f"embeddings must be a 2-D array (vectors x dimensions), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise TensorzipError(f"embeddings must have at least one vector and one dimension, got shape {array.shape}")
    spec = dtypes.by_numpy(array.dtype)
    if not spec.is_float:
        raise TensorzipError(f"embeddings must be floating point, got {array.dtype}")
    if not np.isfinite(array.astype(np.float32)).all():
        bad = int(np.argwhere(~np.isfinite(array.astype(np.float32)))[0][0])
        raise TensorzipError(f"embeddings contain NaN or infinity (first in vector {bad})")
    return array


def save_file(vectors: Any, target: str | os.PathLike[str] | BinaryIO, *, recall: float | None = None, k: int = 10,
              metric: str = "ip", mode: str = "transform", level: float | None = None, rotation: bool | None = None,
              emphasis: float = 0.75, sample_queries: int = 500, queries: Any = None, seed: int = 0,
              threads: int | None = None, overwrite: bool = True,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Compress a collection into ``target`` (a path, written atomically, or a binary
    stream), in the argument order of ``tz.save_file``; returns the record stored with it
    (mode, bytes per vector, measured recall, ...), so the result needs no second read.

    With ``recall``, the solver chooses the basis, emphasis and level; ``level`` (and
    ``emphasis``, ``rotation``) set them by hand instead (see ``code.uniform_code``).
    Recall is measured on ``sample_queries`` rows of the collection held out as
    queries, or on ``queries`` (a sample of the queries you will search with: the
    target then holds for their distribution) with 95% confidence: the recall's lower
    confidence bound over those queries x k trials must reach it (recorded as
    ``recall_lower_bound`` beside the measured ``recall_at_k``). A target no code meets
    raises ``TargetUnreachableError`` and writes nothing. ``progress(done, most)``: after
    each candidate the solver measures.
    """
    record, code, lossless = _encode(vectors, recall, k, metric, mode, level, rotation, emphasis, sample_queries,
                                     queries, seed, threads, progress)
    size = write(target, record, code=code, vectors=lossless, threads=threads, overwrite=overwrite)
    return {**record, "stored_bytes": size, "bytes_per_vector": size / record["count"]}


def save(target: str | os.PathLike[str] | BinaryIO, vectors: Any, **options: Any) -> dict[str, Any]:
    """Deprecated: ``save_file(vectors, target, ...)``, whose argument order is the
    package's (data first, then where it goes); this order still works."""
    warnings.warn("tensorzip.embeddings.save(target, vectors) is now save_file(vectors, target)", DeprecationWarning,
                  stacklevel=2)
    return save_file(vectors, target, **options)


def compress(vectors: Any, *, recall: float | None = None, k: int = 10, metric: str = "ip", mode: str = "transform",
             level: float | None = None, rotation: bool | None = None, emphasis: float = 0.75,
             sample_queries: int = 500, queries: Any = None, seed: int = 0, threads: int | None = None) -> bytes:
    """``save_file`` into bytes, for collections kept in a database or sent over a network."""
    record, code, lossless = _encode(vectors, recall, k, metric, mode, level, rotation, emphasis, sample_queries,
                                     queries, seed, threads, None)
    return to_bytes(record, code=code, vectors=lossless, threads=threads)


def decompress(blob: bytes | bytearray | memoryview, threads: int | None = None) -> np.ndarray:
    """Every vector of a compressed collection, decoded (float32; the original dtype for a
    lossless one); ``open`` searches without decoding everything at once."""
    return open(blob, threads=threads).decode()


def load_file(path: str | os.PathLike[str], threads: int | None = None) -> np.ndarray:
    """Every vector of a collection file, decoded, as ``decompress`` gives them."""
    return open(path, threads=threads).decode()


def open(source: Source, threads: int | None = None) -> EmbeddingCollection:  # noqa: A001 - mirrors builtins.open
    """A stored collection (a path or bytes), ready to decode or to search block by block,
    so a collection larger than memory in float32 can still be searched."""
    return EmbeddingCollection.load(source, threads=threads)


def compress_file(source: str | os.PathLike[str], target: str | os.PathLike[str], *, queries: Any = None,
                  overwrite: bool = True, **options: Any) -> EmbeddingsReport:
    """Compress a ``.npy`` matrix of vectors (rows) into ``target``, atomically, for
    collections kept as NumPy files; ``queries`` (an array or a ``.npy`` path) and
    ``options`` as for ``save_file``."""
    started = time.perf_counter()
    refuse_output_over_inputs(target, source, queries)
    vectors = load_npy(source, "vectors")
    named = queries if isinstance(queries, (str, os.PathLike)) else None
    if named is not None:
        queries = load_npy(named, "queries")
    try:
        record = save_file(vectors, target, queries=queries, overwrite=overwrite, **options)
    except TensorzipError as error:
        if named is not None and "queries" in str(error) and str(named) not in str(error):
            raise type(error)(f"{named}: {error}") from None  # the queries file is what is wrong: name it
        raise
    size = record.pop("stored_bytes")
    record.pop("bytes_per_vector")
    return EmbeddingsReport(str(source), str(target), os.path.getsize(source), size, time.perf_counter() - started,
                            record)


def decompress_file(source: str | os.PathLike[str], target: str | os.PathLike[str], *, threads: int | None = None,
                    overwrite: bool = True) -> EmbeddingsDecompressionReport:
    """Write a collection's decoded vectors as a ``.npy`` file (atomically: a failure
    leaves no file), for tools that read NumPy arrays."""
    started = time.perf_counter()
    refuse_output_over_inputs(target, source)
    vectors = load_file(source, threads=threads)  # decoded before the output is opened
    with atomic_output(target, overwrite=overwrite) as handle:
        np.save(handle, vectors, allow_pickle=False)
        handle.flush()
        written = handle.tell()
    return EmbeddingsDecompressionReport(str(source), str(target), os.path.getsize(source), written,
                                         time.perf_counter() - started, threads if threads and threads > 0 else
                                         (os.cpu_count() or 1), (int(vectors.shape[0]), int(vectors.shape[1])),
                                         str(vectors.dtype))


def _encode(vectors: Any, recall: float | None, k: int, metric: str, mode: str, level: float | None,
            rotation: bool | None, emphasis: float, sample_queries: int, queries: Any, seed: int,
            threads: int | None, progress: Callable[[int, int], None] | None,
            ) -> tuple[dict[str, Any], EmbeddingCode | None, np.ndarray | None]:
    array = _checked(vectors)
    if mode not in MODES:
        raise TensorzipError(f"mode must be one of {MODES}, got {mode!r}")
    if metric not in METRICS:
        raise TensorzipError(f"metric must be one of {METRICS}, got {metric!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise TensorzipError(f"k must be a positive integer, got {k!r}")
    if not isinstance(sample_queries, int) or isinstance(sample_queries, bool) or sample_queries < 1:
        # Zero held-out queries would record a recall "measured" on nothing (1.0 by default).
        raise TensorzipError(f"sample_queries must be a positive integer (the rows recall is measured on), "
                             f"got {sample_queries!r}")
    if level is not None and not (isinstance(level, (int, float)) and math.isfinite(level) and level > 0):
        raise TensorzipError(f"level must be a positive finite number, got {level!r}")
    record: dict[str, Any] = {"mode": mode, "count": int(array.shape[0]), "dim": int(array.shape[1]),
                              "dtype": dtypes.by_numpy(array.dtype).name, "metric": metric, "k": k,
                              "target_recall": recall}
    if mode == "lossless":
        return {**record, "recall_at_k": 1.0}, None, np.ascontiguousarray(array)
    vectors32 = array.astype(np.float32)
    if queries is not None:
        try:
            q = _checked(queries)
        except TensorzipError as error:
            raise type(error)(f"the queries: {error}") from None
        if q.shape[1] != vectors32.shape[1]:
            raise TensorzipError(f"queries have {q.shape[1]} dimensions, the vectors {vectors32.shape[1]}")
        held = given_queries(vectors32, q, k, metric)
    else:
        held = hold_out(vectors32, k, metric, sample_queries, seed) if len(vectors32) > k else None
    if mode == "transform" and level is None:
        if recall is None:
            raise TensorzipError("transform mode needs a target (recall=) or a level (level=); "
                                 "use mode='lossless' to keep every bit")
        if held is None:
            raise TargetUnreachableError(f"measuring recall@{k} needs at least {k + 1} vectors; "
                                         f"the collection has {len(vectors32)}")
        rotations = (True, False) if rotation is None else (rotation,)
        solution = solve(vectors32, recall, held, lambda c: len(to_bytes(record, code=c, threads=threads)),
                         rotations, seed, threads, progress)
        code, used_rotation, used_level = solution.code, solution.rotation, solution.level
        used_emphasis: float | None = solution.emphasis
        measured: float | None = solution.recall  # measured by the solver on the decoded collection
    else:
        used_rotation = bool(rotation) if rotation is not None else mode == "transform"
        projection = project(vectors32, fit_basis(vectors32, used_rotation, seed=seed))
        if mode == "transform":
            used_level = float(level)  # type: ignore[arg-type]
            if not used_level > 0:
                raise TensorzipError(f"level must be positive, got {level!r}")
            used_emphasis = float(emphasis)
            code = uniform_code(projection, used_level, used_emphasis)
        else:
            used_level = used_emphasis = None
            code = fixed_levels_code(projection, _LEVELS[mode])
        measured = held.recall(code, threads) if held is not None else None
    if recall is not None and held is not None and measured is not None and not held.meets(measured, recall):
        raise TargetUnreachableError(
            f"{mode} reaches recall@{k} = {measured:.4f} on {len(held.queries)} queries (at least "
            f"{held.bound(measured):.4f} with {RECALL_CONFIDENCE:.0%} confidence), below the target {recall}")
    record.update(rotation=used_rotation, level=used_level, emphasis=used_emphasis,
                  kept_dims=int(code.symbols.shape[0]),
                  unit_norm=code.unit_norm,
                  recall_at_k=measured, recall_queries=None if held is None else len(held.queries),
                  recall_lower_bound=None if held is None or measured is None else held.bound(measured),
                  recall_confidence=RECALL_CONFIDENCE,
                  recall_measured_on="given queries" if queries is not None else "held-out rows")
    return record, code, None
