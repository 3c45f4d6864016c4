#include "symbol_scores.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <cstring>
#include <string>
#include <vector>

#include "errors.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

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

SliceKernel choose(int symbol_bytes) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (avx2_path_allowed()) return symbol_bytes == 1 ? &avx2_slice<uint8_t> : &avx2_slice<uint16_t>;
#endif
  return symbol_bytes == 1 ? &portable_slice<uint8_t> : &portable_slice<uint16_t>;
}

// Vectors per task on the packed path: the slice's unpacked symbols (dims x this many
// uint16) stay in L2 while the kernel reads them.
constexpr size_t kPackedSlice = 512;

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // little-endian hosts only (as the rest of the format)
  return v;
}

// Values [first, first + n) of a row of `width`-bit values, any first (reads up to 8 bytes
// past a value's last byte: the padding).
template <typename Out>
void unpack_any(const uint8_t* row, int width, size_t first, size_t n, Out* out) {
  if (width == 0) {
    std::fill(out, out + n, Out{0});
    return;
  }
  const uint64_t mask = (uint64_t{1} << width) - 1;
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = (first + i) * static_cast<size_t>(width);
    out[i] = static_cast<Out>((load64(row + bit / 8) >> (bit % 8)) & mask);
  }
}

// Values [first, first + n) with first a multiple of 8: eight values are exactly W bytes, so
// each group is two loads and eight constant shifts. Writes up to 7 values past n.
template <int W>
void unpack_groups(const uint8_t* row, size_t first, size_t n, uint16_t* out) {
  constexpr uint64_t kMask = (uint64_t{1} << W) - 1;
  const uint8_t* p = row + first / 8 * W;
  for (size_t i = 0; i < n; i += 8, p += W) {
    if constexpr (W <= 8) {
      const uint64_t x = load64(p);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) out[i + k] = static_cast<uint16_t>((x >> (k * W)) & kMask);
    } else {  // values 4-7 start 4W bits in: byte W/2, and 4 more bits when W is odd
      const uint64_t lo = load64(p), hi = load64(p + W / 2) >> ((W % 2) * 4);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        out[i + k] = static_cast<uint16_t>((lo >> (k * W)) & kMask);
        out[i + 4 + k] = static_cast<uint16_t>((hi >> (k * W)) & kMask);
      }
    }
  }
}

using GroupUnpacker = void (*)(const uint8_t*, size_t, size_t, uint16_t*);

template <int... W>
constexpr std::array<GroupUnpacker, sizeof...(W)> group_unpackers(std::integer_sequence<int, W...>) {
  return {&unpack_groups<W + 1>...};
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same values with AVX2: the group's 16 bytes to both halves, one byte shuffle puts the
// (at most 3) bytes of value k in 32-bit lane k, a variable shift and a mask finish it.
__attribute__((target("avx2"))) void unpack_groups_avx2(const uint8_t* row, int width, size_t first, size_t n,
                                                        uint16_t* out) {
  alignas(32) uint8_t control[32];
  alignas(32) uint32_t shifts[8];
  for (int k = 0; k < 8; ++k) {
    const int bit = k * width, byte = bit / 8, last = (bit + width - 1) / 8;
    for (int j = 0; j < 4; ++j)
      control[k * 4 + j] = byte + j <= last ? static_cast<uint8_t>(byte + j) : uint8_t{0x80};
    shifts[k] = static_cast<uint32_t>(bit % 8);
  }
  const __m256i shuffle = _mm256_load_si256(reinterpret_cast<const __m256i*>(control));
  const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(shifts));
  const __m256i mask = _mm256_set1_epi32((1 << width) - 1);
  const uint8_t* p = row + first / 8 * static_cast<size_t>(width);
  for (size_t i = 0; i < n; i += 8, p += width) {
    const __m256i group = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i values = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(group, shuffle), shift), mask);
    const __m256i narrow = _mm256_permute4x64_epi64(_mm256_packus_epi32(values, values), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(narrow));
  }
}
#endif

