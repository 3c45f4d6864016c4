#include "crc32c.hpp"

#include <array>
#include <cstring>

#include "cpu_features.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <nmmintrin.h>
#define TZ_HAVE_X86 1
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

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t length, uint32_t previous) {
  const uint32_t crc = ~previous;
#ifdef TZ_HAVE_X86
  if (crc32c_path() == Crc32cPath::kSse42) return ~crc32c_hardware(data, length, crc);
#endif
  return ~crc32c_portable(data, length, crc);
}

}  // namespace tensorzip
