// Scores from stored embedding integers, and the bit-packed rows an open collection keeps:
// every width 0-16 packs and unpacks to the same symbols (aligned and unaligned blocks, every
// SIMD path), packed scores equal the unpacked ones float for float, a symbol wider than its
// row is refused.
#include <cstring>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "cpu_features.hpp"
#include "symbol_scores.hpp"

using namespace tensorzip;

namespace {

struct Packed {
  std::vector<uint8_t> widths;
  std::vector<uint64_t> starts;
  std::vector<uint8_t> data;
};

Packed pack(const std::vector<uint16_t>& symbols, const std::vector<uint8_t>& widths, size_t count) {
  Packed p{widths, std::vector<uint64_t>(widths.size()), {}};
  uint64_t at = 0;
  for (size_t j = 0; j < widths.size(); ++j) {
    p.starts[j] = at;
    at += packed_row_bytes(count, widths[j]);
  }
  p.data.assign(at + kPackedPadding, 0);
  pack_rows(reinterpret_cast<const uint8_t*>(symbols.data()), 2, widths.size(), count, p.widths.data(),
            p.starts.data(), p.data.data());
  return p;
}

std::vector<uint16_t> random_rows(tztest::Rng& rng, const std::vector<uint8_t>& widths, size_t count) {
  std::vector<uint16_t> symbols(widths.size() * count);
  for (size_t j = 0; j < widths.size(); ++j)
    for (size_t i = 0; i < count; ++i)
      symbols[j * count + i] = widths[j] ? static_cast<uint16_t>(rng.next() & ((1u << widths[j]) - 1)) : 0;
  return symbols;
}

}  // namespace

TEST(symbol_scores, every_width_packs_and_unpacks) {
  tztest::Rng rng(5);
  std::vector<uint8_t> widths;
  for (uint8_t w = 0; w <= 16; ++w) widths.push_back(w);
  const size_t count = 1037;
  const std::vector<uint16_t> symbols = random_rows(rng, widths, count);
  const Packed p = pack(symbols, widths, count);
  // Bits in little-endian order: row 1 (1 bit) holds symbol i at bit i.
  for (size_t i = 0; i < 16; ++i) CHECK_EQ((p.data[p.starts[1] + i / 8] >> (i % 8)) & 1u, symbols[count + i]);
  tztest::for_each_simd_cap([&](SimdCap) {
    for (size_t start : {size_t{0}, size_t{8}, size_t{3}, size_t{1029}}) {
      const size_t n = count - start;
      std::vector<uint16_t> out(widths.size() * n);
      unpack_rows(p.data.data(), p.widths.data(), p.starts.data(), widths.size(), count, start, count, 2,
                  reinterpret_cast<uint8_t*>(out.data()), 2);
      for (size_t j = 0; j < widths.size(); ++j)
        CHECK(std::memcmp(out.data() + j * n, symbols.data() + j * count + start, n * 2) == 0);
    }
  });
}

TEST(symbol_scores, packed_scores_equal_unpacked) {
  tztest::Rng rng(9);
  const std::vector<uint8_t> widths = {4, 0, 9, 16, 1, 7, 12, 3, 8, 15, 2};
  const size_t count = 2600, queries = 3;
  const std::vector<uint16_t> symbols = random_rows(rng, widths, count);
  const Packed p = pack(symbols, widths, count);
  std::vector<float> weights(queries * widths.size());
  for (float& w : weights) w = static_cast<float>(static_cast<int>(rng.next() % 2001) - 1000) * 1e-3f;
  tztest::for_each_simd_cap([&](SimdCap) {
    for (size_t start : {size_t{0}, size_t{5}}) {
      const size_t n = count - start - 1;
      std::vector<float> packed(queries * n), plain(queries * n);
      packed_symbol_scores(p.data.data(), p.widths.data(), p.starts.data(), widths.size(), count, start,
                           start + n, weights.data(), queries, packed.data(), 2);
      symbol_scores(reinterpret_cast<const uint8_t*>(symbols.data()), 2, widths.size(), count, start, start + n,
                    weights.data(), queries, plain.data(), 1);
      CHECK(std::memcmp(packed.data(), plain.data(), packed.size() * sizeof(float)) == 0);
    }
  });
}

TEST(symbol_scores, a_symbol_wider_than_its_row_is_refused) {
  const std::vector<uint16_t> symbols = {1, 2, 3};
  CHECK_THROWS(pack(symbols, {1}, 3), InvalidArgumentError);
}
