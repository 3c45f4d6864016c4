"""Transform coding of an embedding collection: what is stored, and how it decodes.

A collection of N vectors of dimension d is stored as

    x ~ mean + B @ (offset + step * q)

where ``B`` (d x d') holds the kept directions (principal components, or plain
axes when there is no rotation), ``offset`` and ``step`` are per kept dimension,
and ``q`` are small integers, one row per kept dimension so that each dimension
gets its own entropy table. Choosing d' < d is truncation in the chosen basis (the
post-hoc version of Matryoshka), and equal ``step`` for every kept component of
variance above a level D, dropping the rest, is reverse water-filling: the
rate-distortion optimum for Gaussian components.

The integers are stored zigzag-coded (so small values of either sign are small
symbols) in 8 or 16 bits, through tensorzip's byte-plane coder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import TensorzipError
from ..quantization import SymbolRangeError, dequantize, quantize_columns, to_symbols
from .packed_symbols import PackedSymbols

DECODE_BLOCK_ROWS = 8192  # vectors decoded at a time: bounds memory in search


@dataclass(frozen=True)
class Basis:
    """Where the collection is quantized: mean, and the directions, strongest first."""

    mean: np.ndarray  # (d,) float32
    directions: np.ndarray | None  # (d, d) float32 orthonormal columns; None: the original axes
    variances: np.ndarray  # (d,) float64, variance of the collection along each direction

    @property
    def rotated(self) -> bool:
        """Principal directions (True) or the original axes."""
        return self.directions is not None


def fit_basis(vectors: np.ndarray, rotate: bool, sample_rows: int = 20000, seed: int = 0) -> Basis:
    """PCA (on a sample of rows) when ``rotate``, else the original axes in variance order."""
    x = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= sample_rows else x[np.sort(rng.choice(len(x), sample_rows, replace=False))]
    mean = sample.mean(axis=0, dtype=np.float64)
    centered = sample.astype(np.float64) - mean
    if not rotate:
        return Basis(mean.astype(np.float32), None, centered.var(axis=0))
    covariance = centered.T @ centered / max(1, len(sample) - 1)
    variances, directions = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    directions = directions[:, order]
    # Fix each direction's sign (largest component positive) so fits are reproducible.
    signs = np.sign(directions[np.argmax(np.abs(directions), axis=0), np.arange(directions.shape[1])])
    directions = directions * np.where(signs == 0, 1.0, signs)
    return Basis(mean.astype(np.float32), directions.astype(np.float32), np.maximum(variances[order], 0.0))


@dataclass(frozen=True)
class EmbeddingCode:
    """A quantized collection, exactly as stored."""

    mean: np.ndarray  # (d,) float32
    directions: np.ndarray | None  # (d, d') float16 (stored and used at this precision), or None
    dims: np.ndarray  # (d',) int32: the kept original axes when directions is None
    offset: np.ndarray  # (d',) float32
    step: np.ndarray  # (d',) float32
    # (d', N) uint8 or uint16, zigzag-coded integers; an opened collection's rows bit-packed
    symbols: np.ndarray | PackedSymbols
    # The collection's vectors all have norm 1: decoded vectors are scaled back to it,
    # which removes the quantization error along each vector's length (it raised recall@10
    # at equal bytes in a probe on MiniLM embeddings).
    unit_norm: bool = False

    @property
    def count(self) -> int:
        """Vectors coded."""
        return self.symbols.shape[1]

    @property
    def dim(self) -> int:
        """Dimensions of a decoded vector."""
        return self.mean.shape[0]

    def coordinates(self, start: int, stop: int) -> np.ndarray:
        """Dequantized coordinates of vectors [start, stop) in the kept basis: (rows, d')."""
        return dequantize(self.symbols[:, start:stop].T, self.step, shift=self.offset).astype(np.float32, copy=False)

    def decode(self, start: int = 0, stop: int | None = None, *, unit_norm: bool = True) -> np.ndarray:
        """Vectors [start, stop) as float32 (rows, d); ``unit_norm=False``: before a unit-norm
        collection's vectors are scaled back to norm 1."""
        stop = self.count if stop is None else stop
        y = self.coordinates(start, stop)
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        out[...] = self.mean
        if self.directions is not None:
            out += y @ self.directions.astype(np.float32).T
        else:
            out[:, self.dims] += y
        if self.unit_norm and unit_norm:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def blocks(self, rows: int = DECODE_BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(start, decoded block) over the collection, ``rows`` vectors at a time."""
        for start in range(0, self.count, rows):
            yield start, self.decode(start, min(self.count, start + rows))


_TOO_FINE = "quantized embedding values exceed 16 bits; use a larger step (lower target)"


def _symbols(q: np.ndarray) -> np.ndarray:
    """Signed integers as zigzag symbols, 8 bits when they fit, 16 at most."""
    try:
        return to_symbols(q, max_bits=16)
    except SymbolRangeError:
        raise TensorzipError(_TOO_FINE) from None


@dataclass(frozen=True)
class Projection:
    """The collection's coordinates on every direction of a basis, strongest first, as the
    decoder will see them (directions at their stored float16 precision). Computed once;
    each candidate code keeps a prefix of the columns."""

    basis: Basis
    directions: np.ndarray | None  # (d, d) float16, or None for the original axes
    axes: np.ndarray  # (d,) int32: original axis of each column (no rotation), strongest first
    coordinates: np.ndarray  # (N, d) float32
    unit_norm: bool  # every vector has norm 1 (to within 1e-3)

    def kept(self, count: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(stored directions, kept axes, coordinates) of the ``count`` strongest columns."""
        if self.directions is not None:
            return self.directions[:, :count], np.arange(count, dtype=np.int32), self.coordinates[:, :count]
        return None, self.axes[:count], self.coordinates[:, :count]


def project(vectors: np.ndarray, basis: Basis) -> Projection:
    """The collection's coordinates in ``basis``, computed once for every code the solver tries."""
    vectors = np.asarray(vectors, dtype=np.float32)
    unit_norm = bool(np.all(np.abs(np.linalg.norm(vectors, axis=1) - 1.0) < 1e-3))
    x = vectors - basis.mean
    if basis.directions is not None:
        stored = basis.directions.astype(np.float16)
        axes = np.arange(x.shape[1], dtype=np.int32)
        return Projection(basis, stored, axes, x @ stored.astype(np.float32), unit_norm)
    axes = np.argsort(-basis.variances, kind="stable").astype(np.int32)
    return Projection(basis, None, axes, np.ascontiguousarray(x[:, axes]), unit_norm)


def uniform_code(projection: Projection, level: float, emphasis: float = 0.0) -> EmbeddingCode:
    """Reverse water-filling: component i is quantized with a uniform step giving it
    distortion D_i = level * (variance_i / top variance) ** -emphasis, and dropped when
    its variance is below D_i.

    ``emphasis = 0`` is the MSE optimum (equal distortion everywhere). Search error is
    not MSE: the error of a score q.x is the quantization error seen through the
    query, and queries are strong along the same components as the collection, so
    strong components deserve less distortion. Measured on MiniLM embeddings, 0.5-1
    e = 0.75 needs 6-15% fewer bytes than 0 at recall@10 0.92-0.99
    (benchmarks/RESULTS.md, embeddings section).
    """
    variances = projection.basis.variances[projection.axes]  # in column order, strongest first
    top = float(variances.max()) if variances.size and variances.max() > 0 else 1.0
    with np.errstate(divide="ignore"):
        relative = np.where(variances > 0, variances / top, np.inf)
        distortion = level * relative ** -emphasis
    kept = max(1, int(np.count_nonzero(variances > distortion)))
    directions, axes, _ = projection.kept(kept)
    step = np.sqrt(12.0 * np.maximum(distortion[:kept], 1e-30)).astype(np.float32)
    try:
        # (kept, count): a column's codes contiguous; read from the whole matrix, not a copy of y
        symbols = quantize_columns(projection.coordinates, step, max_bits=16)
    except SymbolRangeError:
        raise TensorzipError(_TOO_FINE) from None
    return EmbeddingCode(projection.basis.mean, directions, axes, np.zeros(kept, np.float32), step, symbols,
                         projection.unit_norm)


def fixed_levels_code(projection: Projection, levels: int) -> EmbeddingCode:
    """``levels`` evenly spaced values per dimension between its minimum and maximum
    (int8: 256, 4-bit: 16); for 2 levels, the sign, reconstructed to each side's mean."""
    basis = projection.basis
    directions, axes, y = projection.kept(basis.mean.shape[0])
    if levels == 2:
        positive = y > 0
        high = np.where(positive.any(0), (y * positive).sum(0) / np.maximum(positive.sum(0), 1), 0.0)
        low = np.where((~positive).any(0), (y * ~positive).sum(0) / np.maximum((~positive).sum(0), 1), 0.0)
        q = positive.astype(np.int64)
        offset, step = low.astype(np.float32), (high - low).astype(np.float32)
    else:
        low, high = y.min(axis=0), y.max(axis=0)
        step = np.where(high > low, (high - low) / (levels - 1), 1.0).astype(np.float32)
        offset = low.astype(np.float32)
        q = np.clip(np.rint((y - offset) / step), 0, levels - 1)
    # Centred on zero, so that zigzag symbols stay below ``levels`` (8 bits for int8).
    middle = levels // 2
    return EmbeddingCode(basis.mean, directions, axes, (offset + middle * step).astype(np.float32), step,
                         _symbols((q - middle).T), projection.unit_norm)
