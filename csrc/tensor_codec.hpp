// Whole tensors in, chunks out (and back), for a batch of tensors at once so the
// thread pool sees every chunk of the batch: small tensors then run beside big
// ones instead of one after another.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "chunk_codec.hpp"
#include "delta.hpp"
#include "frequency_table.hpp"

namespace tensorzip {

struct TensorLayout {
  int width = 1;              // bytes per element
  int rotate = 0;             // bits, see byte_planes.hpp
  size_t chunk_elements = 1;  // elements per chunk (the last chunk may be shorter)
  bool context = false;       // plane 1 may be coded given plane 0 (mode 3; issue 22's max level)
};

struct EncodeJob {
  const uint8_t* data = nullptr;
  size_t length = 0;  // bytes; a multiple of layout.width
  TensorLayout layout;
};

struct EncodedChunk {
  std::vector<uint8_t> bytes;
  uint32_t crc32c = 0;
  std::vector<ByteHistogram> histograms;  // per plane, of this chunk's elements
};

struct StoredChunk {
  uint64_t offset = 0;  // into DecodeJob::source
  uint64_t length = 0;
  uint32_t crc32c = 0;
};

struct DecodeJob {
  const uint8_t* source = nullptr;
  size_t source_length = 0;
  std::vector<StoredChunk> chunks;
  uint8_t* out = nullptr;
  size_t out_length = 0;  // bytes; a multiple of layout.width
  TensorLayout layout;
  // Optional: the chunks hold a residual against this base (out_length bytes); each chunk
  // is restored (delta.hpp) right after it decodes, while it is still in cache, instead of
  // in a second pass over the whole tensor.
  const uint8_t* base = nullptr;
  DeltaMode delta_mode = DeltaMode::kXor;
  bool delta_float = false;
};

// A chunk failed to decode; names the job and chunk so Python can say which
// tensor and file offset.
class ChunkError : public std::runtime_error {
 public:
  ChunkError(const std::string& what, size_t job, size_t chunk)
      : std::runtime_error(what), job(job), chunk(chunk) {}
  size_t job;
  size_t chunk;
};

// Largest chunk the format allows. Small enough that even a constant chunk
// (4 MiB stored in 7 bytes, 6e5x) stays under the reader's default expansion
// limit of 2^20, so every file the writer makes reads back with default limits.
constexpr size_t kMaxChunkBytes = size_t{1} << 22;

size_t chunk_count(size_t elements, size_t chunk_elements);

void validate_layout(const TensorLayout& layout);

// Buffers that outlive one encode call: chunk outputs and per-worker scratch keep
// their capacity, so a long stream of batches stops touching fresh memory (first
// touches cost page faults that serialize threads).
struct EncodeArena {
  std::vector<EncodedChunk> chunks;    // slot i = the batch's i-th chunk, tensors in order
  std::vector<size_t> first_chunk;     // per job, its first slot
  std::vector<ChunkScratch> scratch;   // per worker
};

// Encodes every chunk of every job; afterwards the chunks of jobs[j] are
// arena.chunks[arena.first_chunk[j] ...], in order.
void encode_tensors(const std::vector<EncodeJob>& jobs, int threads, EncodeArena& arena);

// Verifies each chunk's CRC-32C (when verify_checksums) before decoding it into
// the job's output. Throws ChunkError on any corrupt or inconsistent input.
void decode_tensors(const std::vector<DecodeJob>& jobs, int threads, bool verify_checksums);

}  // namespace tensorzip
