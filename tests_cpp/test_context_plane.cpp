// Plane mode 3 (plane 1 coded given plane 0; issue 22's `max` level): round trips on
// every SIMD path with identical bytes (the encoder is scalar, the decoder has AVX-512,
// AVX2 and scalar paths, the low bits a BMI2 and a portable merge), paired decoding,
// chunks where the model does not pay, and corrupted or disallowed bodies rejected.
#include <cmath>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "chunk_codec.hpp"
#include "errors.hpp"

using namespace tensorzip;

namespace {

// Trained-weight-like values: normal, so within each exponent the top mantissa bits
// are not uniform (values crowd the low end of a binade's range in the tails).
std::vector<uint8_t> normal_weights(tztest::Rng& rng, size_t count, int width, double scale) {
  std::vector<uint8_t> out(count * width);
  for (size_t i = 0; i < count; ++i) {
    const double u1 = (static_cast<double>(rng.next() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = static_cast<double>(rng.next() >> 11) / 9007199254740992.0;
    const float x = static_cast<float>(scale * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if (width == 2) {
      const uint16_t b = static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);  // bf16, nearest even
      std::memcpy(out.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(out.data() + 4 * i, &bits, 4);
    }
  }
  return out;
}

std::vector<uint8_t> encode(const std::vector<uint8_t>& elements, int width, bool context) {
  ChunkScratch scratch;
  std::vector<uint8_t> out;
  std::vector<ByteHistogram> histograms(width, ByteHistogram{});
  encode_chunk(elements.data(), elements.size() / width, width, 1, context, scratch, out, histograms.data());
  return out;
}

std::vector<uint8_t> decode(const std::vector<uint8_t>& chunk, size_t count, int width, bool context) {
  ChunkScratch scratch;
  std::vector<uint8_t> out(count * width + 1, 0xEE);
  decode_chunk(chunk.data(), chunk.size(), count, width, 1, context, scratch, out.data());
  CHECK_EQ(out.back(), 0xEE);
  out.pop_back();
  return out;
}

PlaneMode plane1_mode(const std::vector<uint8_t>& chunk) { return static_cast<PlaneMode>(chunk[1 + 5]); }

}  // namespace

TEST(context_plane, round_trips_with_the_same_bytes_on_every_path) {
  tztest::Rng rng(2201);
  // Sizes around the 32 lanes, the groups of 8 low bits and the 8192-element blocks.
  for (const size_t count : {size_t{131'072}, size_t{70'001}, size_t{8'193}, size_t{4'099}}) {
    for (const int width : {2, 4}) {
      const std::vector<uint8_t> w = normal_weights(rng, count, width, 0.05);
      std::vector<uint8_t> reference;
      bool first = true;
      tztest::for_each_simd_cap([&](SimdCap) {
        const std::vector<uint8_t> chunk = encode(w, width, true);
        if (first) {
          reference = chunk;
          first = false;
          // Large chunks pay for their tables; small ones (a few thousand elements of
          // these synthetic weights) do not and keep the default modes.
          if (count >= 70'001) CHECK(plane1_mode(chunk) == PlaneMode::kContext);
          if (plane1_mode(chunk) == PlaneMode::kContext) CHECK(chunk.size() < encode(w, width, false).size());
        }
        CHECK_BYTES(chunk, reference);
        CHECK_BYTES(decode(chunk, count, width, true), w);
      });
    }
  }
}

TEST(context_plane, pairs_decode_like_singles) {
  tztest::Rng rng(2202);
  const std::vector<uint8_t> a = normal_weights(rng, 40'000, 2, 0.02);
  const std::vector<uint8_t> b = normal_weights(rng, 40'000, 2, 0.5);  // other exponents, other range
  const std::vector<uint8_t> c = normal_weights(rng, 23'000, 2, 0.1);  // a shorter partner
  const std::vector<uint8_t> ca = encode(a, 2, true), cb = encode(b, 2, true), cc = encode(c, 2, true);
  REQUIRE(plane1_mode(ca) == PlaneMode::kContext && plane1_mode(cb) == PlaneMode::kContext);
  tztest::for_each_simd_cap([&](SimdCap) {
    std::vector<uint8_t> oa(a.size()), ob(b.size()), oc(c.size());
    ChunkScratch scratch;
    const ChunkToDecode pair[2] = {{ca.data(), ca.size(), 40'000, 2, 1, true, oa.data()},
                                   {cb.data(), cb.size(), 40'000, 2, 1, true, ob.data()}};
    decode_chunks(pair, 2, scratch);
    CHECK_BYTES(oa, a);
    CHECK_BYTES(ob, b);
    const ChunkToDecode uneven[2] = {{ca.data(), ca.size(), 40'000, 2, 1, true, oa.data()},
                                     {cc.data(), cc.size(), 23'000, 2, 1, true, oc.data()}};
    decode_chunks(uneven, 2, scratch);
    CHECK_BYTES(oa, a);
    CHECK_BYTES(oc, c);
  });
}

TEST(context_plane, not_chosen_where_it_does_not_pay) {
  tztest::Rng rng(2203);
  // Uniform bytes: plane 1 tells nothing given plane 0, so mode 3 must lose.
  const std::vector<uint8_t> noise = rng.bytes(2 * 50'000);
  const std::vector<uint8_t> chunk = encode(noise, 2, true);
  CHECK(plane1_mode(chunk) != PlaneMode::kContext);
  CHECK_BYTES(chunk, encode(noise, 2, false));
  CHECK_BYTES(decode(chunk, 50'000, 2, true), noise);
  // Too few elements to pay for 32 states and a table.
  const std::vector<uint8_t> tiny = normal_weights(rng, 40, 2, 0.05);
  CHECK(plane1_mode(encode(tiny, 2, true)) != PlaneMode::kContext);
}

TEST(context_plane, disallowed_or_corrupted_bodies_rejected) {
  tztest::Rng rng(2204);
  const size_t count = 30'000;
  const std::vector<uint8_t> w = normal_weights(rng, count, 2, 0.05);
  const std::vector<uint8_t> chunk = encode(w, 2, true);
  REQUIRE(plane1_mode(chunk) == PlaneMode::kContext);
  // A tensor whose codec config does not allow mode 3.
  CHECK_THROWS(decode(chunk, count, 2, false), CorruptStreamError);
  uint32_t plane0_length;
  std::memcpy(&plane0_length, chunk.data() + 2, 4);
  const size_t body = 1 + 2 * 5 + plane0_length;  // plane 1's body
  tztest::for_each_simd_cap([&](SimdCap) {
    std::vector<uint8_t> bad = chunk;
    bad[body] = 0;  // k = 0
    CHECK_THROWS(decode(bad, count, 2, true), CorruptStreamError);
    bad = chunk;
    bad[body] = 9;  // k = 9
    CHECK_THROWS(decode(bad, count, 2, true), CorruptStreamError);
    bad = chunk;
    bad[body + 1] = 250;  // first own context 250 with as many as before: past 255
    bad[body + 2] = 10;
    CHECK_THROWS(decode(bad, count, 2, true), CorruptStreamError);
    // Every other byte of the body flipped in turn: an error or other bytes, never a crash
    // or a read out of bounds (run under ASan by tests_cpp/run.sh with TENSORZIP_SANITIZE).
    uint32_t body_length;
    std::memcpy(&body_length, chunk.data() + 7, 4);
    for (size_t i = body + 3; i < body + body_length; i += 97) {
      bad = chunk;
      bad[i] ^= 0x5A;
      try {
        const std::vector<uint8_t> out = decode(bad, count, 2, true);
        CHECK(out != w || i >= body + body_length - (count * 5 + 7) / 8);  // low bits may flip silently
      } catch (const CorruptStreamError&) {
      }
    }
  });
}
