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

}  // namespace tensorzip
