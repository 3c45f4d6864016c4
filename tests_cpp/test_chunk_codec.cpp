// Chunks: round trips of every width and plane mode (raw, constant, rANS) on every
// SIMD path with identical bytes, paired decoding, whole tensors through the
// threaded batch API with CRC-32C, and corrupted chunks rejected.
#include <algorithm>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "chunk_codec.hpp"
#include "crc32c.hpp"
#include "delta.hpp"
#include "errors.hpp"
#include "tensor_codec.hpp"

using namespace tensorzip;

namespace {

// bf16-like weights: a narrow band of exponents, random sign and mantissa.
std::vector<uint8_t> weights(tztest::Rng& rng, size_t count) {
  std::vector<uint8_t> out(count * 2);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t r = rng.next();
    const uint16_t exponent = static_cast<uint16_t>(118 + (r & 3) + ((r >> 2) & 1));
    const uint16_t v = static_cast<uint16_t>(((r >> 8) & 1) << 15 | exponent << 7 | ((r >> 16) & 0x7F));
    std::memcpy(out.data() + 2 * i, &v, 2);
  }
  return out;
}

std::vector<uint8_t> encode(const std::vector<uint8_t>& elements, int width, int rotate) {
  ChunkScratch scratch;
  std::vector<uint8_t> out;
  std::vector<ByteHistogram> histograms(width, ByteHistogram{});
  encode_chunk(elements.data(), elements.size() / width, width, rotate, false, scratch, out, histograms.data());
  uint64_t counted = 0;
  for (const ByteHistogram& h : histograms) {
    for (uint64_t c : h) counted += c;
  }
  CHECK_EQ(counted, uint64_t{elements.size()});  // every byte of every plane counted once
  return out;
}

std::vector<uint8_t> decode(const std::vector<uint8_t>& chunk, size_t count, int width, int rotate) {
  ChunkScratch scratch;
  std::vector<uint8_t> out(count * width + 1, 0xEE);
  decode_chunk(chunk.data(), chunk.size(), count, width, rotate, false, scratch, out.data());
  CHECK_EQ(out.back(), 0xEE);
  out.pop_back();
  return out;
}

PlaneMode mode_of(const std::vector<uint8_t>& chunk, int plane) { return static_cast<PlaneMode>(chunk[1 + 5 * plane]); }

void check_round_trip(const std::vector<uint8_t>& elements, int width, int rotate) {
  std::vector<uint8_t> reference;
  bool first = true;
  tztest::for_each_simd_cap([&](SimdCap) {
    const std::vector<uint8_t> chunk = encode(elements, width, rotate);
    if (first) {
      reference = chunk;
      first = false;
    }
    CHECK_BYTES(chunk, reference);
    CHECK_BYTES(decode(chunk, elements.size() / width, width, rotate), elements);
  });
}

}  // namespace

