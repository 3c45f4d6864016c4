#include "chunk_codec.hpp"

#include <cmath>
#include <optional>
#include <cstring>
#include <string>

#include "byte_planes.hpp"
#include "errors.hpp"
#include "rans.hpp"

namespace tensorzip {

namespace {

constexpr size_t kDirectoryEntry = 5;  // u8 mode + u32 body length

// A plane is rANS-coded only if that saves at least this fraction of it. Measured
// on all-MiniLM-L6-v2: the sign+mantissa plane of BF16 saves 0.25-0.5% when coded,
// which cost 35% of single-thread decode speed (1.06 vs 1.70 GB/s) for 0.18% of
// file size; exponent planes save 60-70% and are always coded.
constexpr double kMinPlaneGain = 0.005;

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Appends one plane's body to out and returns the mode chosen. The smallest of
// raw, constant and rANS wins; rANS is tried only when its ideal size (from the
// histogram, table included) is at least kMinPlaneGain below raw, so
// incompressible planes cost one histogram pass.
// `counts` receives the plane's byte counts (the caller reuses them).
PlaneMode encode_plane(const uint8_t* plane, size_t count, ChunkScratch& scratch, ByteHistogram& counts,
                       std::vector<uint8_t>& out) {
  counts = histogram(plane, count);
  int distinct = 0;
  int last = 0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s]) {
      ++distinct;
      last = s;
    }
  }
  if (distinct == 1) {
    out.push_back(static_cast<uint8_t>(last));
    return PlaneMode::kConstant;
  }
  const size_t start = out.size();
  // The entropy alone already tells most near-random planes to stay raw.
  const double raw_budget = static_cast<double>(count) * (1.0 - kMinPlaneGain);
  if (entropy_bits(counts) / 8.0 + kRansStateBytes < raw_budget) {
    const FrequencyTable table = FrequencyTable::from_histogram(counts);
    table.serialize(out);
    const size_t table_size = out.size() - start;
    const double estimate = std::ceil(table.cost_bits(counts) / 8.0) + table_size + kRansStateBytes;
    if (estimate < raw_budget && rans_encode(plane, count, table, count - table_size, out, scratch.words)) {
      return PlaneMode::kRans;
    }
    out.resize(start);
  }
  out.insert(out.end(), plane, plane + count);
  return PlaneMode::kRaw;
}

}  // namespace

void encode_chunk(const uint8_t* elements, size_t count, int width, int rotate, bool context,
                  ChunkScratch& scratch, std::vector<uint8_t>& out, ByteHistogram* histograms) {
  check_layout(width, rotate);
  require(count > 0, "a chunk holds at least one element");
  uint8_t* const plane_bytes = scratch.planes.reserve(count * width);
  uint8_t* planes[8];
  for (int k = 0; k < width; ++k) planes[k] = plane_bytes + k * count;
  split_planes(elements, count, width, rotate, planes);

  const size_t directory = 1 + kDirectoryEntry * static_cast<size_t>(width);
  out.clear();
  // Room for every plane stored raw plus a table each: no reallocation while coding.
  out.reserve(directory + count * width + 64 * width);
  out.resize(directory);
  out[0] = static_cast<uint8_t>(width);
  ByteHistogram plane0_counts{};  // the context plane's contexts
  for (int k = 0; k < width; ++k) {
    const size_t start = out.size();
    ByteHistogram counts;
    PlaneMode mode = encode_plane(planes[k], count, scratch, counts, out);
    for (int s = 0; s < 256; ++s) histograms[k][s] += counts[s];
    if (k == 0) plane0_counts = counts;
    if (context && k == 1 && mode != PlaneMode::kConstant &&
        encode_context_plane(planes[0], plane0_counts, planes[1], count, out.size() - start, scratch.context)) {
      out.resize(start);
      out.insert(out.end(), scratch.context.body.begin(), scratch.context.body.end());
      mode = PlaneMode::kContext;
    }
    uint8_t* entry = out.data() + 1 + kDirectoryEntry * k;
    entry[0] = static_cast<uint8_t>(mode);
    put_u32(entry + 1, static_cast<uint32_t>(out.size() - start));
  }
}

namespace {

// Planes are decoded and merged a block at a time so that the decoded symbols
// are still in L1 when the merge reads them.
constexpr size_t kBlock = 8192;
static_assert(kBlock % kRansLanes == 0, "blocks keep rANS lanes aligned");

// One chunk parsed and ready to decode block by block. `planes` (block x width
// bytes) and `slot_tables` (width x kProbScale words) are its scratch.
struct PreparedChunk {
  size_t count = 0;
  int width = 1;
  int rotate = 0;
  uint8_t* elements = nullptr;
  uint8_t* planes = nullptr;
  PlaneMode modes[8] = {};
  const uint8_t* bodies[8] = {};
  std::vector<RansDecoder> decoders;
  int decoder_of[8] = {};
  std::optional<ContextPlaneDecoder> context_plane;  // plane 1 in mode 3, if it is

