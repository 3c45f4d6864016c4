#include "tensor_codec.hpp"

#include <string>
#include <utility>

#include "byte_planes.hpp"
#include "chunk_codec.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "fresh_memory.hpp"
#include "parallel.hpp"

namespace tensorzip {

size_t chunk_count(size_t elements, size_t chunk_elements) {
  return elements == 0 ? 0 : (elements - 1) / chunk_elements + 1;
}

void validate_layout(const TensorLayout& layout) {
  check_layout(layout.width, layout.rotate);
  require(layout.chunk_elements >= 1, "chunk_elements must be at least 1");
  require(!layout.context || layout.width >= 2, "context planes need elements of at least two bytes");
  require(layout.chunk_elements <= kMaxChunkBytes / static_cast<size_t>(layout.width),
          "chunk_elements x element width must be at most 4 MiB");
}

namespace {

// (job, chunk) pairs flattened so one pool covers the batch.
struct ChunkTask {
  size_t job;
  size_t chunk;
};

template <typename Job>
std::vector<ChunkTask> flatten(const std::vector<Job>& jobs, size_t (*elements_of)(const Job&)) {
  std::vector<ChunkTask> tasks;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const size_t n = chunk_count(elements_of(jobs[j]), jobs[j].layout.chunk_elements);
    for (size_t c = 0; c < n; ++c) tasks.push_back({j, c});
  }
  return tasks;
}

// The calling thread's encoder scratch (worker 0 of every call is the caller), kept from
// call to call. Why: one tz.compress of 1 MiB otherwise takes its planes and rANS words in
// fresh memory every call, which the allocator hands back to the OS at the end (580 page
// faults per call measured, 40% of the call on the benchmark VM). Threads other than the
// caller are made per call (parallel.hpp) and keep their scratch in the arena as before.
ChunkScratch& caller_scratch() {
  thread_local ChunkScratch scratch;
  return scratch;
}

// What a thread keeps between calls: the scratch of chunks up to 1M elements of 8 bytes;
// more (a codec configured with larger chunks) is given back after the call.
constexpr size_t kCallerScratchKeepBytes = size_t{16} << 20;

void keep_caller_scratch_bounded(ChunkScratch& scratch) {
  if (scratch_bytes(scratch) > kCallerScratchKeepBytes) scratch = ChunkScratch{};
}

size_t encode_elements(const EncodeJob& job) { return job.length / job.layout.width; }
size_t decode_elements(const DecodeJob& job) { return job.out_length / job.layout.width; }

}  // namespace

void encode_tensors(const std::vector<EncodeJob>& jobs, int threads, EncodeArena& arena) {
  arena.first_chunk.assign(jobs.size(), 0);
  size_t total = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    validate_layout(jobs[j].layout);
    require(jobs[j].length % jobs[j].layout.width == 0, "tensor byte length is not a multiple of its element width");
    arena.first_chunk[j] = total;
    total += chunk_count(encode_elements(jobs[j]), jobs[j].layout.chunk_elements);
  }
  if (arena.chunks.size() < total) arena.chunks.resize(total);
  const std::vector<ChunkTask> tasks = flatten<EncodeJob>(jobs, encode_elements);
  const size_t workers = worker_count(tasks.size(), threads);
  if (arena.scratch.size() < workers) arena.scratch.resize(workers);
  ChunkScratch& caller = caller_scratch();
  parallel_for(tasks.size(), threads, [&](size_t i, size_t worker) {
    const EncodeJob& job = jobs[tasks[i].job];
    const size_t total_elements = encode_elements(job);
    const size_t first = tasks[i].chunk * job.layout.chunk_elements;
    const size_t count = std::min(job.layout.chunk_elements, total_elements - first);
    EncodedChunk& chunk = arena.chunks[arena.first_chunk[tasks[i].job] + tasks[i].chunk];
    chunk.histograms.assign(job.layout.width, ByteHistogram{});
    encode_chunk(job.data + first * job.layout.width, count, job.layout.width, job.layout.rotate, job.layout.context,
                 worker == 0 ? caller : arena.scratch[worker], chunk.bytes, chunk.histograms.data());
    chunk.crc32c = crc32c(chunk.bytes.data(), chunk.bytes.size());
  });
  keep_caller_scratch_bounded(caller);
}

