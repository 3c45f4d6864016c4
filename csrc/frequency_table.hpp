// The static order-0 model of one symbol stream: byte counts quantized to a
// power-of-two total, and its compact serialized form.
//
// The model is kept apart from the coder (rans.hpp) so that other models (context
// models, per-row tables) can feed the same coder later.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tensorzip {

// 12 bits: measured on all-MiniLM-L6-v2, quantizing to 4096 costs under 0.05% of
// the coded planes' size (14 bits: under 0.005%), and it lets the decoder pack
// symbol, frequency and slot offset into one 32-bit word per slot: a 16 KiB table
// that stays in L1 and that one AVX2 gather reads for eight states at once.
constexpr uint32_t kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;

using ByteHistogram = std::array<uint64_t, 256>;

// Counts of each byte value; four interleaved sub-histograms avoid the
// store-to-load stalls of runs of equal bytes.
ByteHistogram histogram(const uint8_t* data, size_t length);

struct FrequencyTable {
  std::array<uint32_t, 256> frequency{};   // 0 for absent symbols; sums to kProbScale
  std::array<uint32_t, 256> cumulative{};  // start of each symbol's slot range

  // Quantizes counts (at least two distinct symbols present) so that every
  // present symbol keeps a non-zero frequency and the coding cost is minimal
  // among nearby quantizations (greedy by the marginal cost of each unit). The
  // frequencies sum to 2^scale_bits (the context coder's tables use 10 bits).
  static FrequencyTable from_histogram(const ByteHistogram& counts, uint32_t scale_bits = kProbBits);

  // Compact form: either a symbol list (few symbols) or a 256-bit presence
  // bitmap, each followed by LEB128 frequencies; the shorter one is written.
  void serialize(std::vector<uint8_t>& out) const;

  // Reads the compact form from [data, data + length); returns the bytes used.
  // Throws CorruptStreamError unless the table is well formed and sums to
  // 2^scale_bits with at least two symbols.
  static FrequencyTable parse(const uint8_t* data, size_t length, size_t* used, uint32_t scale_bits = kProbBits);

  // Ideal coded size in bits of a stream with these counts under this table.
  double cost_bits(const ByteHistogram& counts) const;
};

// Order-0 empirical entropy (bits) of a stream with these counts.
double entropy_bits(const ByteHistogram& counts);

}  // namespace tensorzip