TEST(chunk_codec, round_trip_every_width_and_mode) {
  tztest::Rng rng(40);
  for (int width : {1, 2, 4, 8}) {
    for (int rotate : {0, 1}) {
      for (size_t count : {size_t{1}, size_t{31}, size_t{32}, size_t{1000}, size_t{8192}, size_t{8193},
                           size_t{20'000}}) {
        check_round_trip(rng.bytes(count * width), width, rotate);  // random: raw planes
        std::vector<uint8_t> small(count * width);                  // small integers: rANS and constant planes
        for (size_t i = 0; i < count; ++i) small[i * width] = static_cast<uint8_t>(rng.below(5));
        check_round_trip(small, width, rotate);
        check_round_trip(std::vector<uint8_t>(count * width, 0x5A), width, rotate);  // constant
      }
    }
  }
}

TEST(chunk_codec, plane_modes) {
  tztest::Rng rng(41);
  const size_t count = 20'000;
  // bf16 weights, rotated: plane 0 (exponent) is coded, plane 1 (mantissa + sign) stays raw.
  const std::vector<uint8_t> w = weights(rng, count);
  std::vector<uint8_t> chunk = encode(w, 2, 1);
  CHECK_EQ(chunk[0], 2);
  CHECK_EQ(mode_of(chunk, 0), PlaneMode::kRans);
  CHECK_EQ(mode_of(chunk, 1), PlaneMode::kRaw);
  CHECK(chunk.size() < w.size() * 3 / 4);
  check_round_trip(w, 2, 1);
  // Constant planes are one byte each.
  chunk = encode(std::vector<uint8_t>(count * 4, 0x11), 4, 0);
  for (int k = 0; k < 4; ++k) CHECK_EQ(mode_of(chunk, k), PlaneMode::kConstant);
  CHECK_EQ(chunk.size(), size_t{1 + 4 * 5 + 4});
}

TEST(chunk_codec, pairs_decode_like_singles) {
  tztest::Rng rng(42);
  const std::vector<uint8_t> a = weights(rng, 20'001);
  const std::vector<uint8_t> b = weights(rng, 9'000);
  const std::vector<uint8_t> ca = encode(a, 2, 1);
  const std::vector<uint8_t> cb = encode(b, 2, 1);
  tztest::for_each_simd_cap([&](SimdCap) {
    std::vector<uint8_t> oa(a.size()), ob(b.size());
    const ChunkToDecode pair[2] = {{ca.data(), ca.size(), 20'001, 2, 1, false, oa.data()},
                                   {cb.data(), cb.size(), 9'000, 2, 1, false, ob.data()}};
    ChunkScratch scratch;
    decode_chunks(pair, 2, scratch);
    CHECK_BYTES(oa, a);
    CHECK_BYTES(ob, b);
  });
}

TEST(chunk_codec, corrupted_chunks_rejected) {
  tztest::Rng rng(43);
  const size_t count = 5000;
  const std::vector<uint8_t> w = weights(rng, count);
  const std::vector<uint8_t> chunk = encode(w, 2, 1);
  REQUIRE(mode_of(chunk, 0) == PlaneMode::kRans);
  auto decode_n = [&](const std::vector<uint8_t>& bytes, size_t n) {
    ChunkScratch scratch;
    std::vector<uint8_t> out(n * 2);
    decode_chunk(bytes.data(), bytes.size(), n, 2, 1, false, scratch, out.data());
  };
  auto decodes = [&](const std::vector<uint8_t>& bytes) { decode_n(bytes, count); };
  decodes(chunk);  // the intact chunk decodes
  tztest::for_each_simd_cap([&](SimdCap) {
    std::vector<uint8_t> bad = chunk;
    bad[0] = 4;  // plane count differs from the width
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    bad = chunk;
    bad[1] = 9;  // unknown plane mode
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    bad = chunk;
    bad[2] ^= 0x01;  // plane 0's body length off by one
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    bad = chunk;
    bad.pop_back();  // truncated
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    bad = chunk;
    bad.push_back(0);  // trailing byte
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    bad.assign(chunk.begin(), chunk.begin() + 5);  // shorter than the directory
    CHECK_THROWS(decodes(bad), CorruptStreamError);
    CHECK_THROWS(decode_n(chunk, count + 1), CorruptStreamError);  // raw plane of the wrong length
    // The rANS payload's first state (just after plane 0's table) pushed out of range.
    bad = chunk;
    size_t table_size = 0;
    FrequencyTable::parse(chunk.data() + 11, chunk.size() - 11, &table_size);
    bad[11 + table_size + 3] = 0xFF;
    CHECK_THROWS(decodes(bad), CorruptStreamError);
  });
}

TEST(chunk_codec, tensors_round_trip_with_checksums) {
  tztest::Rng rng(44);
  const std::vector<uint8_t> t0 = weights(rng, 70'001);
  const std::vector<uint8_t> t1 = rng.bytes(8 * 3'333);
  std::vector<EncodeJob> jobs(2);
  jobs[0] = {t0.data(), t0.size(), TensorLayout{2, 1, 4'099}};
  jobs[1] = {t1.data(), t1.size(), TensorLayout{8, 0, 1'000}};
  std::vector<std::vector<uint8_t>> reference;
  tztest::for_each_simd_cap([&](SimdCap) {
    EncodeArena arena;
    encode_tensors(jobs, 2, arena);
    std::vector<std::vector<uint8_t>> chunks;
    for (size_t c = 0; c < arena.chunks.size(); ++c) {
      CHECK_EQ(arena.chunks[c].crc32c, crc32c(arena.chunks[c].bytes.data(), arena.chunks[c].bytes.size()));
      chunks.push_back(arena.chunks[c].bytes);
    }
    if (reference.empty()) reference = chunks;
    CHECK(chunks == reference);  // byte-identical on every path and thread schedule
    CHECK_EQ(arena.first_chunk[1], chunk_count(70'001, 4'099));
    // Lay the chunks out in one source buffer and decode both tensors back.
    std::vector<uint8_t> source;
    std::vector<DecodeJob> decode_jobs(2);
    std::vector<uint8_t> o0(t0.size()), o1(t1.size());
    decode_jobs[0].out = o0.data();
    decode_jobs[0].out_length = o0.size();
    decode_jobs[0].layout = jobs[0].layout;
    decode_jobs[1].out = o1.data();
    decode_jobs[1].out_length = o1.size();
    decode_jobs[1].layout = jobs[1].layout;
    for (size_t c = 0; c < arena.chunks.size(); ++c) {
      const size_t job = c < arena.first_chunk[1] ? 0 : 1;
      decode_jobs[job].chunks.push_back({source.size(), arena.chunks[c].bytes.size(), arena.chunks[c].crc32c});
      source.insert(source.end(), arena.chunks[c].bytes.begin(), arena.chunks[c].bytes.end());
    }
    for (DecodeJob& job : decode_jobs) {
      job.source = source.data();
      job.source_length = source.size();
    }
    decode_tensors(decode_jobs, 2, true);
    CHECK_BYTES(o0, t0);
    CHECK_BYTES(o1, t1);
  });
}

TEST(chunk_codec, residual_chunks_restored_while_decoding) {
  // A fine-tune against its base: the stored residual decodes straight to the tuned
  // tensor when the job names the base (each chunk restored as it decodes).
  tztest::Rng rng(45);
  const size_t count = 50'001;
  const std::vector<uint8_t> base = weights(rng, count);
  std::vector<uint8_t> tuned = base;
  for (size_t i = 0; i < count; i += 7) tuned[2 * i] ^= static_cast<uint8_t>(rng.next() & 0x0F);
  for (const DeltaMode mode : {DeltaMode::kXor, DeltaMode::kSub}) {
    std::vector<uint8_t> stored(tuned.size());
    delta_residual(tuned.data(), base.data(), stored.data(), count, 2, mode, true, 1);
    std::vector<EncodeJob> jobs = {{stored.data(), stored.size(), TensorLayout{2, 1, 4'096}}};
    EncodeArena arena;
    encode_tensors(jobs, 1, arena);
    std::vector<uint8_t> source;
    DecodeJob job;
    for (const EncodedChunk& chunk : arena.chunks) {
      job.chunks.push_back({source.size(), chunk.bytes.size(), chunk.crc32c});
      source.insert(source.end(), chunk.bytes.begin(), chunk.bytes.end());
    }
    job.source = source.data();
    job.source_length = source.size();
    job.layout = jobs[0].layout;
    job.base = base.data();
    job.delta_mode = mode;
    job.delta_float = true;
    tztest::for_each_simd_cap([&](SimdCap) {
      for (const int threads : {1, 2}) {
        std::vector<uint8_t> out(tuned.size());
        job.out = out.data();
        job.out_length = out.size();
        decode_tensors({job}, threads, true);
        CHECK_BYTES(out, tuned);
      }
    });
  }
}

TEST(chunk_codec, every_bit_flip_fails_the_checksum) {
  tztest::Rng rng(45);
  const std::vector<uint8_t> w = weights(rng, 600);
  std::vector<EncodeJob> jobs = {{w.data(), w.size(), TensorLayout{2, 1, 600}}};
  EncodeArena arena;
  encode_tensors(jobs, 1, arena);
  std::vector<uint8_t> source = arena.chunks[0].bytes;
  std::vector<uint8_t> out(w.size());
  DecodeJob job;
  job.source = source.data();
  job.source_length = source.size();
  job.chunks = {{0, source.size(), arena.chunks[0].crc32c}};
  job.out = out.data();
  job.out_length = out.size();
  job.layout = jobs[0].layout;
  decode_tensors({job}, 1, true);
  CHECK_BYTES(out, w);
  tztest::for_each_simd_cap([&](SimdCap) {
    int rejected = 0;
    for (size_t bit = 0; bit < 8 * source.size(); ++bit) {
      source[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      try {
        decode_tensors({job}, 1, true);
      } catch (const ChunkError& e) {
        if (std::strstr(e.what(), "CRC-32C") != nullptr && e.job == 0 && e.chunk == 0) ++rejected;
      }
      source[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
    CHECK_EQ(rejected, static_cast<int>(8 * source.size()));
  });
  // A wrong chunk count for the shape is refused before any decoding.
  job.chunks.push_back({0, 1, 0});
  CHECK_THROWS(decode_tensors({job}, 1, true), ChunkError);
}
