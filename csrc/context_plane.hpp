// Plane mode 3, "rANS given plane 0" (issue 22's `max` level): plane 1 of a chunk
// coded given plane 0 of the same element. For BF16 and FP32 (rotated) plane 0 is
// the exponent and plane 1 the top mantissa bits; the top k bits of the mantissa
// follow the exponent (measured in benchmarks/CONTEXT_BOUNDS.md), the rest are
// near uniform. So the top k bits are rANS-coded under a table chosen by plane 0's
// byte and the other 8 - k bits are stored as they are, bit-packed.
//
// Body (little-endian; docs/format.md is the authority):
//   u8   k, the top bits coded (1..8)
//   u8   first, u8 n: contexts first .. first + n - 1 have a table of their own
//        (first + n <= 256; n may be 0)
//   n+1  frequency tables over symbols [0, 2^k) (frequency_table.hpp): first the
//        shared one (every other context), then one per own context in order
//   u32  length of the stream that follows
//        context rANS stream (context_rans.hpp) of plane[i] >> (8 - k), table of plane0[i]
//        the low 8 - k bits: per group of 8 elements (the last may be shorter),
//        ceil(elements x (8 - k) / 8) bytes read as a little-endian integer, element j's
//        bits at bit j x (8 - k)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "context_rans.hpp"
#include "frequency_table.hpp"
#include "scratch_buffer.hpp"

namespace tensorzip {

struct ContextPlaneScratch {
  ScratchBuffer<uint32_t> counts;  // 256 contexts x 64 six-bit prefixes
  ScratchBuffer<uint8_t> symbols;  // the top bits, one byte per element
  ScratchBuffer<uint16_t> words;   // the rANS encoder's output before it is framed
  std::vector<uint8_t> body;
};

// Codes the plane's mode-3 body into scratch.body and returns true when it is
// smaller than `budget` bytes (the best other mode's body). `per_context`: the
// contexts' byte counts (plane 0's histogram, which the chunk encoder has already).
bool encode_context_plane(const uint8_t* contexts, const ByteHistogram& per_context, const uint8_t* plane,
                          size_t count, size_t budget, ContextPlaneScratch& scratch);

class ContextPlaneDecoder {
 public:
  // Parses and checks the body of a plane of `count` elements; `slots` is grown to
  // hold its tables' slot words.
  ContextPlaneDecoder(const uint8_t* body, size_t length, size_t count, ScratchBuffer<uint32_t>& slots);

  // Writes the plane's bytes [start, start + n) to out, contexts[i] being plane 0
  // of element start + i. Calls go in order; start is a multiple of 32.
  void decode(const uint8_t* contexts, size_t start, size_t n, uint8_t* out);

  void finish() const { stream_->finish(); }

  // decode() of two planes at once (blocks of two chunks, n elements each).
  friend void decode_pair(ContextPlaneDecoder& a, const uint8_t* contexts_a, uint8_t* out_a,
                          ContextPlaneDecoder& b, const uint8_t* contexts_b, uint8_t* out_b, size_t start, size_t n);

 private:
  void merge_low_bits(size_t start, size_t n, uint8_t* out) const;

  int low_bits_ = 0;
  const uint8_t* low_ = nullptr;
  size_t low_length_ = 0;
  ContextRange range_;
  std::optional<ContextRansDecoder> stream_;  // built once the tables are read
};

}  // namespace tensorzip
