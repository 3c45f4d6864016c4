// Interleaved rANS over byte symbols with a static model.
//
// 32 independent 32-bit states take symbols round-robin (symbol i uses state
// i % 32). The decoder runs them as four AVX2 vectors of eight lanes when the CPU
// has AVX2 (one gather per vector reads the packed slot table), and as a
// branch-free scalar loop otherwise (AVX-512: two vectors of sixteen lanes); all
// consume the stream identically. The path is chosen in cpu_features.hpp.
// States live in [2^15, 2^31) and renormalize 16 bits at a time; staying below
// 2^31 makes the encoder's reciprocal division exact and lets AVX2 compare
// states as signed integers.
//
// Stream layout (little-endian): 32 x u32 final encoder states, then u16 words in
// the order the decoder consumes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frequency_table.hpp"
#include "scratch_buffer.hpp"

namespace tensorzip {

constexpr int kRansLanes = 32;
constexpr size_t kRansStateBytes = 4 * kRansLanes;

// Encodes symbols[0..count) under table and appends the stream to out. Returns
// false (out then holds an unspecified tail) as soon as the stream would exceed
// max_payload bytes, so a caller can store the plane raw without coding the rest.
// `words` is scratch space, reused across calls to avoid a large allocation each.
bool rans_encode(const uint8_t* symbols, size_t count, const FrequencyTable& table, size_t max_payload,
                 std::vector<uint8_t>& out, ScratchBuffer<uint16_t>& words);

// Decodes a stream in pieces, so a chunk's planes can be decoded and merged a
// cache-sized block at a time.
class RansDecoder {
 public:
  // slot_table must hold kProbScale words and outlive the decoder.
  RansDecoder(const uint8_t* payload, size_t length, const FrequencyTable& table, uint32_t* slot_table);

  // Decodes the next count symbols. Every call but the last must decode a
  // multiple of kRansLanes symbols (so lanes stay aligned to stream positions).
  void decode(uint8_t* symbols, size_t count);

  // Throws CorruptStreamError unless the whole payload was consumed and every
  // state is back at the encoder's initial value.
  void finish() const;

  // Decodes count symbols from each of two streams in one interleaved loop: one
  // stream's rounds are a chain of dependent gathers and multiplies, so two
  // streams keep twice as many in flight (measured: 0.65 -> ~0.4 ns/symbol).
  friend void decode_pair(RansDecoder& a, uint8_t* out_a, RansDecoder& b, uint8_t* out_b, size_t count);

 private:
  uint32_t state_[kRansLanes];
  const uint8_t* in_;
  const uint8_t* end_;
  const uint32_t* slots_;
  bool misaligned_ = false;
};

}  // namespace tensorzip
