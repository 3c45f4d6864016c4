// Scores of queries against vectors that are stored as quantized coordinates, without
// decoding the vectors (the embeddings search path; see src/tensorzip/embeddings/).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorzip {

// symbols: `dims` rows of `count` zigzag-coded integers (row j = coordinate j of every
// vector; uint8 or uint16 per `symbol_bytes`). weights: `queries` rows of `dims` floats.
// out: `queries` rows of (stop - start) floats, the vectors [start, stop):
// out[q][i - start] = sum_j weights[q][j] * unzigzag(symbols[j][i]).
// Vectors are split among `threads` (0: all cores); each keeps its slice of `out` in cache
// while the dimensions stream past.
void symbol_scores(const uint8_t* symbols, int symbol_bytes, size_t dims, size_t count, size_t start, size_t stop,
                   const float* weights, size_t queries, float* out, int threads);

// out[i] = unzigzag(symbols[i]) as float32 (exact for 8- and 16-bit codes), `count` values;
// for scoring many queries at once through a matrix product.
void unzigzag_to_float(const uint8_t* symbols, int symbol_bytes, size_t count, float* out);

// The path symbol_scores takes under the current cap (csrc/cpu_features.hpp): "avx2" or "portable".
const char* symbol_scores_path();

// The resident form of an open collection: each row of symbols bit-packed at its own width
// (0 to 16 bits, the fewest that hold the row's largest symbol), values in little-endian bit
// order from byte row_starts[j]. Why: a row's width follows its dimension's spread, so an open
// collection holds about 1.3-1.7x its stored bytes instead of 3x as whole bytes.
// The buffer has kPackedPadding readable bytes after the end of the last row.
constexpr size_t kPackedPadding = 16;

// Bytes of a row of `count` values of `width` bits.
inline size_t packed_row_bytes(size_t count, int width) { return (count * static_cast<size_t>(width) + 7) / 8; }

// Packs rows of `count` symbols (uint8 or uint16 per `symbol_bytes`) at widths[j] bits into
// out (zeroed by the caller). Throws InvalidArgumentError for a symbol wider than its row.
void pack_rows(const uint8_t* symbols, int symbol_bytes, size_t dims, size_t count, const uint8_t* widths,
               const uint64_t* row_starts, uint8_t* out);

// The symbols of vectors [start, stop) of every row: out holds dims rows of (stop - start)
// values of `symbol_bytes` (1 or 2) bytes.
void unpack_rows(const uint8_t* packed, const uint8_t* widths, const uint64_t* row_starts, size_t dims,
                 size_t count, size_t start, size_t stop, int symbol_bytes, uint8_t* out, int threads);

// symbol_scores over packed rows: the same floats, in the same order of additions, as
// symbol_scores over the unpacked symbols (each slice of vectors is unpacked into a
// per-thread buffer and scored by the same kernel).
void packed_symbol_scores(const uint8_t* packed, const uint8_t* widths, const uint64_t* row_starts, size_t dims,
                          size_t count, size_t start, size_t stop, const float* weights, size_t queries, float* out,
                          int threads);

}  // namespace tensorzip
