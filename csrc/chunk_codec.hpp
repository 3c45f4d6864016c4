// One chunk = a run of whole elements of one tensor, split into byte planes, each
// plane coded on its own (rANS under its own order-0 table, a constant, or raw).
//
// Chunk layout (little-endian):
//   u8  plane_count                      (= element width)
//   plane_count x { u8 mode, u32 body_length }
//   the bodies, in plane order, with no gaps
// Modes: 0 raw (body = the plane's bytes), 1 constant (body = the one byte value),
//        2 rANS (body = frequency table, then the rANS payload),
//        3 rANS given plane 0 (plane 1 only, when the layout allows it: context_plane.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "context_plane.hpp"
#include "frequency_table.hpp"
#include "scratch_buffer.hpp"

namespace tensorzip {

enum class PlaneMode : uint8_t { kRaw = 0, kConstant = 1, kRans = 2, kContext = 3 };

// Reusable per-thread buffers so coding a chunk allocates nothing in steady state.
struct ChunkScratch {
  ScratchBuffer<uint8_t> planes;
  ScratchBuffer<uint32_t> slot_tables;  // one rANS decoder table per coded plane
  ScratchBuffer<uint16_t> words;        // the rANS encoder's output before it is framed
  ContextPlaneScratch context;          // mode 3's encoder
  ScratchBuffer<uint32_t> context_slots[2];  // mode 3's decoder tables, per chunk of a pair
};

// The bytes a scratch holds (what keeping it between calls costs).
inline size_t scratch_bytes(const ChunkScratch& s) {
  return s.planes.capacity_bytes() + s.slot_tables.capacity_bytes() + s.words.capacity_bytes() +
         s.context.counts.capacity_bytes() + s.context.symbols.capacity_bytes() + s.context.words.capacity_bytes() +
         s.context.body.capacity() + s.context_slots[0].capacity_bytes() + s.context_slots[1].capacity_bytes();
}

// Also adds each plane's byte counts to histograms[k] (width entries), so the
// caller gets the order-0 bound of what it coded without another pass. With
// `context`, plane 1 is also tried in mode 3 and coded so where that is smaller.
void encode_chunk(const uint8_t* elements, size_t count, int width, int rotate, bool context,
                  ChunkScratch& scratch, std::vector<uint8_t>& out, ByteHistogram* histograms);

// `context`: whether mode 3 is allowed (the tensor's codec config says so).
void decode_chunk(const uint8_t* chunk, size_t length, size_t count, int width, int rotate, bool context,
                  ChunkScratch& scratch, uint8_t* elements);

struct ChunkToDecode {
  const uint8_t* bytes;
  size_t length;
  size_t count;  // elements
  int width;
  int rotate;
  bool context;       // mode 3 allowed
  uint8_t* elements;  // out: count x width bytes
};

// Decodes one or two chunks together: their rANS streams are decoded in pairs
// (see decode_pair in rans.hpp), which is faster than one after the other.
void decode_chunks(const ChunkToDecode* chunks, int chunk_count, ChunkScratch& scratch);

// Per-plane histograms of elements under a layout: width x 256 counts.
std::vector<ByteHistogram> plane_histograms(const uint8_t* elements, size_t count, int width, int rotate,
                                            ChunkScratch& scratch);

}  // namespace tensorzip
