// Interleaved rANS where each symbol is coded under one of several static tables,
// chosen by a context byte the decoder already knows (issue 22's `max` level: the
// top mantissa bits coded under a table picked by the exponent).
//
// The stream layout is the order-0 coder's (rans.hpp): 32 lanes, symbol i in lane
// i % 32, 32 final states then u16 renormalization words; only the table each
// symbol is looked up in changes. The decoder runs two AVX-512 or four AVX2 vectors
// (the context's table computed from the context byte with a few vector
// instructions, then one gather for its slot), a scalar loop otherwise; all
// consume the stream identically. The encoder runs the order-0 coder's AVX2 rounds
// on table-and-symbol indices, or a scalar loop; both write the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frequency_table.hpp"
#include "scratch_buffer.hpp"

namespace tensorzip {

// The context tables' probabilities have 10 bits, not the order-0 coder's 12: a
// chunk has up to a dozen tables, and at 1,024 slot words (4 KiB) each they stay in
// L1 together. Measured on MiniLM BF16: the coarser tables cost under 0.01% of the
// file, decoding is faster by a fifth.
constexpr uint32_t kContextBits = 10;
constexpr uint32_t kContextScale = 1u << kContextBits;

// Which table a context byte selects: contexts first .. first + own - 1 have
// tables 1 .. own of their own, every other context shares table 0. A range rather
// than any set: the decoder computes the table from the context with a few vector
// instructions instead of a gather, and a chunk's common exponents are contiguous.
struct ContextRange {
  uint32_t first = 0;
  uint32_t own = 0;  // first + own <= 256

  uint32_t table(uint8_t context) const {
    const uint32_t d = static_cast<uint32_t>(context) - first + 1;  // wraps below first
    return d <= own ? d : 0;
  }
};

// Encodes symbols[i] under tables[range.table(contexts[i])] (frequencies summing
// to kContextScale) for i < count and appends the stream to out
// (tables.size() == range.own + 1). Returns false (out
// then holds an unspecified tail) once the stream would exceed max_payload bytes.
// Every symbol must be present in its table.
bool context_rans_encode(const uint8_t* symbols, const uint8_t* contexts, size_t count,
                         const std::vector<FrequencyTable>& tables, ContextRange range, size_t max_payload,
                         std::vector<uint8_t>& out, ScratchBuffer<uint16_t>& words);

// Writes the decoder's kContextScale slot words of one table (frequencies summing to kContextScale).
void fill_context_slots(const FrequencyTable& table, uint32_t* slots);

class ContextRansDecoder {
 public:
  // slot_tables: range.own + 1 tables of kContextScale slot words each, filled by
  // fill_context_slots; they must outlive the decoder.
  ContextRansDecoder(const uint8_t* payload, size_t length, ContextRange range, const uint32_t* slot_tables);

  // Decodes the next count symbols, contexts[i] choosing symbol i's table. Every
  // call but the last must decode a multiple of 32 symbols.
  void decode(const uint8_t* contexts, uint8_t* symbols, size_t count);

  // Throws CorruptStreamError unless the whole payload was consumed and every
  // state is back at the encoder's initial value.
  void finish() const;

  // Decodes count symbols from each of two streams in one interleaved loop (two
  // chunks' planes): twice as many gathers in flight as one stream alone.
  friend void decode_pair(ContextRansDecoder& a, const uint8_t* contexts_a, uint8_t* out_a, ContextRansDecoder& b,
                          const uint8_t* contexts_b, uint8_t* out_b, size_t count);

 private:
  uint32_t state_[32];
  ContextRange range_;
  const uint8_t* in_;
  const uint8_t* end_;
  const uint32_t* slots_;
  bool misaligned_ = false;
};

}  // namespace tensorzip