  PreparedChunk(const uint8_t* chunk, size_t length, size_t count_, int width_, int rotate_, bool context,
                uint8_t* planes_, uint32_t* slot_tables, ScratchBuffer<uint32_t>& context_slots, uint8_t* elements_)
      : count(count_), width(width_), rotate(rotate_), elements(elements_), planes(planes_) {
    check_layout(width, rotate);
    const size_t directory = 1 + kDirectoryEntry * static_cast<size_t>(width);
    require_stream(length >= directory, "chunk is shorter than its plane directory");
    require_stream_or(chunk[0] == width, [&] { return "chunk has " + std::to_string(chunk[0]) + " planes, expected " +
                                          std::to_string(width); });
    const size_t block = std::min(count, kBlock);
    decoders.reserve(width);
    size_t offset = directory;
    for (int k = 0; k < width; ++k) {
      const uint8_t* entry = chunk + 1 + kDirectoryEntry * k;
      const uint8_t mode = entry[0];
      const size_t body_length = get_u32(entry + 1);
      require_stream_or(body_length <= length - offset, [&] { return "plane " + std::to_string(k) + " runs past the chunk end"; });
      const uint8_t* body = chunk + offset;
      modes[k] = static_cast<PlaneMode>(mode);
      bodies[k] = body;
      switch (modes[k]) {
        case PlaneMode::kRaw:
          require_stream_or(body_length == count, [&] { return "raw plane " + std::to_string(k) + " has the wrong length"; });
          break;
        case PlaneMode::kConstant:
          require_stream_or(body_length == 1, [&] { return "constant plane " + std::to_string(k) + " has the wrong length"; });
          std::memset(planes + k * block, body[0], block);
          break;
        case PlaneMode::kRans: {
          size_t table_size = 0;
          const FrequencyTable table = FrequencyTable::parse(body, body_length, &table_size);
          decoder_of[k] = static_cast<int>(decoders.size());
          decoders.emplace_back(body + table_size, body_length - table_size, table,
                                slot_tables + static_cast<size_t>(k) * kProbScale);
          break;
        }
        case PlaneMode::kContext:
          require_stream_or(k == 1 && context, [&] { return "plane " + std::to_string(k) + " is coded given plane 0, which " +
                                                (k == 1 ? "this tensor's codec config does not allow" : "only plane 1 may be"); });
          context_plane.emplace(body, body_length, count, context_slots);
          break;
        default:
          throw CorruptStreamError("plane " + std::to_string(k) + " has unknown mode " + std::to_string(mode));
      }
      offset += body_length;
    }
    require_stream(offset == length, "chunk has trailing bytes after its planes");
  }

  size_t block() const { return std::min(count, kBlock); }

  // Where plane k's symbols for the block at `start` come from (raw planes are
  // merged straight from the stored bytes).
  const uint8_t* plane_source(int k, size_t start) const {
    return modes[k] == PlaneMode::kRaw ? bodies[k] + start : planes + k * block();
  }

  void merge(size_t start, size_t n) const {
    const uint8_t* sources[8];
    for (int k = 0; k < width; ++k) sources[k] = plane_source(k, start);
    merge_planes(sources, n, width, rotate, elements + start * width);
  }

  // Plane 1 of the block at `start` from its context, plane 0 (decoded by then).
  void decode_context_plane(size_t start, size_t n) {
    if (context_plane) context_plane->decode(plane_source(0, start), start, n, planes + block());
  }

  void finish() const {
    for (const RansDecoder& d : decoders) d.finish();
    if (context_plane) context_plane->finish();
  }
};

struct PendingPlane {
  RansDecoder* decoder;
  uint8_t* out;
  size_t count;
};

// Decodes the rANS planes of one block of up to two chunks, two streams at a time.
void decode_block_planes(PreparedChunk* const* chunks, int chunk_count, size_t start) {
  PendingPlane pending[16];
  int n_pending = 0;
  for (int c = 0; c < chunk_count; ++c) {
    PreparedChunk& chunk = *chunks[c];
    if (start >= chunk.count) continue;
    const size_t n = std::min(chunk.block(), chunk.count - start);
    for (int k = 0; k < chunk.width; ++k) {
      if (chunk.modes[k] == PlaneMode::kRans) {
        pending[n_pending++] = {&chunk.decoders[chunk.decoder_of[k]], chunk.planes + k * chunk.block(), n};
      }
    }
  }
  int i = 0;
  for (; i + 1 < n_pending; i += 2) {
    const size_t shared = std::min(pending[i].count, pending[i + 1].count) / kRansLanes * kRansLanes;
    decode_pair(*pending[i].decoder, pending[i].out, *pending[i + 1].decoder, pending[i + 1].out, shared);
    pending[i].decoder->decode(pending[i].out + shared, pending[i].count - shared);
    pending[i + 1].decoder->decode(pending[i + 1].out + shared, pending[i + 1].count - shared);
  }
  if (i < n_pending) pending[i].decoder->decode(pending[i].out, pending[i].count);
}

}  // namespace

