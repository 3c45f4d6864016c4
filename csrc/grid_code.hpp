// Floats on a uniform grid, as the error-bounded codec stores them (tensorzip.bounded;
// src/tensorzip/codecs/bounded.py has the why). One pass per direction, chunks in parallel.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorzip {

// The type decoded values are rounded to (once, to nearest even, from q * step in double).
enum class GridType : int { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2, kFloat16 = 3 };
GridType grid_type(int code);  // checked
size_t grid_type_bytes(GridType type);

struct GridEncodeResult {
  double max_error;      // max |decoded - x| over every element, the decoded value rounded to the input type
  uint64_t max_code;     // the largest zigzag code written
  bool finite;           // false: some input was NaN or infinite (nothing else is meaningful then)
};

// q[i] = nearbyint(x[i] / step) (in double); with stride > 0, each q minus the q `stride`
// before it in its chunk (chunks of chunk_elements, a multiple of stride); zigzag-coded into
// codes[i] (uint32: the caller narrows). x is float32 (is_double false) or float64. The
// decoded value the decoder will produce, (double)q * step rounded to `decoded` (float64 for
// float64 x; float32, bfloat16 or float16 for float32 x: the narrow types come widened), is
// compared with x.
// With period > 0, offsets[i % period] (the element's column; |offset| < 2^30) is subtracted
// from each q before the prediction: a per-channel centre, so channels with different means
// share one entropy model.
// Integers (q, or q less its offset) beyond +-2^30 are clamped in the codes and make
// max_error infinite.
GridEncodeResult grid_encode(const void* x, bool is_double, size_t count, double step, size_t stride,
                             size_t chunk_elements, const int32_t* offsets, size_t period, GridType decoded,
                             uint32_t* codes, int threads);

// The inverse: codes of `symbol_bytes` (1, 2 or 4) to values of `out_type` (bfloat16 and
// float16 as their 16-bit patterns), the same offsets added back.
void grid_decode(const uint8_t* codes, int symbol_bytes, size_t count, double step, size_t stride,
                 size_t chunk_elements, const int32_t* offsets, size_t period, void* out, GridType out_type,
                 int threads);

// A row-major float32 matrix [rows, columns] (rows `row_stride` floats apart, at least
// `columns`: the first columns of a wider matrix) on a grid of one step per column, as the
// embedding codes quantize it: q = nearbyint(x[r, c] / steps[c]) in float32 arithmetic (what
// NumPy computes), zigzag-coded into codes_t[c * rows + r] (transposed: a column's codes
// contiguous). Returns the largest code; `in_range` false when some scaled value is not
// finite or reaches +-2^30 (the codes are then meaningless, and 0 where that happened).
// AVX2 path: blocks of 8 rows x 8 columns, transposed in registers; the same codes.
uint64_t grid_columns(const float* x, size_t rows, size_t columns, size_t row_stride, const float* steps,
                      uint32_t* codes_t, bool& in_range, int threads);

// The path grid_columns takes under the current cap (csrc/cpu_features.hpp): "avx2" or "portable".
const char* grid_columns_path();

}  // namespace tensorzip
