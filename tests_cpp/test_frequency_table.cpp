// Frequency tables: quantization (sums to 4096, every present symbol non-zero,
// absent ones zero), both serialized forms, and malformed tables rejected.
#include <cmath>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "frequency_table.hpp"

using namespace tensorzip;

namespace {

void check_quantized(const ByteHistogram& counts) {
  const FrequencyTable table = FrequencyTable::from_histogram(counts);
  uint32_t sum = 0;
  uint32_t running = 0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s]) {
      CHECK(table.frequency[s] >= 1);
    } else {
      CHECK_EQ(table.frequency[s], 0u);
    }
    CHECK_EQ(table.cumulative[s], running);
    running += table.frequency[s];
    sum += table.frequency[s];
  }
  CHECK_EQ(sum, kProbScale);
  // Quantizing costs bits, never saves them.
  CHECK(table.cost_bits(counts) >= entropy_bits(counts) - 1e-6);
}

std::vector<uint8_t> serialized(const FrequencyTable& table) {
  std::vector<uint8_t> out;
  table.serialize(out);
  return out;
}

FrequencyTable parse_all(const std::vector<uint8_t>& bytes) {
  size_t used = 0;
  FrequencyTable table = FrequencyTable::parse(bytes.data(), bytes.size(), &used);
  CHECK_EQ(used, bytes.size());
  return table;
}

// A serialized symbol-list table: kind 0, count - 1, symbols, LEB128 frequencies.
std::vector<uint8_t> symbol_list(const std::vector<uint8_t>& symbols, const std::vector<uint32_t>& frequencies) {
  std::vector<uint8_t> out = {0, static_cast<uint8_t>(symbols.size() - 1)};
  out.insert(out.end(), symbols.begin(), symbols.end());
  for (uint32_t f : frequencies) {
    while (f >= 0x80) {
      out.push_back(static_cast<uint8_t>(f | 0x80));
      f >>= 7;
    }
    out.push_back(static_cast<uint8_t>(f));
  }
  return out;
}

}  // namespace

TEST(frequency_table, quantization_sums_to_scale) {
  tztest::Rng rng(10);
  ByteHistogram counts{};
  counts[0] = 1;
  counts[255] = 1;
  check_quantized(counts);  // two equal symbols
  for (auto& c : counts) c = 1;
  check_quantized(counts);  // 256 symbols of one count each
  for (auto& c : counts) c = 0;
  counts[17] = 1'000'000'000;
  for (int s = 0; s < 256; s += 2) counts[s] += 1;  // many rare symbols beside a huge one: units taken back
  check_quantized(counts);
  for (int trial = 0; trial < 200; ++trial) {
    for (auto& c : counts) c = 0;
    const int present = 2 + static_cast<int>(rng.below(255));
    for (int i = 0; i < present; ++i) counts[rng.below(256)] += 1 + rng.below(trial % 2 ? 10 : 1'000'000);
    check_quantized(counts);
  }
}

TEST(frequency_table, quantization_is_close_to_counts) {
  ByteHistogram counts{};
  counts[3] = 3000;
  counts[4] = 1000;
  counts[5] = 96;
  const FrequencyTable table = FrequencyTable::from_histogram(counts);
  CHECK_EQ(table.frequency[3], 3000u);  // already sums to 4096: kept as is
  CHECK_EQ(table.frequency[4], 1000u);
  CHECK_EQ(table.frequency[5], 96u);
  CHECK_EQ(table.cumulative[4], 3000u);
  CHECK_EQ(table.cumulative[5], 4000u);
}

TEST(frequency_table, empty_histogram_rejected) {
  const ByteHistogram counts{};
  CHECK_THROWS(FrequencyTable::from_histogram(counts), InvalidArgumentError);
}

