#include "context_plane.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "cpu_features.hpp"
#include "errors.hpp"
#include "rans.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TZ_HAVE_BMI2_PATH 1
#endif

namespace tensorzip {

namespace {

// A context gets a table of its own from this many elements (measured on MiniLM
// BF16: below it the table costs more than the better fit saves; benchmarks/context_gain.py).
constexpr uint64_t kOwnTableElements = 2048;
// Prefix bits counted per context; the encoder tries k = 1 .. kMaxTopBits.
constexpr int kMaxTopBits = 6;
constexpr size_t kPrefixes = size_t{1} << kMaxTopBits;
constexpr size_t kFixedBytes = 3 + 4;  // k, first, own, stream length

size_t low_bytes(size_t count, int low_bits) { return (count * static_cast<size_t>(low_bits) + 7) / 8; }

double entropy_of(const uint64_t* counts, int symbols) {
  uint64_t n = 0;
  for (int s = 0; s < symbols; ++s) n += counts[s];
  if (n == 0) return 0.0;
  double bits = 0.0;
  const double log_n = std::log2(static_cast<double>(n));
  for (int s = 0; s < symbols; ++s) {
    if (counts[s]) bits += static_cast<double>(counts[s]) * (log_n - std::log2(static_cast<double>(counts[s])));
  }
  return bits;
}

// The contexts that get tables of their own: from the first to the last with
// kOwnTableElements or more (a chunk's common exponents are contiguous).
ContextRange own_range(const ByteHistogram& per_context) {
  int first = -1;
  int last = -1;
  for (int c = 0; c < 256; ++c) {
    if (per_context[c] >= kOwnTableElements) {
      if (first < 0) first = c;
      last = c;
    }
  }
  if (first < 0) return {};
  return {static_cast<uint32_t>(first), static_cast<uint32_t>(std::min(last - first + 1, 255))};
}

// Per table of the range, the counts of the top k bits (table 0: the shared one).
std::vector<std::array<uint64_t, kPrefixes>> table_counts(const uint32_t* counts, const ByteHistogram& per_context,
                                                          ContextRange range, int k) {
  std::vector<std::array<uint64_t, kPrefixes>> tables(range.own + 1, std::array<uint64_t, kPrefixes>{});
  for (int c = 0; c < 256; ++c) {
    if (per_context[c] == 0) continue;  // most of the 256 exponents never occur in a chunk
    const uint32_t* prefixes = counts + c * kPrefixes;
    auto& t = tables[range.table(static_cast<uint8_t>(c))];
    for (size_t p = 0; p < kPrefixes; ++p) t[p >> (kMaxTopBits - k)] += prefixes[p];  // mostly zeros: cheap
  }
  return tables;
}

// Estimated body bytes with k top bits (tables at about 1.5 bytes a symbol plus
// the symbol list's two bytes).
double estimate(const uint32_t* counts, const ByteHistogram& per_context, size_t count, ContextRange range, int k) {
  double bits = 0.0;
  for (const auto& t : table_counts(counts, per_context, range, k)) bits += entropy_of(t.data(), 1 << k);
  const double table_bytes = (range.own + 1) * (2 + 1.5 * (1 << k));
  return bits / 8 + table_bytes + kFixedBytes + kRansStateBytes + low_bytes(count, 8 - k);
}

// A table of the counts, with a second symbol added where only one occurs (the
// table format needs two).
FrequencyTable table_of_counts(const uint64_t* counts, int symbols) {
  ByteHistogram h{};
  int present = 0;
  for (int s = 0; s < symbols; ++s) {
    h[s] = counts[s];
    present += counts[s] ? 1 : 0;
  }
  if (present < 2) {
    const int filler = h[0] ? 1 : 0;
    h[filler] = 1;
    if (present == 0) h[1 - filler] = 1;
  }
  return FrequencyTable::from_histogram(h, kContextBits);
}

#ifdef TZ_HAVE_BMI2_PATH
// pack_low_bits' whole groups: pext gathers each byte's low bits in one instruction.
__attribute__((target("bmi2"))) size_t pack_groups_bmi2(const uint8_t* plane, size_t count, int low_bits,
                                                       uint8_t* out) {
  const uint64_t spread_mask = ((uint64_t{1} << low_bits) - 1) * 0x0101010101010101ull;
  size_t g = 0;
  for (; g + 8 <= count; g += 8) {
    uint64_t bytes;
    std::memcpy(&bytes, plane + g, 8);
    const uint64_t v = _pext_u64(bytes, spread_mask);
    std::memcpy(out + g / 8 * low_bits, &v, static_cast<size_t>(low_bits));
  }
  return g;
}
#endif

// The inverse of the decoder's merge: element j of each group of 8 gives its low bits
// to bits j x low_bits of the group's little-endian integer.
void pack_low_bits(const uint8_t* plane, size_t count, int low_bits, uint8_t* out) {
  const uint64_t mask = (uint64_t{1} << low_bits) - 1;
  size_t g = 0;
#ifdef TZ_HAVE_BMI2_PATH
  if (bmi2_path_allowed()) g = pack_groups_bmi2(plane, count, low_bits, out);
#endif
  for (; g < count; g += 8) {
    const size_t n = std::min<size_t>(8, count - g);
    uint64_t v = 0;
    for (size_t j = 0; j < n; ++j) v |= (plane[g + j] & mask) << (j * low_bits);
    std::memcpy(out + g / 8 * low_bits, &v, low_bytes(n, low_bits));  // little-endian hosts only (checked at build)
  }
}

}  // namespace

bool encode_context_plane(const uint8_t* contexts, const ByteHistogram& per_context, const uint8_t* plane,
                          size_t count, size_t budget, ContextPlaneScratch& scratch) {
  uint32_t* const counts = scratch.counts.reserve(256 * kPrefixes);
  std::memset(counts, 0, 256 * kPrefixes * sizeof(uint32_t));
  for (size_t i = 0; i < count; ++i) ++counts[contexts[i] * kPrefixes + (plane[i] >> (8 - kMaxTopBits))];
  const ContextRange range = own_range(per_context);
  int k = 1;
  double best = estimate(counts, per_context, count, range, 1);
  for (int bits = 2; bits <= kMaxTopBits; ++bits) {
    const double e = estimate(counts, per_context, count, range, bits);
    if (e < best) best = e, k = bits;
  }
  if (best >= static_cast<double>(budget)) return false;

  const int low = 8 - k;
  std::vector<FrequencyTable> tables;
  for (const auto& t : table_counts(counts, per_context, range, k)) {
    tables.push_back(table_of_counts(t.data(), 1 << k));
  }
  std::vector<uint8_t>& body = scratch.body;
  body.clear();
  body.push_back(static_cast<uint8_t>(k));
  body.push_back(static_cast<uint8_t>(range.first));
  body.push_back(static_cast<uint8_t>(range.own));
  for (const FrequencyTable& t : tables) t.serialize(body);
  const size_t length_at = body.size();
  body.resize(length_at + 4);
  const size_t fixed = body.size() + low_bytes(count, low);
  if (fixed + kRansStateBytes >= budget) return false;

  uint8_t* const top = scratch.symbols.reserve(count);
  for (size_t i = 0; i < count; ++i) top[i] = static_cast<uint8_t>(plane[i] >> low);
  if (!context_rans_encode(top, contexts, count, tables, range, budget - fixed, body, scratch.words)) {
    return false;
  }
  const uint32_t stream_length = static_cast<uint32_t>(body.size() - length_at - 4);
  std::memcpy(body.data() + length_at, &stream_length, 4);
  const size_t low_at = body.size();
  body.resize(low_at + low_bytes(count, low));
  if (low) pack_low_bits(plane, count, low, body.data() + low_at);
  return body.size() < budget;
}

ContextPlaneDecoder::ContextPlaneDecoder(const uint8_t* body, size_t length, size_t count,
                                         ScratchBuffer<uint32_t>& slots) {
  require_stream(length >= 2, "context plane is shorter than its header");
  const int k = body[0];
  require_stream_or(k >= 1 && k <= 8, [&] { return "context plane codes " + std::to_string(k) + " top bits (1 to 8 allowed)"; });
  low_bits_ = 8 - k;
  require_stream(length >= 3, "context plane is shorter than its header");
  range_.first = body[1];
  range_.own = body[2];
  require_stream(range_.first + range_.own <= 256, "context plane's own contexts run past context 255");
  size_t at = 3;
  uint32_t* const slot_tables = slots.reserve((range_.own + 1) * size_t{kContextScale});
  for (size_t t = 0; t <= range_.own; ++t) {
    size_t used = 0;
    const FrequencyTable table = FrequencyTable::parse(body + at, length - at, &used, kContextBits);
    for (int s = 1 << k; s < 256; ++s) {
      require_stream(table.frequency[s] == 0, "context plane's table has a symbol above its top bits");
    }
    fill_context_slots(table, slot_tables + t * kContextScale);
    at += used;
  }
  require_stream(length - at >= 4, "context plane's stream length is missing");
  uint32_t stream_length;
  std::memcpy(&stream_length, body + at, 4);
  at += 4;
  require_stream(stream_length <= length - at, "context plane's stream runs past its end");
  low_ = body + at + stream_length;
  low_length_ = length - at - stream_length;
  require_stream(low_length_ == low_bytes(count, low_bits_),
                 "context plane's low bits have the wrong length");
  stream_.emplace(body + at, stream_length, range_, slot_tables);
}

namespace {

// Element j of a group of 8 takes the top symbol top[j] (< 2^(8 - w)) and its w low
// bits from v (bits j*w ..): byte j = top[j] << w | those bits.
inline uint64_t merge_group_portable(uint64_t top, uint64_t v, int w) {
  const uint64_t mask = (uint64_t{1} << w) - 1;
  uint64_t spread = 0;
  for (int j = 0; j < 8; ++j) spread |= ((v >> (j * w)) & mask) << (8 * j);
  return (top << w) | spread;  // top bytes stay below 2^(8 - w): no carry between bytes
}

#ifdef TZ_HAVE_BMI2_PATH
__attribute__((target("bmi2"))) void merge_groups_bmi2(uint8_t* out, const uint8_t* low, size_t groups, int w) {
  const uint64_t spread_mask = ((uint64_t{1} << w) - 1) * 0x0101010101010101ull;
  for (size_t g = 0; g < groups; ++g) {
    uint64_t top, v;
    std::memcpy(&top, out + 8 * g, 8);
    std::memcpy(&v, low + g * w, 8);
    top = (top << w) | _pdep_u64(v, spread_mask);
    std::memcpy(out + 8 * g, &top, 8);
  }
}
#endif

}  // namespace

void ContextPlaneDecoder::decode(const uint8_t* contexts, size_t start, size_t n, uint8_t* out) {
  stream_->decode(contexts, out, n);
  merge_low_bits(start, n, out);
}

void decode_pair(ContextPlaneDecoder& a, const uint8_t* contexts_a, uint8_t* out_a, ContextPlaneDecoder& b,
                 const uint8_t* contexts_b, uint8_t* out_b, size_t start, size_t n) {
  decode_pair(*a.stream_, contexts_a, out_a, *b.stream_, contexts_b, out_b, n);
  a.merge_low_bits(start, n, out_a);
  b.merge_low_bits(start, n, out_b);
}

void ContextPlaneDecoder::merge_low_bits(size_t start, size_t n, uint8_t* out) const {
  if (low_bits_ == 0) return;
  const int w = low_bits_;
  const uint8_t* low = low_ + start / 8 * w;
  // Whole groups whose 8-byte load stays inside the low bits (the last group or
  // so is read byte by byte below).
  const size_t readable = low_length_ - static_cast<size_t>(low - low_);
  size_t groups = std::min(n / 8, readable >= 8 ? (readable - 8) / w + 1 : 0);
  size_t g = 0;
#ifdef TZ_HAVE_BMI2_PATH
  if (bmi2_path_allowed()) {
    merge_groups_bmi2(out, low, groups, w);
    g = groups;
  }
#endif
  for (; g < groups; ++g) {
    uint64_t top, v;
    std::memcpy(&top, out + 8 * g, 8);
    std::memcpy(&v, low + g * w, 8);
    top = merge_group_portable(top, v, w);
    std::memcpy(out + 8 * g, &top, 8);
  }
  for (size_t i = g * 8; i < n; i += 8) {
    const size_t m = std::min<size_t>(8, n - i);
    uint64_t top = 0, v = 0;
    std::memcpy(&top, out + i, m);
    std::memcpy(&v, low + i / 8 * w, low_bytes(m, w));
    top = merge_group_portable(top, v, w);
    std::memcpy(out + i, &top, m);
  }
}

}  // namespace tensorzip
