#include "crc32c.hpp"

#include <array>
#include <cstring>

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

#ifdef TZ_HAVE_X86
__attribute__((target("sse4.2"))) uint32_t crc32c_hardware(const uint8_t* data, size_t length,
                                                            uint32_t crc) {
  uint64_t c = crc;
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    c = _mm_crc32_u64(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; i < length; ++i) c32 = _mm_crc32_u8(c32, data[i]);
  return c32;
}

bool cpu_has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t length, uint32_t previous) {
  const uint32_t crc = ~previous;
#ifdef TZ_HAVE_X86
  if (cpu_has_sse42()) return ~crc32c_hardware(data, length, crc);
#endif
  return ~crc32c_portable(data, length, crc);
}

}  // namespace tensorzip