void decode_tensors(const std::vector<DecodeJob>& jobs, int threads, bool verify_checksums) {
  for (size_t j = 0; j < jobs.size(); ++j) {
    const DecodeJob& job = jobs[j];
    try {
      validate_layout(job.layout);
    } catch (const InvalidArgumentError& e) {
      throw ChunkError(e.what(), j, 0);
    }
    if (job.out_length % job.layout.width != 0) {
      throw ChunkError("output length is not a multiple of the element width", j, 0);
    }
    const size_t expected = chunk_count(decode_elements(job), job.layout.chunk_elements);
    if (job.chunks.size() != expected) {
      throw ChunkError("tensor has " + std::to_string(job.chunks.size()) + " chunks, its shape needs " +
                           std::to_string(expected),
                       j, 0);
    }
    for (size_t c = 0; c < job.chunks.size(); ++c) {
      const StoredChunk& s = job.chunks[c];
      if (s.offset > job.source_length || s.length > job.source_length - s.offset) {
        throw ChunkError("chunk lies outside the stored bytes", j, c);
      }
    }
  }
  for (const DecodeJob& job : jobs) {
    if (job.out_length >= kHugePageAdviceMinimum) advise_huge_pages(job.out, job.out_length);
  }
  // Chunks go to the workers two at a time: their rANS streams decode faster
  // interleaved. A pair that fails is decoded again chunk by chunk, so the error
  // names the chunk at fault.
  const std::vector<ChunkTask> tasks = flatten<DecodeJob>(jobs, decode_elements);
  const size_t pairs = (tasks.size() + 1) / 2;
  std::vector<ChunkScratch> scratch(worker_count(pairs, threads));
  auto prepare = [&](const ChunkTask& task) {
    const DecodeJob& job = jobs[task.job];
    const StoredChunk& stored = job.chunks[task.chunk];
    const size_t first = task.chunk * job.layout.chunk_elements;
    const size_t count = std::min(job.layout.chunk_elements, decode_elements(job) - first);
    const uint8_t* bytes = job.source + stored.offset;
    if (verify_checksums && crc32c(bytes, stored.length) != stored.crc32c) {
      throw ChunkError("checksum mismatch (CRC-32C)", task.job, task.chunk);
    }
    return ChunkToDecode{bytes, stored.length, count, job.layout.width, job.layout.rotate, job.layout.context,
                         job.out + first * job.layout.width};
  };
  // A residual chunk becomes the original while it is still in cache.
  auto restore = [&](const ChunkTask& task, const ChunkToDecode& chunk) {
    const DecodeJob& job = jobs[task.job];
    if (job.base == nullptr) return;
    const size_t offset = static_cast<size_t>(chunk.elements - job.out);
    delta_restore(chunk.elements, job.base + offset, chunk.count, job.layout.width, job.delta_mode, job.delta_float,
                  1);
  };
  auto decode_alone = [&](const ChunkTask& task, const ChunkToDecode& chunk, ChunkScratch& space) {
    try {
      decode_chunks(&chunk, 1, space);
    } catch (const CorruptStreamError& e) {
      throw ChunkError(e.what(), task.job, task.chunk);
    }
    restore(task, chunk);
  };
  parallel_for(pairs, threads, [&](size_t p, size_t worker) {
    const size_t first = 2 * p;
    const int count = first + 1 < tasks.size() ? 2 : 1;
    ChunkToDecode chunks[2];
    for (int c = 0; c < count; ++c) chunks[c] = prepare(tasks[first + c]);
    if (count == 1) {
      decode_alone(tasks[first], chunks[0], scratch[worker]);
      return;
    }
    try {
      decode_chunks(chunks, 2, scratch[worker]);
    } catch (const CorruptStreamError& e) {
      for (int c = 0; c < 2; ++c) decode_alone(tasks[first + c], chunks[c], scratch[worker]);
      // Each decodes alone, so the pair's failure is not in the data: report it as is.
      throw ChunkError(e.what(), tasks[first].job, tasks[first].chunk);
    }
    for (int c = 0; c < 2; ++c) restore(tasks[first + c], chunks[c]);
  });
}

}  // namespace tensorzip
