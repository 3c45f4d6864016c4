#include "crc32c.hpp"

#include <array>
#include <cstring>

#include "cpu_features.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <nmmintrin.h>
#define TZ_HAVE_X86 1
#if defined(__GNUC__) || defined(__clang__)
#include <immintrin.h>
#define TZ_HAVE_FOLD512 1
#endif
#endif

namespace tensorzip {

namespace {

constexpr uint32_t kPolynomial = 0x82F63B78u;  // reflected Castagnoli

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = make_table();

uint32_t crc32c_portable(const uint8_t* data, size_t length, uint32_t crc) {
  for (size_t i = 0; i < length; ++i) crc = kTable[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

// Shifting a CRC register past n zero bytes is linear over GF(2): a 32x32 bit
// matrix, applied through four 256-entry tables. It lets three independent
// CRC streams (the crc32 instruction has a 3-cycle latency but issues every
// cycle) be joined into the CRC of their concatenation.
uint32_t gf2_matrix_times(const uint32_t* matrix, uint32_t vector) {
  uint32_t sum = 0;
  for (; vector; vector >>= 1, ++matrix) {
    if (vector & 1) sum ^= *matrix;
  }
  return sum;
}

void gf2_matrix_square(uint32_t* square, const uint32_t* matrix) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_matrix_times(matrix, matrix[n]);
}

// The operator for `bytes` zero bytes; `bytes` must be a power of two.
std::array<uint32_t, 32> zero_bytes_operator(size_t bytes) {
  std::array<uint32_t, 32> even{};
  std::array<uint32_t, 32> odd{};
  odd[0] = kPolynomial;  // one zero bit
  for (int n = 1; n < 32; ++n) odd[n] = 1u << (n - 1);
  gf2_matrix_square(even.data(), odd.data());  // two zero bits
  gf2_matrix_square(odd.data(), even.data());  // four zero bits
  for (;;) {
    gf2_matrix_square(even.data(), odd.data());  // 1, 4, 16, ... bytes
    bytes >>= 1;
    if (bytes == 0) return even;
    gf2_matrix_square(odd.data(), even.data());  // 2, 8, 32, ... bytes
    bytes >>= 1;
    if (bytes == 0) return odd;
  }
}

struct ZeroShift {
  std::array<std::array<uint32_t, 256>, 4> table;
  explicit ZeroShift(size_t bytes) : table() {
    const std::array<uint32_t, 32> op = zero_bytes_operator(bytes);
    for (uint32_t n = 0; n < 256; ++n) {
      for (int k = 0; k < 4; ++k) table[k][n] = gf2_matrix_times(op.data(), n << (8 * k));
    }
  }
  uint32_t operator()(uint32_t crc) const {
    return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^
           table[3][crc >> 24];
  }
};

constexpr size_t kStripe = 8192;  // bytes per stream per round; a power of two

#ifdef TZ_HAVE_X86
__attribute__((target("sse4.2"))) uint32_t crc32c_hardware(const uint8_t* data, size_t length,
                                                            uint32_t crc) {
  static const ZeroShift shift(kStripe);  // immutable once built
  uint64_t c0 = crc;
  while (length >= 3 * kStripe) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    for (size_t i = 0; i < kStripe; i += 8) {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, data + i, 8);
      std::memcpy(&w1, data + kStripe + i, 8);
      std::memcpy(&w2, data + 2 * kStripe + i, 8);
      c0 = _mm_crc32_u64(c0, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    c0 = shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    data += 3 * kStripe;
    length -= 3 * kStripe;
  }
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    c0 = _mm_crc32_u64(c0, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c0);
  for (; i < length; ++i) c32 = _mm_crc32_u8(c32, data[i]);
  return c32;
}
#endif

#ifdef TZ_HAVE_FOLD512
// Folding with carry-less multiplies (the method of Intel's "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ", in the bit-reflected form the crc32 instruction
// uses). A 128-bit block B of the message, whose first 8 bytes are the polynomial H and
// last 8 are L (B = H x^64 + L), moved `bits` further along the message is congruent mod P
// to H (x^(bits+64) mod P) + L (x^bits mod P): two 64 x 32-bit carry-less products, which
// fit 128 bits, so every fold is exact and the last 128 bits, run through the crc32
// instruction from zero, give the register. Reflection puts coefficient x^j of a constant
// at bit 63 - j, and makes a product come out one bit low, hence the -1 in the exponents.
struct FoldConstants {
  uint64_t first;  // multiplies the block's first 8 bytes
  uint64_t last;   // multiplies its last 8
};

// x^n mod P, P = x^32 + 0x1EDC6F41 (the Castagnoli polynomial), bit j = coefficient of x^j.
constexpr uint64_t x_power_mod(unsigned n) {
  uint64_t r = 1;
  for (unsigned i = 0; i < n; ++i) {
    r <<= 1;
    if (r >> 32) r ^= 0x11EDC6F41ull;
  }
  return r;
}

constexpr uint64_t reflected_operand(uint64_t r) {
  uint64_t c = 0;
  for (int j = 0; j < 32; ++j) {
    if (r >> j & 1) c |= uint64_t{1} << (63 - j);
  }
  return c;
}

constexpr FoldConstants fold_by(unsigned bits) {
  return {reflected_operand(x_power_mod(bits + 63)), reflected_operand(x_power_mod(bits - 1))};
}

constexpr FoldConstants kFold2048 = fold_by(2048);  // four 512-bit accumulators, 256 bytes a round
constexpr FoldConstants kFold512 = fold_by(512);
constexpr FoldConstants kFold384 = fold_by(384);
constexpr FoldConstants kFold256 = fold_by(256);
constexpr FoldConstants kFold128 = fold_by(128);

#define TZ_FOLD512 __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))

TZ_FOLD512 inline __m512i broadcast(FoldConstants k) {
  return _mm512_set_epi64(static_cast<long long>(k.last), static_cast<long long>(k.first),
                          static_cast<long long>(k.last), static_cast<long long>(k.first),
                          static_cast<long long>(k.last), static_cast<long long>(k.first),
                          static_cast<long long>(k.last), static_cast<long long>(k.first));
}

// Each 128-bit lane of x moved onto the same lane of `next` (k: the distance), xor'd with it.
TZ_FOLD512 inline __m512i fold(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11),
                                   next, 0x96);
}

TZ_FOLD512 inline __m128i fold(__m128i x, FoldConstants k) {
  const __m128i kk = _mm_set_epi64x(static_cast<long long>(k.last), static_cast<long long>(k.first));
  return _mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11));
}

