#include "symbol_scores.hpp"

#include <algorithm>
#include <cstring>

#include "cpu_features.hpp"
#include "parallel.hpp"

namespace tensorzip {
namespace {

// Vectors per task: the task's score rows (queries x this many floats) stay in L1/L2.
constexpr size_t kSlice = 2048;
// Dimensions added per pass over the scores: one load and store of a score per this many products.
constexpr size_t kDimsPerPass = 8;

template <typename Symbol>
inline float unzigzag(Symbol s) {
  const int32_t v = static_cast<int32_t>(s);
  return static_cast<float>((v >> 1) ^ -(v & 1));
}

// Vectors [begin, end) of rows `count` long, into out rows `width` long from column `first`.
// The order of additions is fixed (groups of kDimsPerPass, left to right) and no multiply-add
// is fused, so every instruction-set path gives the same floats.
template <typename Symbol>
__attribute__((always_inline)) inline void score_slice(const Symbol* symbols, size_t dims, size_t count,
                                                       const float* weights, size_t queries, float* out,
                                                       size_t width, size_t first, size_t begin, size_t end) {
  const size_t n = end - begin;
  for (size_t q = 0; q < queries; ++q) std::memset(out + q * width + first, 0, n * sizeof(float));
  size_t j = 0;
  for (; j + kDimsPerPass <= dims; j += kDimsPerPass) {
    const Symbol* r0 = symbols + j * count + begin;
    const Symbol* r1 = r0 + count;
    const Symbol* r2 = r1 + count;
    const Symbol* r3 = r2 + count;
    const Symbol* r4 = r3 + count;
    const Symbol* r5 = r4 + count;
    const Symbol* r6 = r5 + count;
    const Symbol* r7 = r6 + count;
    for (size_t q = 0; q < queries; ++q) {
      const float* w = weights + q * dims + j;
      const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
      float* acc = out + q * width + first;
      for (size_t i = 0; i < n; ++i) {
        const float a = w0 * unzigzag(r0[i]) + w1 * unzigzag(r1[i]);
        const float b = w2 * unzigzag(r2[i]) + w3 * unzigzag(r3[i]);
        const float c = w4 * unzigzag(r4[i]) + w5 * unzigzag(r5[i]);
        const float d = w6 * unzigzag(r6[i]) + w7 * unzigzag(r7[i]);
        acc[i] += (a + b) + (c + d);
      }
    }
  }
  for (; j < dims; ++j) {
    const Symbol* row = symbols + j * count + begin;
    for (size_t q = 0; q < queries; ++q) {
      const float w = weights[q * dims + j];
      float* acc = out + q * width + first;
      for (size_t i = 0; i < n; ++i) acc[i] += w * unzigzag(row[i]);
    }
  }
}

using SliceKernel = void (*)(const uint8_t*, int, size_t, size_t, const float*, size_t, float*, size_t, size_t,
                             size_t, size_t);

template <typename Symbol>
void portable_slice(const uint8_t* symbols, int, size_t dims, size_t count, const float* weights, size_t queries,
                    float* out, size_t width, size_t first, size_t begin, size_t end) {
  score_slice(reinterpret_cast<const Symbol*>(symbols), dims, count, weights, queries, out, width, first, begin,
              end);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// -ffp-contract=off semantics hold: the target has no FMA, so products and sums stay apart.
template <typename Symbol>
__attribute__((target("avx2"))) void avx2_slice(const uint8_t* symbols, int, size_t dims, size_t count,
                                                const float* weights, size_t queries, float* out, size_t width,
                                                size_t first, size_t begin, size_t end) {
  score_slice(reinterpret_cast<const Symbol*>(symbols), dims, count, weights, queries, out, width, first, begin,
              end);
}
#endif

bool use_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return cpu_features().avx2 && simd_cap() >= SimdCap::kAvx2;
#else
  return false;
#endif
}

SliceKernel choose(int symbol_bytes) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (use_avx2()) return symbol_bytes == 1 ? &avx2_slice<uint8_t> : &avx2_slice<uint16_t>;
#endif
  return symbol_bytes == 1 ? &portable_slice<uint8_t> : &portable_slice<uint16_t>;
}

}  // namespace

void unzigzag_to_float(const uint8_t* symbols, int symbol_bytes, size_t count, float* out) {
  if (symbol_bytes == 1) {
    for (size_t i = 0; i < count; ++i) out[i] = unzigzag(symbols[i]);
  } else {
    const auto* wide = reinterpret_cast<const uint16_t*>(symbols);
    for (size_t i = 0; i < count; ++i) out[i] = unzigzag(wide[i]);
  }
}

const char* symbol_scores_path() { return use_avx2() ? "avx2" : "portable"; }

void symbol_scores(const uint8_t* symbols, int symbol_bytes, size_t dims, size_t count, size_t start, size_t stop,
                   const float* weights, size_t queries, float* out, int threads) {
  const SliceKernel kernel = choose(symbol_bytes);
  const size_t width = stop - start;
  const size_t slices = (width + kSlice - 1) / kSlice;
  parallel_for(slices, threads, [&](size_t s, size_t) {
    const size_t first = s * kSlice;
    const size_t begin = start + first, end = std::min(stop, begin + kSlice);
    kernel(symbols, symbol_bytes, dims, count, weights, queries, out, width, first, begin, end);
  });
}

}  // namespace tensorzip
