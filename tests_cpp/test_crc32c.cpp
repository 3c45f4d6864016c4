// CRC-32C: published check values, and the SSE4.2 path (three interleaved streams
// joined by a GF(2) shift for long buffers) and the AVX-512 carry-less folds (256-byte
// rounds, then 64-byte ones, then the SSE4.2 tail) against the portable table and
// against a bit-at-a-time reference, over many lengths and alignments.
#include <string>
#include <vector>

#include "check.hpp"
#include "crc32c.hpp"

using namespace tensorzip;

namespace {

// Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78), independent of both paths.
uint32_t reference_crc32c(const uint8_t* data, size_t length, uint32_t previous = 0) {
  uint32_t crc = ~previous;
  for (size_t i = 0; i < length; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

uint32_t crc_of(const std::string& s) { return crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

// Lengths around every boundary of the hardware paths: 8-byte words, the byte
// tail, the 256- and 64-byte fold rounds, and the 3 x 8192-byte interleaved rounds.
std::vector<size_t> interesting_lengths() {
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 80; ++n) lengths.push_back(n);
  for (size_t base : {size_t{255}, size_t{320}, size_t{512}, size_t{576}, size_t{4096}, size_t{8192},
                      size_t{3 * 8192}, size_t{6 * 8192}, size_t{9 * 8192}}) {
    for (size_t delta = 0; delta < 10; ++delta) {
      lengths.push_back(base + delta);
      if (base > delta) lengths.push_back(base - delta);
    }
  }
  lengths.push_back(100'003);
  return lengths;
}

}  // namespace

TEST(crc32c, known_vectors) {
  tztest::for_each_simd_cap([](SimdCap) {
    CHECK_EQ(crc_of("123456789"), 0xE3069283u);  // the CRC catalogue's check value
    CHECK_EQ(crc_of(""), 0u);
    CHECK_EQ(crc_of("a"), 0xC1D04330u);
    // RFC 3720 (iSCSI), appendix B.4.
    std::vector<uint8_t> v(32, 0x00);
    CHECK_EQ(crc32c(v.data(), v.size()), 0x8A9136AAu);
    v.assign(32, 0xFF);
    CHECK_EQ(crc32c(v.data(), v.size()), 0x62A8AB43u);
    for (int i = 0; i < 32; ++i) v[i] = static_cast<uint8_t>(i);
    CHECK_EQ(crc32c(v.data(), v.size()), 0x46DD794Eu);
    for (int i = 0; i < 32; ++i) v[i] = static_cast<uint8_t>(31 - i);
    CHECK_EQ(crc32c(v.data(), v.size()), 0x113FDB5Cu);
  });
}

TEST(crc32c, reference_matches_known_vector) {
  const std::string check = "123456789";
  CHECK_EQ(reference_crc32c(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xE3069283u);
}

TEST(crc32c, paths_agree_on_lengths_and_alignments) {
  tztest::Rng rng(32);
  const std::vector<uint8_t> buffer = rng.bytes(100'003 + 64);
  for (size_t length : interesting_lengths()) {
    for (size_t offset : {0, 1, 2, 3, 5, 7, 8, 13, 31}) {
      const uint8_t* p = buffer.data() + offset;
      const uint32_t expected = reference_crc32c(p, length);
      tztest::for_each_simd_cap([&](SimdCap) { CHECK_EQ(crc32c(p, length), expected); });
    }
  }
}

TEST(crc32c, previous_chains_pieces) {
  tztest::Rng rng(7);
  const std::vector<uint8_t> data = rng.bytes(70'001);
  const uint32_t whole = reference_crc32c(data.data(), data.size());
  tztest::for_each_simd_cap([&](SimdCap) {
    for (size_t cut : {size_t{0}, size_t{1}, size_t{9}, size_t{8192}, size_t{24'577}, size_t{70'001}}) {
      const uint32_t first = crc32c(data.data(), cut);
      CHECK_EQ(crc32c(data.data() + cut, data.size() - cut, first), whole);
    }
  });
}

TEST(crc32c, every_single_bit_flip_changes_it) {
  tztest::Rng rng(3);
  std::vector<uint8_t> data = rng.bytes(300);
  tztest::for_each_simd_cap([&](SimdCap) {
    const uint32_t clean = crc32c(data.data(), data.size());
    for (size_t bit = 0; bit < 8 * data.size(); ++bit) {
      data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      CHECK(crc32c(data.data(), data.size()) != clean);
      data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
  });
}
