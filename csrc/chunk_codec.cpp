#include "chunk_codec.hpp"

#include <cmath>
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
PlaneMode encode_plane(const uint8_t* plane, size_t count, ChunkScratch& scratch, ByteHistogram& total,
                       std::vector<uint8_t>& out) {
  const ByteHistogram counts = histogram(plane, count);
  for (int s = 0; s < 256; ++s) total[s] += counts[s];
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

void encode_chunk(const uint8_t* elements, size_t count, int width, int rotate, ChunkScratch& scratch,
                  std::vector<uint8_t>& out, ByteHistogram* histograms) {
  check_layout(width, rotate);
  require(count > 0, "a chunk holds at least one element");
  scratch.planes.resize(count * width);
  uint8_t* planes[8];
  for (int k = 0; k < width; ++k) planes[k] = scratch.planes.data() + k * count;
  split_planes(elements, count, width, rotate, planes);

  const size_t directory = 1 + kDirectoryEntry * static_cast<size_t>(width);
  out.clear();
  // Room for every plane stored raw plus a table each: no reallocation while coding.
  out.reserve(directory + count * width + 64 * width);
  out.resize(directory);
  out[0] = static_cast<uint8_t>(width);
  for (int k = 0; k < width; ++k) {
    const size_t start = out.size();
    const PlaneMode mode = encode_plane(planes[k], count, scratch, histograms[k], out);
    uint8_t* entry = out.data() + 1 + kDirectoryEntry * k;
    entry[0] = static_cast<uint8_t>(mode);
    put_u32(entry + 1, static_cast<uint32_t>(out.size() - start));
  }
}

void decode_chunk(const uint8_t* chunk, size_t length, size_t count, int width, int rotate,
                  ChunkScratch& scratch, uint8_t* elements) {
  check_layout(width, rotate);
  const size_t directory = 1 + kDirectoryEntry * static_cast<size_t>(width);
  require_stream(length >= directory, "chunk is shorter than its plane directory");
  require_stream(chunk[0] == width, "chunk has " + std::to_string(chunk[0]) + " planes, expected " +
                                        std::to_string(width));
  // Planes are decoded and merged a block at a time so that the decoded symbols
  // are still in L1 when the merge reads them.
  constexpr size_t kBlock = 8192;
  static_assert(kBlock % kRansLanes == 0, "blocks keep rANS lanes aligned");
  const size_t block = std::min(count, kBlock);
  scratch.planes.resize(block * width);
  scratch.slot_tables.resize(static_cast<size_t>(width) * kProbScale);

  PlaneMode modes[8];
  const uint8_t* bodies[8];
  std::vector<RansDecoder> decoders;
  decoders.reserve(width);
  int decoder_of[8];
  size_t offset = directory;
  for (int k = 0; k < width; ++k) {
    const uint8_t* entry = chunk + 1 + kDirectoryEntry * k;
    const uint8_t mode = entry[0];
    const size_t body_length = get_u32(entry + 1);
    require_stream(body_length <= length - offset, "plane " + std::to_string(k) + " runs past the chunk end");
    const uint8_t* body = chunk + offset;
    modes[k] = static_cast<PlaneMode>(mode);
    bodies[k] = body;
    switch (modes[k]) {
      case PlaneMode::kRaw:
        require_stream(body_length == count, "raw plane " + std::to_string(k) + " has the wrong length");
        break;
      case PlaneMode::kConstant:
        require_stream(body_length == 1, "constant plane " + std::to_string(k) + " has the wrong length");
        std::memset(scratch.planes.data() + k * block, body[0], block);
        break;
      case PlaneMode::kRans: {
        size_t table_size = 0;
        const FrequencyTable table = FrequencyTable::parse(body, body_length, &table_size);
        decoder_of[k] = static_cast<int>(decoders.size());
        decoders.emplace_back(body + table_size, body_length - table_size, table,
                              scratch.slot_tables.data() + static_cast<size_t>(k) * kProbScale);
        break;
      }
      default:
        throw CorruptStreamError("plane " + std::to_string(k) + " has unknown mode " + std::to_string(mode));
    }
    offset += body_length;
  }
  require_stream(offset == length, "chunk has trailing bytes after its planes");

  const uint8_t* planes[8];
  for (size_t start = 0; start < count; start += block) {
    const size_t n = std::min(block, count - start);
    for (int k = 0; k < width; ++k) {
      uint8_t* buffer = scratch.planes.data() + k * block;
      switch (modes[k]) {
        case PlaneMode::kRaw: planes[k] = bodies[k] + start; break;  // merge straight from the stored bytes
        case PlaneMode::kConstant: planes[k] = buffer; break;
        default:
          decoders[decoder_of[k]].decode(buffer, n);
          planes[k] = buffer;
      }
    }
    merge_planes(planes, n, width, rotate, elements + start * width);
  }
  for (const RansDecoder& d : decoders) d.finish();
}

std::vector<ByteHistogram> plane_histograms(const uint8_t* elements, size_t count, int width, int rotate,
                                            ChunkScratch& scratch) {
  check_layout(width, rotate);
  std::vector<ByteHistogram> result(width, ByteHistogram{});
  constexpr size_t kBlock = size_t{1} << 18;
  scratch.planes.resize(std::min(count, kBlock) * width);
  for (size_t start = 0; start < count; start += kBlock) {
    const size_t n = std::min(kBlock, count - start);
    uint8_t* planes[8];
    for (int k = 0; k < width; ++k) planes[k] = scratch.planes.data() + k * n;
    split_planes(elements + start * width, n, width, rotate, planes);
    for (int k = 0; k < width; ++k) {
      const ByteHistogram h = histogram(planes[k], n);
      for (int s = 0; s < 256; ++s) result[k][s] += h[s];
    }
  }
  return result;
}

}  // namespace tensorzip
