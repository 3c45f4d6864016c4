#include "grid_code.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu_features.hpp"
#include "errors.hpp"
#include "parallel.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace tensorzip {
namespace {

constexpr int64_t kMaxInteger = int64_t{1} << 30;

inline uint32_t zigzag(int64_t value) {
  return static_cast<uint32_t>((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
}

inline int64_t unzigzag(uint32_t code) { return static_cast<int64_t>(code >> 1) ^ -static_cast<int64_t>(code & 1); }

// A double rounded once, to nearest with ties to even, to a binary format of E exponent and M
// mantissa bits (bfloat16: 8, 7; float16: 5, 10): its bits, by integer arithmetic on the
// double's bits (no floating-point mode can change it). Beyond the range: infinity; below
// half the smallest subnormal: zero.
template <int E, int M>
uint16_t narrow_bits(double v) {
  constexpr int bias = (1 << (E - 1)) - 1, emin = 1 - bias;
  constexpr uint64_t infinity = ((uint64_t{1} << E) - 1) << M;
  constexpr int kShift = 52 - M;
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 48) & 0x8000);
  const int field64 = static_cast<int>((u >> 52) & 0x7FF);
  const uint64_t fraction = u & ((uint64_t{1} << 52) - 1);
  const int exponent = field64 - 1023;
  if (__builtin_expect(exponent >= emin && field64 != 0x7FF, 1)) {  // a normal value: the common case
    uint64_t t = fraction >> kShift;
    const uint64_t rest = fraction & ((uint64_t{1} << kShift) - 1), half = uint64_t{1} << (kShift - 1);
    t += (rest > half) | ((rest == half) & t);  // to nearest, ties to even
    t += static_cast<uint64_t>(exponent - emin + 1) << M;  // the exponent field; a carry adds to it
    return static_cast<uint16_t>(sign | (t >= infinity ? infinity : t));
  }
  if (field64 == 0x7FF) return static_cast<uint16_t>(sign | infinity | (fraction ? uint64_t{1} << (M - 1) : 0));
  if (field64 == 0) return sign;  // zero or a float64 subnormal: far below any narrow value
  const int shift = kShift + (emin - exponent);  // subnormal: the implicit bit becomes a fraction bit
  if (shift > 63) return sign;
  const uint64_t bits = fraction | (uint64_t{1} << 52);
  uint64_t t = bits >> shift;
  const uint64_t rest = bits & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
  t += (rest > half) | ((rest == half) & t);
  return static_cast<uint16_t>(sign | t);
}

// The value of those bits, exactly, as a double.
template <int E, int M>
double widen_bits(uint16_t bits) {
  constexpr int bias = (1 << (E - 1)) - 1;
  const int field = (bits >> M) & ((1 << E) - 1);
  const uint64_t fraction = bits & ((1u << M) - 1);
  uint64_t u = static_cast<uint64_t>(bits & 0x8000) << 48;
  if (field == (1 << E) - 1) {
    u |= (uint64_t{0x7FF} << 52) | (fraction << (52 - M));
  } else if (field != 0) {
    u |= (static_cast<uint64_t>(field - bias + 1023) << 52) | (fraction << (52 - M));
  } else {
    static const double kSubnormal = std::ldexp(1.0, 1 - bias - M);
    const double a = static_cast<double>(fraction) * kSubnormal;  // exact: a power of two
    return (bits & 0x8000) ? -a : a;
  }
  double v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// How a decoded value (q * step, in double) becomes the tensor's element: Out is what is
// stored, value() what it is worth (for the encoder's error check).
struct ToFloat32 {
  using Out = float;
  static Out store(double v) { return static_cast<float>(v); }
  static double value(Out o) { return o; }
};
struct ToFloat64 {
  using Out = double;
  static Out store(double v) { return v; }
  static double value(Out o) { return o; }
};
template <int E, int M>
struct ToNarrow {
  using Out = uint16_t;
  static Out store(double v) { return narrow_bits<E, M>(v); }
  static double value(Out o) { return widen_bits<E, M>(o); }
};
using ToBFloat16 = ToNarrow<8, 7>;
using ToFloat16 = ToNarrow<5, 10>;

// The offsets of a chunk: offsets[column] for each element, the column running from the
// chunk's first element's (the tensor's flat index modulo the period) and wrapping.
struct Columns {
  const int32_t* offsets;
  size_t period;  // 0: no offsets
  size_t column;
  int64_t next() {
    if (!period) return 0;
    const int64_t value = offsets[column];
    if (++column == period) column = 0;
    return value;
  }
};

template <typename T, typename To>
GridEncodeResult encode_chunk(const T* x, size_t count, double step, size_t stride, Columns columns, uint32_t* codes,
                              std::vector<int64_t>& previous) {
  GridEncodeResult result{0.0, 0, true};
  if (stride) std::fill(previous.begin(), previous.end(), 0);
  for (size_t i = 0; i < count; ++i) {
    const int64_t offset = columns.next();
    const double value = static_cast<double>(x[i]);
    if (!std::isfinite(value)) {
      result.finite = false;
      codes[i] = 0;
      continue;
    }
    double scaled = std::nearbyint(value / step);
    int64_t q;
    if (!(scaled < static_cast<double>(kMaxInteger) && scaled > -static_cast<double>(kMaxInteger))) {
      result.max_error = std::numeric_limits<double>::infinity();
      q = 0;
    } else {
      q = static_cast<int64_t>(scaled);
      const double decoded = To::value(To::store(static_cast<double>(q) * step));
      result.max_error = std::max(result.max_error, std::fabs(decoded - value));
      q -= offset;
      if (!(q < kMaxInteger && q > -kMaxInteger)) {  // the stored integer must stay in range too
        result.max_error = std::numeric_limits<double>::infinity();
        q = 0;
      }
    }
    int64_t residual = q;
    if (stride) {
      const size_t lane = i % stride;
      if (i >= stride) residual = q - previous[lane];
      previous[lane] = q;
    }
    const uint32_t code = zigzag(residual);
    codes[i] = code;
    result.max_code = std::max<uint64_t>(result.max_code, code);
  }
  return result;
}

template <typename S, typename To>
void decode_chunk(const S* codes, size_t count, double step, size_t stride, Columns columns, typename To::Out* out,
                  std::vector<int64_t>& previous) {
  if (!stride && !columns.period) {
    for (size_t i = 0; i < count; ++i)
      out[i] = To::store(static_cast<double>(unzigzag(static_cast<uint32_t>(codes[i]))) * step);
    return;
  }
  if (!stride) {
    for (size_t i = 0; i < count; ++i)
      out[i] = To::store(static_cast<double>(unzigzag(static_cast<uint32_t>(codes[i])) + columns.next()) * step);
    return;
  }
  std::fill(previous.begin(), previous.end(), 0);
  size_t lane = 0;
  for (size_t i = 0; i < count; ++i) {
    const int64_t q = unzigzag(static_cast<uint32_t>(codes[i])) + previous[lane];
    previous[lane] = q;
    out[i] = To::store(static_cast<double>(q + columns.next()) * step);
    if (++lane == stride) lane = 0;
  }
}

void check_layout(size_t stride, size_t chunk_elements, double step, const int32_t* offsets, size_t period) {
  if (chunk_elements == 0) throw InvalidArgumentError("grid code: chunk_elements must be at least 1");
  if (period && !offsets) throw InvalidArgumentError("grid code: offsets missing for a period");
  for (size_t c = 0; c < period; ++c)
    if (!(offsets[c] < kMaxInteger && offsets[c] > -kMaxInteger))
      throw InvalidArgumentError("grid code: offsets must lie within +-2^30");
  if (stride && chunk_elements % stride) throw InvalidArgumentError("grid code: chunk_elements must be a multiple of stride");
  if (!(step > 0.0) || !std::isfinite(step)) throw InvalidArgumentError("grid code: step must be positive and finite");
}

}  // namespace

GridEncodeResult grid_encode(const void* x, bool is_double, size_t count, double step, size_t stride,
                             size_t chunk_elements, const int32_t* offsets, size_t period, GridType decoded,
                             uint32_t* codes, int threads) {
  check_layout(stride, chunk_elements, step, offsets, period);
  if (is_double != (decoded == GridType::kFloat64))
    throw InvalidArgumentError("grid_encode: float64 values decode to float64; float32 values to float32, "
                               "bfloat16 or float16 (the narrow types widened)");
  const size_t chunks = (count + chunk_elements - 1) / chunk_elements;
  std::vector<GridEncodeResult> results(chunks);
  const size_t workers = worker_count(chunks, threads);
  std::vector<std::vector<int64_t>> previous(workers, std::vector<int64_t>(stride));
  parallel_for(chunks, threads, [&](size_t c, size_t worker) {
    const size_t start = c * chunk_elements, n = std::min(chunk_elements, count - start);
    const Columns columns{offsets, period, period ? start % period : 0};
    const float* floats = static_cast<const float*>(x) + start;
    switch (decoded) {
      case GridType::kFloat64:
        results[c] = encode_chunk<double, ToFloat64>(static_cast<const double*>(x) + start, n, step, stride, columns,
                                                     codes + start, previous[worker]);
        break;
      case GridType::kFloat32:
        results[c] = encode_chunk<float, ToFloat32>(floats, n, step, stride, columns, codes + start, previous[worker]);
        break;
      case GridType::kBFloat16:
        results[c] = encode_chunk<float, ToBFloat16>(floats, n, step, stride, columns, codes + start, previous[worker]);
        break;
      case GridType::kFloat16:
        results[c] = encode_chunk<float, ToFloat16>(floats, n, step, stride, columns, codes + start, previous[worker]);
        break;
    }
  });
  GridEncodeResult total{0.0, 0, true};
  for (const GridEncodeResult& r : results) {
    total.max_error = std::max(total.max_error, r.max_error);
    total.max_code = std::max(total.max_code, r.max_code);
    total.finite = total.finite && r.finite;
  }
  return total;
}

void grid_decode(const uint8_t* codes, int symbol_bytes, size_t count, double step, size_t stride,
                 size_t chunk_elements, const int32_t* offsets, size_t period, void* out, GridType out_type,
                 int threads) {
  check_layout(stride, chunk_elements, step, offsets, period);
  if (symbol_bytes != 1 && symbol_bytes != 2 && symbol_bytes != 4)
    throw InvalidArgumentError("grid_decode: symbols are 1, 2 or 4 bytes");
  const size_t chunks = (count + chunk_elements - 1) / chunk_elements;
  const size_t workers = worker_count(chunks, threads);
  std::vector<std::vector<int64_t>> previous(workers, std::vector<int64_t>(stride));
  parallel_for(chunks, threads, [&](size_t c, size_t worker) {
    const size_t start = c * chunk_elements, n = std::min(chunk_elements, count - start);
    const Columns columns{offsets, period, period ? start % period : 0};
    auto run = [&](auto to) {
      using To = decltype(to);
      typename To::Out* typed_out = static_cast<typename To::Out*>(out) + start;
      if (symbol_bytes == 1)
        decode_chunk<uint8_t, To>(codes + start, n, step, stride, columns, typed_out, previous[worker]);
      else if (symbol_bytes == 2)
        decode_chunk<uint16_t, To>(reinterpret_cast<const uint16_t*>(codes) + start, n, step, stride, columns,
                                   typed_out, previous[worker]);
      else
        decode_chunk<uint32_t, To>(reinterpret_cast<const uint32_t*>(codes) + start, n, step, stride, columns,
                                   typed_out, previous[worker]);
    };
    switch (out_type) {
      case GridType::kFloat32: run(ToFloat32{}); break;
      case GridType::kFloat64: run(ToFloat64{}); break;
      case GridType::kBFloat16: run(ToBFloat16{}); break;
      case GridType::kFloat16: run(ToFloat16{}); break;
    }
  });
}

namespace {

constexpr size_t kColumnsTile = 64;  // rows per task: its columns' codes are written 64 at a time

// Rows [first, last) x columns [c0, columns): the portable path, and the AVX2 path's edges.
void grid_columns_scalar(const float* x, size_t rows, size_t columns, size_t row_stride, const float* steps,
                         uint32_t* codes_t, size_t first, size_t last, size_t c0, uint64_t& most, bool& ok) {
  constexpr float kLimit = static_cast<float>(kMaxInteger);
  for (size_t c = c0; c < columns; ++c) {
    const float step = steps[c];
    uint32_t* out = codes_t + c * rows;
    for (size_t r = first; r < last; ++r) {
      const float scaled = x[r * row_stride + c] / step;
      if (!(scaled < kLimit && scaled > -kLimit)) {  // NaN fails too
        ok = false;
        out[r] = 0;
        continue;
      }
      const uint32_t code = zigzag(static_cast<int64_t>(std::nearbyint(scaled)));
      out[r] = code;
      most = std::max<uint64_t>(most, code);
    }
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) inline void transpose8(__m256i* v) {
  const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  v[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  v[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  v[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  v[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  v[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  v[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  v[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  v[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// The same codes as grid_columns_scalar: IEEE division, rounding to nearest even (what
// nearbyint does in the default mode), out-of-range values coded 0 and reported.
__attribute__((target("avx2"))) void grid_columns_avx2(const float* x, size_t rows, size_t columns,
                                                       size_t row_stride, const float* steps, uint32_t* codes_t,
                                                       size_t first, size_t last, uint64_t& most, bool& ok) {
  const __m256 limit = _mm256_set1_ps(static_cast<float>(kMaxInteger));
  const __m256 negative_limit = _mm256_set1_ps(-static_cast<float>(kMaxInteger));
  __m256i largest = _mm256_setzero_si256();
  __m256i all_fine = _mm256_set1_epi32(-1);
  const size_t wide = columns / 8 * 8;
  size_t r0 = first;
  for (; r0 + 8 <= last; r0 += 8) {
    for (size_t c0 = 0; c0 < wide; c0 += 8) {
      const __m256 step = _mm256_loadu_ps(steps + c0);
      __m256i v[8];
      for (int k = 0; k < 8; ++k) {
        const __m256 scaled = _mm256_div_ps(_mm256_loadu_ps(x + (r0 + k) * row_stride + c0), step);
        const __m256i fine = _mm256_castps_si256(_mm256_and_ps(_mm256_cmp_ps(scaled, limit, _CMP_LT_OQ),
                                                               _mm256_cmp_ps(scaled, negative_limit, _CMP_GT_OQ)));
        all_fine = _mm256_and_si256(all_fine, fine);
        const __m256i n = _mm256_cvtps_epi32(_mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256i code = _mm256_and_si256(
            _mm256_xor_si256(_mm256_slli_epi32(n, 1), _mm256_srai_epi32(n, 31)), fine);
        largest = _mm256_max_epu32(largest, code);
        v[k] = code;
      }
      transpose8(v);
      for (int k = 0; k < 8; ++k)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes_t + (c0 + k) * rows + r0), v[k]);
    }
    grid_columns_scalar(x, rows, columns, row_stride, steps, codes_t, r0, r0 + 8, wide, most, ok);
  }
  grid_columns_scalar(x, rows, columns, row_stride, steps, codes_t, r0, last, 0, most, ok);
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), largest);
  for (uint32_t lane : lanes) most = std::max<uint64_t>(most, lane);
  if (_mm256_movemask_epi8(all_fine) != -1) ok = false;
}
#endif

}  // namespace

const char* grid_columns_path() { return avx2_path_allowed() ? "avx2" : "portable"; }

uint64_t grid_columns(const float* x, size_t rows, size_t columns, size_t row_stride, const float* steps,
                      uint32_t* codes_t, bool& in_range, int threads) {
  const size_t tiles = (rows + kColumnsTile - 1) / kColumnsTile;
  const size_t workers = worker_count(tiles, threads);
  std::vector<uint64_t> largest(workers, 0);
  std::vector<char> fine(workers, 1);
  const bool avx2 = avx2_path_allowed();
  parallel_for(tiles, threads, [&](size_t tile, size_t worker) {
    const size_t first = tile * kColumnsTile, last = std::min(rows, first + kColumnsTile);
    uint64_t most = largest[worker];
    bool ok = fine[worker] != 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (avx2) {
      grid_columns_avx2(x, rows, columns, row_stride, steps, codes_t, first, last, most, ok);
    } else {
      grid_columns_scalar(x, rows, columns, row_stride, steps, codes_t, first, last, 0, most, ok);
    }
#else
    (void)avx2;
    grid_columns_scalar(x, rows, columns, row_stride, steps, codes_t, first, last, 0, most, ok);
#endif
    largest[worker] = most;
    fine[worker] = ok ? 1 : 0;
  });
  in_range = std::all_of(fine.begin(), fine.end(), [](char f) { return f != 0; });
  return *std::max_element(largest.begin(), largest.end());
}

size_t grid_type_bytes(GridType type) {
  return type == GridType::kFloat64 ? 8 : type == GridType::kFloat32 ? 4 : 2;
}

GridType grid_type(int code) {
  if (code < 0 || code > 3) throw InvalidArgumentError("grid code: the value type is 0 (float32), 1 (float64), "
                                                       "2 (bfloat16) or 3 (float16)");
  return static_cast<GridType>(code);
}

}  // namespace tensorzip