TZ_FOLD512 inline __m512i load512(const uint8_t* p) { return _mm512_loadu_si512(p); }

// Same register as crc32c_hardware; buffers under 256 bytes go there.
TZ_FOLD512 uint32_t crc32c_fold512(const uint8_t* data, size_t length, uint32_t crc) {
  if (length < 256) return crc32c_hardware(data, length, crc);
  // The register enters as the first four bytes xor'd with it.
  __m512i x0 = _mm512_xor_si512(load512(data), _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(crc))));
  __m512i x1 = load512(data + 64), x2 = load512(data + 128), x3 = load512(data + 192);
  const __m512i by2048 = broadcast(kFold2048);
  size_t i = 256;
  for (; i + 256 <= length; i += 256) {
    x0 = fold(x0, by2048, load512(data + i));
    x1 = fold(x1, by2048, load512(data + i + 64));
    x2 = fold(x2, by2048, load512(data + i + 128));
    x3 = fold(x3, by2048, load512(data + i + 192));
  }
  const __m512i by512 = broadcast(kFold512);
  __m512i x = fold(fold(fold(x0, by512, x1), by512, x2), by512, x3);
  for (; i + 64 <= length; i += 64) x = fold(x, by512, load512(data + i));
  __m128i v = _mm512_extracti32x4_epi32(x, 3);
  v = _mm_xor_si128(v, fold(_mm512_extracti32x4_epi32(x, 0), kFold384));
  v = _mm_xor_si128(v, fold(_mm512_extracti32x4_epi32(x, 1), kFold256));
  v = _mm_xor_si128(v, fold(_mm512_extracti32x4_epi32(x, 2), kFold128));
  uint64_t c = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(v)));
  c = _mm_crc32_u64(c, static_cast<uint64_t>(_mm_extract_epi64(v, 1)));
  return crc32c_hardware(data + i, length - i, static_cast<uint32_t>(c));
}
#endif

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t length, uint32_t previous) {
  const uint32_t crc = ~previous;
#ifdef TZ_HAVE_FOLD512
  if (crc32c_path() == Crc32cPath::kFold512) return ~crc32c_fold512(data, length, crc);
#endif
#ifdef TZ_HAVE_X86
  const Crc32cPath path = crc32c_path();
  if (path == Crc32cPath::kSse42 || path == Crc32cPath::kFold512) return ~crc32c_hardware(data, length, crc);
#endif
  return ~crc32c_portable(data, length, crc);
}

}  // namespace tensorzip
