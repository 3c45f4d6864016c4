#include "frequency_table.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "errors.hpp"

namespace tensorzip {

ByteHistogram histogram(const uint8_t* data, size_t length) {
  std::array<std::array<uint32_t, 256>, 4> partial{};
  ByteHistogram total{};
  // uint32 partial counts: flush before they can overflow.
  constexpr size_t kBlock = size_t{1} << 30;
  size_t done = 0;
  while (done < length) {
    const size_t block = std::min(kBlock, length - done);
    const uint8_t* p = data + done;
    size_t i = 0;
    for (; i + 4 <= block; i += 4) {
      ++partial[0][p[i]];
      ++partial[1][p[i + 1]];
      ++partial[2][p[i + 2]];
      ++partial[3][p[i + 3]];
    }
    for (; i < block; ++i) ++partial[0][p[i]];
    for (int s = 0; s < 256; ++s) {
      total[s] += uint64_t{partial[0][s]} + partial[1][s] + partial[2][s] + partial[3][s];
      partial[0][s] = partial[1][s] = partial[2][s] = partial[3][s] = 0;
    }
    done += block;
  }
  return total;
}

double entropy_bits(const ByteHistogram& counts) {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  if (n == 0) return 0.0;
  double bits = 0.0;
  const double log_n = std::log2(static_cast<double>(n));
  for (uint64_t c : counts) {
    if (c) bits += static_cast<double>(c) * (log_n - std::log2(static_cast<double>(c)));
  }
  return bits;
}

double FrequencyTable::cost_bits(const ByteHistogram& counts) const {
  double bits = 0.0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s]) {
      bits += static_cast<double>(counts[s]) *
              (kProbBits - std::log2(static_cast<double>(frequency[s])));
    }
  }
  return bits;
}

namespace {

void finish_cumulative(FrequencyTable& table) {
  uint32_t running = 0;
  for (int s = 0; s < 256; ++s) {
    table.cumulative[s] = running;
    running += table.frequency[s];
  }
}

}  // namespace

FrequencyTable FrequencyTable::from_histogram(const ByteHistogram& counts, uint32_t scale_bits) {
  require(scale_bits >= 8 && scale_bits <= kProbBits, "frequency tables have 8 to 12 bits of scale");
  const uint32_t scale = 1u << scale_bits;
  FrequencyTable table;
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  require(n > 0, "frequency table of an empty stream");

  int64_t assigned = 0;
  for (int s = 0; s < 256; ++s) {
    if (!counts[s]) continue;
    const double exact = static_cast<double>(counts[s]) * scale / static_cast<double>(n);
    uint32_t f = static_cast<uint32_t>(exact);
    if (f == 0) f = 1;
    table.frequency[s] = f;
    assigned += f;
  }
  // Hand out (or take back) single units where they cost the fewest bits. Only
  // the symbol that changed needs its score recomputed.
  int64_t missing = static_cast<int64_t>(scale) - assigned;
  const bool adding = missing > 0;
  auto score = [&](int s) -> double {
    const double f = table.frequency[s];
    if (adding) return static_cast<double>(counts[s]) * std::log2((f + 1.0) / f);  // bits saved
    if (table.frequency[s] <= 1) return -std::numeric_limits<double>::infinity();
    return -static_cast<double>(counts[s]) * std::log2(f / (f - 1.0));  // bits lost
  };
  std::array<double, 256> scores;
  for (int s = 0; s < 256; ++s) scores[s] = counts[s] ? score(s) : -std::numeric_limits<double>::infinity();
  while (missing != 0) {
    int best = 0;
    for (int s = 1; s < 256; ++s) {
      if (scores[s] > scores[best]) best = s;
    }
    require(scores[best] > -std::numeric_limits<double>::infinity(), "cannot quantize frequency table");
    if (adding) {
      ++table.frequency[best];
      --missing;
    } else {
      --table.frequency[best];
      ++missing;
    }
    scores[best] = score(best);
  }
  finish_cumulative(table);
  return table;
}

namespace {

void put_varint(std::vector<uint8_t>& out, uint32_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<uint8_t>(value));
}

uint32_t get_varint(const uint8_t* data, size_t length, size_t* pos) {
  uint32_t value = 0;
  for (int shift = 0; shift < 21; shift += 7) {
    require_stream(*pos < length, "frequency table truncated");
    const uint8_t byte = data[(*pos)++];
    value |= static_cast<uint32_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return value;
  }
  throw CorruptStreamError("frequency table has an over-long number");
}

constexpr uint8_t kTableSymbolList = 0;
constexpr uint8_t kTableBitmap = 1;

}  // namespace

void FrequencyTable::serialize(std::vector<uint8_t>& out) const {
  int present = 0;
  for (uint32_t f : frequency) present += f != 0;
  std::vector<uint8_t> freqs;
  for (uint32_t f : frequency) {
    if (f) put_varint(freqs, f);
  }
  // symbol list: 1 (kind) + 1 (count) + present; bitmap: 1 + 32.
  if (2 + present <= 1 + 32) {
    out.push_back(kTableSymbolList);
    out.push_back(static_cast<uint8_t>(present - 1));
    for (int s = 0; s < 256; ++s) {
      if (frequency[s]) out.push_back(static_cast<uint8_t>(s));
    }
  } else {
    out.push_back(kTableBitmap);
    std::array<uint8_t, 32> bitmap{};
    for (int s = 0; s < 256; ++s) {
      if (frequency[s]) bitmap[s >> 3] |= static_cast<uint8_t>(1u << (s & 7));
    }
    out.insert(out.end(), bitmap.begin(), bitmap.end());
  }
  out.insert(out.end(), freqs.begin(), freqs.end());
}

FrequencyTable FrequencyTable::parse(const uint8_t* data, size_t length, size_t* used, uint32_t scale_bits) {
  const uint32_t scale = 1u << scale_bits;
  FrequencyTable table;
  size_t pos = 0;
  require_stream(length >= 2, "frequency table truncated");
  const uint8_t kind = data[pos++];
  std::array<uint8_t, 256> symbols{};
  int present = 0;
  if (kind == kTableSymbolList) {
    present = data[pos++] + 1;
    require_stream(pos + present <= length, "frequency table truncated");
    for (int i = 0; i < present; ++i) {
      symbols[i] = data[pos++];
      require_stream(i == 0 || symbols[i] > symbols[i - 1],
                     "frequency table symbols are not strictly increasing");
    }
  } else if (kind == kTableBitmap) {
    require_stream(pos + 32 <= length, "frequency table truncated");
    for (int s = 0; s < 256; ++s) {
      if (data[pos + (s >> 3)] & (1u << (s & 7))) symbols[present++] = static_cast<uint8_t>(s);
    }
    pos += 32;
  } else {
    throw CorruptStreamError("unknown frequency table kind " + std::to_string(kind));
  }
  require_stream(present >= 2, "frequency table has fewer than two symbols");
  uint64_t sum = 0;
  for (int i = 0; i < present; ++i) {
    const uint32_t f = get_varint(data, length, &pos);
    require_stream(f >= 1 && f < scale, "frequency out of range in frequency table");
    table.frequency[symbols[i]] = f;
    sum += f;
  }
  require_stream(sum == scale, "frequency table does not sum to the probability scale");
  finish_cumulative(table);
  *used = pos;
  return table;
}

}  // namespace tensorzip
