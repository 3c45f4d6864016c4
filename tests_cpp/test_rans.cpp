// The rANS coder: exact round trips of random, skewed, constant and empty streams
// for every count modulo the 32 lanes (and counts below one round), on every
// decode path (single stream, in pieces, paired), with the encoded bytes
// identical on every SIMD path; and corrupt payloads rejected.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "frequency_table.hpp"
#include "rans.hpp"

using namespace tensorzip;

namespace {

constexpr size_t kNoLimit = std::numeric_limits<size_t>::max() / 4;

// Symbols drawn from a geometric-like law: most are 0, 1, 2 (an exponent plane).
std::vector<uint8_t> skewed(tztest::Rng& rng, size_t n) {
  std::vector<uint8_t> out(n);
  for (uint8_t& s : out) {
    uint64_t r = rng.next();
    uint8_t v = 0;
    while ((r & 3) == 0 && v < 40) {
      ++v;
      r >>= 2;
    }
    s = static_cast<uint8_t>(120 + v);
  }
  return out;
}

std::vector<uint8_t> uniform(tztest::Rng& rng, size_t n) { return rng.bytes(n); }

// A table for the stream; `extra` adds a symbol (count 1) so that constant
// streams get the two-symbol tables the format stores.
FrequencyTable table_for(const std::vector<uint8_t>& symbols, int extra = -1) {
  ByteHistogram counts = histogram(symbols.data(), symbols.size());
  if (extra >= 0) counts[extra] += 1;
  return FrequencyTable::from_histogram(counts);
}

std::vector<uint8_t> encode(const std::vector<uint8_t>& symbols, const FrequencyTable& table) {
  std::vector<uint8_t> out;
  ScratchBuffer<uint16_t> words;
  const bool ok = rans_encode(symbols.data(), symbols.size(), table, kNoLimit, out, words);
  CHECK(ok);
  return out;
}

// Decodes `count` symbols in pieces of `piece` symbols (a multiple of the lane
// count, except the last), then checks the stream ends cleanly.
std::vector<uint8_t> decode(const std::vector<uint8_t>& payload, const FrequencyTable& table, size_t count,
                            size_t piece) {
  std::vector<uint32_t> slots(kProbScale);
  RansDecoder decoder(payload.data(), payload.size(), table, slots.data());
  std::vector<uint8_t> out(count + 1, 0xAB);  // one guard byte past the end
  for (size_t start = 0; start < count; start += piece) {
    decoder.decode(out.data() + start, std::min(piece, count - start));
  }
  decoder.finish();
  CHECK_EQ(out[count], 0xAB);  // nothing written past the end
  out.resize(count);
  return out;
}

// Encodes under every SIMD cap (identical bytes), decodes under every cap in
// one go and in pieces, each exactly.
void check_round_trip(const std::vector<uint8_t>& symbols, const FrequencyTable& table) {
  std::vector<uint8_t> reference;
  bool first = true;
  tztest::for_each_simd_cap([&](SimdCap) {
    const std::vector<uint8_t> payload = encode(symbols, table);
    if (first) {
      reference = payload;
      first = false;
    }
    CHECK_BYTES(payload, reference);
    CHECK(payload.size() >= kRansStateBytes);
    CHECK_EQ((payload.size() - kRansStateBytes) % 2, size_t{0});
    const size_t n = symbols.size();
    CHECK_BYTES(decode(payload, table, n, n ? n : 1), symbols);
    CHECK_BYTES(decode(payload, table, n, kRansLanes), symbols);
    CHECK_BYTES(decode(payload, table, n, 8192), symbols);
  });
}

// Counts covering every residue modulo the lane count, less than one round,
// exact rounds, and the vector loops' tails.
std::vector<size_t> lane_counts() {
  std::vector<size_t> counts;
  for (size_t n = 0; n <= 3 * kRansLanes + 1; ++n) counts.push_back(n);
  for (size_t n : {size_t{255}, size_t{256}, size_t{257}, size_t{1000}, size_t{4099}, size_t{8192}, size_t{8193},
                   size_t{65'536 + 17}}) {
    counts.push_back(n);
  }
  return counts;
}

}  // namespace

TEST(rans, random_streams_every_count) {
  tztest::Rng rng(1);
  for (size_t n : lane_counts()) {
    const std::vector<uint8_t> symbols = uniform(rng, n);
    if (n < 2) continue;  // a table needs symbols; see empty_stream
    // Random streams need at least two distinct symbols for a table.
    std::vector<uint8_t> s = symbols;
    s[0] = 0;
    s[1] = 255;
    check_round_trip(s, table_for(s));
  }
}

TEST(rans, skewed_streams_every_count) {
  tztest::Rng rng(2);
  for (size_t n : lane_counts()) {
    const std::vector<uint8_t> symbols = skewed(rng, n);
    check_round_trip(symbols, table_for(symbols, 7));
  }
}

TEST(rans, skewed_stream_compresses) {
  tztest::Rng rng(22);
  const std::vector<uint8_t> symbols = skewed(rng, 100'000);
  const FrequencyTable table = table_for(symbols);
  const std::vector<uint8_t> payload = encode(symbols, table);
  // The entropy of this law is about 1.2 bits a symbol; the coder must be near it.
  const double bound = entropy_bits(histogram(symbols.data(), symbols.size())) / 8.0;
  CHECK(payload.size() < bound * 1.01 + kRansStateBytes + 64);
  check_round_trip(symbols, table);
}

TEST(rans, constant_streams) {
  for (size_t n : lane_counts()) {
    const std::vector<uint8_t> symbols(n, 0x3F);
    check_round_trip(symbols, table_for(symbols, 0x40));  // the format's two-symbol table
  }
  // A one-symbol model (the format stores constant planes as one byte instead, but
  // the coder must still be exact): states never change, no words are written.
  FrequencyTable one;
  one.frequency[9] = kProbScale;
  for (int s = 10; s < 256; ++s) one.cumulative[s] = kProbScale;
  const std::vector<uint8_t> nines(1000, 9);
  check_round_trip(nines, one);
  CHECK_EQ(encode(nines, one).size(), kRansStateBytes);
}

TEST(rans, empty_stream) {
  ByteHistogram counts{};
  counts[1] = 1;
  counts[2] = 3;
  const FrequencyTable table = FrequencyTable::from_histogram(counts);
  const std::vector<uint8_t> none;
  tztest::for_each_simd_cap([&](SimdCap) {
    const std::vector<uint8_t> payload = encode(none, table);
    CHECK_EQ(payload.size(), kRansStateBytes);  // the 32 initial states only
    for (size_t lane = 0; lane < kRansLanes; ++lane) {
      uint32_t state;
      std::memcpy(&state, payload.data() + 4 * lane, 4);
      CHECK_EQ(state, 1u << 15);
    }
    CHECK_BYTES(decode(payload, table, 0, 32), none);
  });
}

TEST(rans, every_symbol_value) {
  std::vector<uint8_t> symbols;
  for (int round = 0; round < 37; ++round) {
    for (int s = 0; s < 256; ++s) symbols.push_back(static_cast<uint8_t>((s * 7 + round) & 255));
  }
  check_round_trip(symbols, table_for(symbols));
}

TEST(rans, paired_decode_matches) {
  tztest::Rng rng(4);
  for (size_t na : {size_t{0}, size_t{31}, size_t{64}, size_t{1000}, size_t{8192}, size_t{20'001}}) {
    for (size_t nb : {size_t{32}, size_t{999}, size_t{8192}}) {
      const std::vector<uint8_t> a = skewed(rng, na);
      std::vector<uint8_t> b = uniform(rng, nb);
      b[0] = 0;
      b[1] = 1;
      const FrequencyTable ta = table_for(a, 3);
      const FrequencyTable tb = table_for(b);
      const std::vector<uint8_t> pa = encode(a, ta);
      const std::vector<uint8_t> pb = encode(b, tb);
      tztest::for_each_simd_cap([&](SimdCap) {
        std::vector<uint32_t> sa(kProbScale), sb(kProbScale);
        RansDecoder da(pa.data(), pa.size(), ta, sa.data());
        RansDecoder db(pb.data(), pb.size(), tb, sb.data());
        std::vector<uint8_t> oa(na), ob(nb);
        // As chunk_codec does: the shared whole rounds paired, the rest alone.
        const size_t shared = std::min(na, nb) / kRansLanes * kRansLanes;
        decode_pair(da, oa.data(), db, ob.data(), shared);
        da.decode(oa.data() + shared, na - shared);
        db.decode(ob.data() + shared, nb - shared);
        da.finish();
        db.finish();
        CHECK_BYTES(oa, a);
        CHECK_BYTES(ob, b);
      });
    }
  }
}

TEST(rans, payload_limit_gives_up) {
  tztest::Rng rng(5);
  std::vector<uint8_t> symbols = uniform(rng, 50'000);
  const FrequencyTable table = table_for(symbols);
  tztest::for_each_simd_cap([&](SimdCap) {
    std::vector<uint8_t> out;
    ScratchBuffer<uint16_t> words;
    // Uniform bytes cannot shrink: any limit below their size must fail.
    CHECK(!rans_encode(symbols.data(), symbols.size(), table, symbols.size() / 2, out, words));
    out.clear();
    CHECK(!rans_encode(symbols.data(), symbols.size(), table, symbols.size(), out, words));
    out.clear();
    CHECK(rans_encode(symbols.data(), symbols.size(), table, kNoLimit, out, words));
    // The limit is inclusive: exactly the payload size succeeds, one less fails.
    const size_t exact = out.size();
    std::vector<uint8_t> again;
    CHECK(rans_encode(symbols.data(), symbols.size(), table, exact, again, words));
    CHECK_BYTES(again, out);
    again.clear();
    CHECK(!rans_encode(symbols.data(), symbols.size(), table, exact - 1, again, words));
  });
}

TEST(rans, appends_to_output) {
  tztest::Rng rng(6);
  const std::vector<uint8_t> symbols = skewed(rng, 777);
  const FrequencyTable table = table_for(symbols, 1);
  const std::vector<uint8_t> alone = encode(symbols, table);
  std::vector<uint8_t> out = {1, 2, 3};
  ScratchBuffer<uint16_t> words;
  CHECK(rans_encode(symbols.data(), symbols.size(), table, kNoLimit, out, words));
  std::vector<uint8_t> expected = {1, 2, 3};
  expected.insert(expected.end(), alone.begin(), alone.end());
  CHECK_BYTES(out, expected);
}

TEST(rans, corrupt_payloads_rejected) {
  tztest::Rng rng(8);
  const std::vector<uint8_t> symbols = skewed(rng, 5000);
  const FrequencyTable table = table_for(symbols, 1);
  const std::vector<uint8_t> payload = encode(symbols, table);
  std::vector<uint32_t> slots(kProbScale);
  tztest::for_each_simd_cap([&](SimdCap) {
    // Shorter than the states, or an odd number of word bytes.
    CHECK_THROWS(RansDecoder(payload.data(), kRansStateBytes - 1, table, slots.data()), CorruptStreamError);
    CHECK_THROWS(RansDecoder(payload.data(), payload.size() - 1, table, slots.data()), CorruptStreamError);
    // A state out of range.
    std::vector<uint8_t> bad = payload;
    const uint32_t huge = 0x80000000u;
    std::memcpy(bad.data() + 4 * 5, &huge, 4);
    CHECK_THROWS(RansDecoder(bad.data(), bad.size(), table, slots.data()), CorruptStreamError);
    // Trailing words: finish() must notice.
    bad = payload;
    bad.push_back(0);
    bad.push_back(0);
    {
      RansDecoder d(bad.data(), bad.size(), table, slots.data());
      std::vector<uint8_t> out(symbols.size());
      d.decode(out.data(), out.size());
      CHECK_THROWS(d.finish(), CorruptStreamError);
    }
    // Truncated by one word: either the decoder runs out or finish() fails.
    {
      RansDecoder d(payload.data(), payload.size() - 2, table, slots.data());
      std::vector<uint8_t> out(symbols.size());
      CHECK_THROWS((d.decode(out.data(), out.size()), d.finish()), CorruptStreamError);
    }
    // Decoding past a partial round is refused.
    {
      RansDecoder d(payload.data(), payload.size(), table, slots.data());
      std::vector<uint8_t> out(symbols.size());
      d.decode(out.data(), 33);
      CHECK_THROWS(d.decode(out.data() + 33, 32), CorruptStreamError);
    }
  });
}
