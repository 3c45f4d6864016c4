"""The symbols of an open collection, each dimension's row bit-packed at its own width.

An opened lossy collection is searched from its quantized integers (``transform_search``),
so they stay in memory while it is open. As whole bytes (uint8 or uint16 per value) they
took 3.1-3.3x the collection's stored size on MiniLM; a dimension's symbols need only as
many bits as its largest one, and the kept dimensions of a PCA basis span 2 to 12 bits, so
packed rows take 1.3-1.7x (issue 20: at most 2x the stored size). Search unpacks a slice of
a few hundred vectors at a time into a per-thread buffer (native, ``packed_symbol_scores``),
giving the same scores as the unpacked symbols, float for float.

Only what ``EmbeddingCode`` reads of its symbols is offered: the shape, the dtype they unpack
to, a block of vectors (``symbols[:, start:stop]``), and the whole array (``np.asarray``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _native

PADDING = 16  # readable bytes after the last row (csrc/symbol_scores.hpp: kPackedPadding)


class PackedSymbols:
    """(dims, count) zigzag symbols, row j packed at ``widths[j]`` bits."""

    def __init__(self, symbols: np.ndarray) -> None:
        if symbols.ndim != 2 or symbols.dtype not in (np.uint8, np.uint16):
            raise ValueError("symbols must be a (dims, count) uint8 or uint16 array")
        symbols = np.ascontiguousarray(symbols)
        self.dtype = symbols.dtype
        self.shape: tuple[int, int] = (int(symbols.shape[0]), int(symbols.shape[1]))
        dims, count = self.shape
        largest = symbols.max(axis=1).astype(np.int64) if count else np.zeros(dims, np.int64)
        self.widths = np.array([int(v).bit_length() for v in largest], dtype=np.uint8)
        row_bytes = (count * self.widths.astype(np.uint64) + 7) // 8
        self.row_starts = np.concatenate([[0], np.cumsum(row_bytes)[:-1]]).astype(np.uint64)
        self.data = np.zeros(int(row_bytes.sum()) + PADDING, dtype=np.uint8)
        _native.pack_rows(symbols, symbols.itemsize, dims, count, self.widths, self.row_starts, self.data)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def itemsize(self) -> int:
        """Bytes of a symbol once unpacked."""
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes held: the packed rows and their layout."""
        return self.data.nbytes + self.widths.nbytes + self.row_starts.nbytes

    def rows(self, start: int, stop: int, threads: int = 0) -> np.ndarray:
        """The symbols of vectors [start, stop) of every row: (dims, stop - start)."""
        dims, count = self.shape
        out = np.empty((dims, stop - start), dtype=self.dtype)
        _native.unpack_rows(self.data, self.widths, self.row_starts, dims, count, start, stop, self.itemsize, out,
                            threads)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) and len(key) == 2 else (key, slice(None))
        start, stop, step = columns.indices(self.shape[1]) if isinstance(columns, slice) else (0, 0, 0)
        if step != 1:
            return np.asarray(self)[key]
        return self.rows(start, max(start, stop))[rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.rows(0, self.shape[1])
        return whole if dtype is None else whole.astype(dtype)

    def scores(self, start: int, stop: int, weights: np.ndarray, out: np.ndarray, threads: int) -> None:
        """``out[q, i - start] = sum_j weights[q, j] * unzigzag(symbols[j, i])`` (see
        ``_native.symbol_scores``)."""
        dims, count = self.shape
        _native.packed_symbol_scores(self.data, self.widths, self.row_starts, dims, count, start, stop, weights,
                                     len(weights), out, threads)