void decode_chunks(const ChunkToDecode* chunks, int chunk_count, ChunkScratch& scratch) {
  require(chunk_count >= 1 && chunk_count <= 2, "decode_chunks takes one or two chunks");
  size_t plane_bytes[2] = {0, 0};
  for (int c = 0; c < chunk_count; ++c) plane_bytes[c] = std::min(chunks[c].count, kBlock) * chunks[c].width;
  uint8_t* const planes = scratch.planes.reserve(plane_bytes[0] + plane_bytes[1]);
  size_t table_slots[2] = {0, 0};
  for (int c = 0; c < chunk_count; ++c) table_slots[c] = static_cast<size_t>(chunks[c].width) * kProbScale;
  uint32_t* const slot_tables = scratch.slot_tables.reserve(table_slots[0] + table_slots[1]);

  std::vector<PreparedChunk> prepared;
  prepared.reserve(chunk_count);
  for (int c = 0; c < chunk_count; ++c) {
    const ChunkToDecode& in = chunks[c];
    prepared.emplace_back(in.bytes, in.length, in.count, in.width, in.rotate, in.context,
                          planes + (c == 0 ? 0 : plane_bytes[0]), slot_tables + (c == 0 ? 0 : table_slots[0]),
                          scratch.context_slots[c], in.elements);
  }
  PreparedChunk* pointers[2] = {&prepared[0], chunk_count > 1 ? &prepared[1] : nullptr};
  const size_t longest = std::max(chunks[0].count, chunk_count > 1 ? chunks[1].count : 0);
  for (size_t start = 0; start < longest; start += kBlock) {
    decode_block_planes(pointers, chunk_count, start);
    const size_t n0 = start < prepared[0].count ? std::min(kBlock, prepared[0].count - start) : 0;
    const size_t n1 = chunk_count > 1 && start < prepared[1].count ? std::min(kBlock, prepared[1].count - start) : 0;
    if (n0 == n1 && prepared[0].context_plane && chunk_count > 1 && prepared[1].context_plane) {
      decode_pair(*prepared[0].context_plane, prepared[0].plane_source(0, start), prepared[0].planes + prepared[0].block(),
                  *prepared[1].context_plane, prepared[1].plane_source(0, start), prepared[1].planes + prepared[1].block(),
                  start, n0);
    } else {
      if (n0) prepared[0].decode_context_plane(start, n0);
      if (n1) prepared[1].decode_context_plane(start, n1);
    }
    if (n0) prepared[0].merge(start, n0);
    if (n1) prepared[1].merge(start, n1);
  }
  for (const PreparedChunk& p : prepared) p.finish();
}

void decode_chunk(const uint8_t* chunk, size_t length, size_t count, int width, int rotate, bool context,
                  ChunkScratch& scratch, uint8_t* elements) {
  const ChunkToDecode one{chunk, length, count, width, rotate, context, elements};
  decode_chunks(&one, 1, scratch);
}

std::vector<ByteHistogram> plane_histograms(const uint8_t* elements, size_t count, int width, int rotate,
                                            ChunkScratch& scratch) {
  check_layout(width, rotate);
  std::vector<ByteHistogram> result(width, ByteHistogram{});
  constexpr size_t kBlock = size_t{1} << 18;
  uint8_t* const plane_bytes = scratch.planes.reserve(std::min(count, kBlock) * width);
  for (size_t start = 0; start < count; start += kBlock) {
    const size_t n = std::min(kBlock, count - start);
    uint8_t* planes[8];
    for (int k = 0; k < width; ++k) planes[k] = plane_bytes + k * n;
    split_planes(elements + start * width, n, width, rotate, planes);
    for (int k = 0; k < width; ++k) {
      const ByteHistogram h = histogram(planes[k], n);
      for (int s = 0; s < 256; ++s) result[k][s] += h[s];
    }
  }
  return result;
}

}  // namespace tensorzip