// Row j's values [first, first + n) as uint16 into out (room for n rounded up to 8).
void unpack_slice(const uint8_t* row, int width, size_t first, size_t n, uint16_t* out) {
  static constexpr auto kUnpackers = group_unpackers(std::make_integer_sequence<int, 16>{});
  if (width == 0) {
    std::memset(out, 0, n * sizeof(uint16_t));
  } else if (first % 8 != 0) {
    unpack_any(row, width, first, n, out);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  } else if (avx2_path_allowed()) {
    unpack_groups_avx2(row, width, first, n, out);
#endif
  } else {
    kUnpackers[static_cast<size_t>(width - 1)](row, first, n, out);
  }
}

}  // namespace

void pack_rows(const uint8_t* symbols, int symbol_bytes, size_t dims, size_t count, const uint8_t* widths,
               const uint64_t* row_starts, uint8_t* out) {
  for (size_t j = 0; j < dims; ++j) {
    const int width = widths[j];
    uint8_t* row = out + row_starts[j];
    for (size_t i = 0; i < count; ++i) {
      const size_t at = j * count + i;
      const uint32_t v = symbol_bytes == 1 ? symbols[at] : reinterpret_cast<const uint16_t*>(symbols)[at];
      if (width < 16 && (v >> width) != 0)
        throw InvalidArgumentError("pack_rows: symbol " + std::to_string(v) + " of row " + std::to_string(j) +
                                   " does not fit its width of " + std::to_string(width) + " bits");
      if (width == 0) continue;
      const size_t bit = i * static_cast<size_t>(width);
      uint64_t word = load64(row + bit / 8);
      word |= static_cast<uint64_t>(v) << (bit % 8);
      std::memcpy(row + bit / 8, &word, sizeof word);
    }
  }
}

void unpack_rows(const uint8_t* packed, const uint8_t* widths, const uint64_t* row_starts, size_t dims,
                 size_t count, size_t start, size_t stop, int symbol_bytes, uint8_t* out, int threads) {
  (void)count;
  const size_t n = stop - start;
  const size_t workers = worker_count(dims, threads);
  std::vector<std::vector<uint16_t>> scratch(workers, std::vector<uint16_t>(n + 8));
  parallel_for(dims, threads, [&](size_t j, size_t worker) {
    uint16_t* values = scratch[worker].data();
    unpack_slice(packed + row_starts[j], widths[j], start, n, values);
    if (symbol_bytes == 2) {
      std::memcpy(out + j * n * 2, values, n * sizeof(uint16_t));
    } else {
      for (size_t i = 0; i < n; ++i) out[j * n + i] = static_cast<uint8_t>(values[i]);
    }
  });
}

void packed_symbol_scores(const uint8_t* packed, const uint8_t* widths, const uint64_t* row_starts, size_t dims,
                          size_t count, size_t start, size_t stop, const float* weights, size_t queries, float* out,
                          int threads) {
  (void)count;
  const SliceKernel kernel = choose(2);
  const size_t width = stop - start;
  const size_t slices = (width + kPackedSlice - 1) / kPackedSlice;
  const size_t workers = worker_count(slices, threads);
  // Per worker: one slice of every row, unpacked (rows kPackedSlice apart, 8 values of slack).
  std::vector<std::vector<uint16_t>> scratch(workers, std::vector<uint16_t>(dims * kPackedSlice + 8));
  parallel_for(slices, threads, [&](size_t s, size_t worker) {
    const size_t first = s * kPackedSlice;
    const size_t begin = start + first, n = std::min(stop, begin + kPackedSlice) - begin;
    uint16_t* rows = scratch[worker].data();
    for (size_t j = 0; j < dims; ++j)
      unpack_slice(packed + row_starts[j], widths[j], begin, n, rows + j * kPackedSlice);
    kernel(reinterpret_cast<const uint8_t*>(rows), 2, dims, kPackedSlice, weights, queries, out, width, first, 0, n);
  });
}

void unzigzag_to_float(const uint8_t* symbols, int symbol_bytes, size_t count, float* out) {
  if (symbol_bytes == 1) {
    for (size_t i = 0; i < count; ++i) out[i] = unzigzag(symbols[i]);
  } else {
    const auto* wide = reinterpret_cast<const uint16_t*>(symbols);
    for (size_t i = 0; i < count; ++i) out[i] = unzigzag(wide[i]);
  }
}

const char* symbol_scores_path() { return avx2_path_allowed() ? "avx2" : "portable"; }

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