TEST(frequency_table, histogram_counts_bytes) {
  tztest::Rng rng(11);
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{5}, size_t{1001}}) {
    const std::vector<uint8_t> data = rng.bytes(n);
    ByteHistogram expected{};
    for (uint8_t b : data) ++expected[b];
    CHECK(histogram(data.data(), data.size()) == expected);
  }
  const std::vector<uint8_t> run(10'000, 42);
  CHECK_EQ(histogram(run.data(), run.size())[42], uint64_t{10'000});
}

TEST(frequency_table, entropy_of_known_streams) {
  ByteHistogram counts{};
  counts[0] = 8;
  counts[1] = 8;
  CHECK(std::fabs(entropy_bits(counts) - 16.0) < 1e-9);  // 16 fair bits
  counts[1] = 0;
  CHECK(std::fabs(entropy_bits(counts)) < 1e-12);
  CHECK(std::fabs(entropy_bits(ByteHistogram{})) < 1e-12);
}

TEST(frequency_table, serialize_parse_round_trip) {
  tztest::Rng rng(12);
  for (int present : {2, 3, 30, 31, 32, 33, 100, 256}) {  // both forms, and the switch between them
    ByteHistogram counts{};
    int placed = 0;
    while (placed < present) {
      const size_t s = rng.below(256);
      if (!counts[s]) {
        counts[s] = 1 + rng.below(5000);
        ++placed;
      }
    }
    const FrequencyTable table = FrequencyTable::from_histogram(counts);
    const std::vector<uint8_t> bytes = serialized(table);
    CHECK_EQ(bytes[0], present + 1 <= 32 ? 0 : 1);  // the shorter form: symbol list or bitmap
    const FrequencyTable back = parse_all(bytes);
    CHECK(back.frequency == table.frequency);
    CHECK(back.cumulative == table.cumulative);
    // Parsing stops at the table's end even with more bytes behind it.
    std::vector<uint8_t> longer = bytes;
    longer.push_back(0xEE);
    size_t used = 0;
    FrequencyTable::parse(longer.data(), longer.size(), &used);
    CHECK_EQ(used, bytes.size());
  }
}

TEST(frequency_table, known_serialized_form) {
  ByteHistogram counts{};
  counts[65] = 1;
  counts[66] = 3;
  const FrequencyTable table = FrequencyTable::from_histogram(counts);
  CHECK_EQ(table.frequency[65], 1024u);
  CHECK_EQ(table.frequency[66], 3072u);
  // kind 0, two symbols, 'A', 'B', LEB128 1024 = 80 08, 3072 = 80 18.
  const std::vector<uint8_t> expected = {0, 1, 65, 66, 0x80, 0x08, 0x80, 0x18};
  CHECK_BYTES(serialized(table), expected);
}

TEST(frequency_table, invalid_tables_rejected) {
  size_t used = 0;
  auto parse = [&](const std::vector<uint8_t>& bytes) {
    return FrequencyTable::parse(bytes.data(), bytes.size(), &used);
  };
  // The valid base case first, so the rejections below are for the one change each makes.
  parse_all(symbol_list({1, 2}, {2048, 2048}));
  CHECK_THROWS(parse({}), CorruptStreamError);
  CHECK_THROWS(parse({0}), CorruptStreamError);                                  // truncated
  CHECK_THROWS(parse({7, 1, 1, 2}), CorruptStreamError);                         // unknown kind
  CHECK_THROWS(parse(symbol_list({1}, {4096})), CorruptStreamError);            // one symbol
  CHECK_THROWS(parse(symbol_list({1, 2}, {2048, 2047})), CorruptStreamError);    // sum 4095
  CHECK_THROWS(parse(symbol_list({1, 2}, {2048, 2049})), CorruptStreamError);    // sum 4097
  CHECK_THROWS(parse(symbol_list({1, 2}, {0, 4096})), CorruptStreamError);       // zero frequency
  CHECK_THROWS(parse(symbol_list({1, 2, 3}, {4096, 1, 1})), CorruptStreamError); // frequency = scale
  CHECK_THROWS(parse(symbol_list({2, 1}, {2048, 2048})), CorruptStreamError);    // not increasing
  CHECK_THROWS(parse(symbol_list({2, 2}, {2048, 2048})), CorruptStreamError);    // repeated
  std::vector<uint8_t> cut = symbol_list({1, 2}, {2048, 2048});
  cut.pop_back();
  CHECK_THROWS(parse(cut), CorruptStreamError);                                  // last number cut
  CHECK_THROWS(parse({0, 1, 1, 2, 0x80, 0x80, 0x80, 0x01, 0x80, 0x10}), CorruptStreamError);  // over-long
  CHECK_THROWS(parse({0, 5, 1, 2}), CorruptStreamError);                         // symbols cut
  std::vector<uint8_t> bitmap(33, 0);
  bitmap[0] = 1;
  CHECK_THROWS(parse(std::vector<uint8_t>(bitmap.begin(), bitmap.begin() + 20)), CorruptStreamError);
  bitmap[1] = 0x01;  // symbol 0 only
  bitmap.push_back(0x80);
  bitmap.push_back(0x20);
  CHECK_THROWS(parse(bitmap), CorruptStreamError);                               // bitmap, one symbol
  bitmap[1] = 0x03;  // symbols 0 and 1: 4096 then nothing
  CHECK_THROWS(parse(bitmap), CorruptStreamError);
  bitmap.push_back(0x00);  // ... 4096 and 0
  CHECK_THROWS(parse(bitmap), CorruptStreamError);
}
