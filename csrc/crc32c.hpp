// CRC-32C (Castagnoli), the checksum of every stored chunk and of the header.
// Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both give
// the same value. The path is chosen in cpu_features.hpp (TENSORZIP_SIMD=scalar
// forces the table).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorzip {

uint32_t crc32c(const uint8_t* data, size_t length, uint32_t previous = 0);

}  // namespace tensorzip
