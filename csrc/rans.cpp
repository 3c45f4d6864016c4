#include "rans.hpp"

#include <array>
#include <cstring>
#include <memory>

#include "cpu_features.hpp"
#include "errors.hpp"
#include "rans_kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define TZ_HAVE_X86 1
#endif

namespace tensorzip {

namespace {

using namespace rans_detail;

// Full rounds (one symbol per lane) while at least 2 * kRansLanes bytes remain,
// so no read can pass the end. Returns the rounds done.
size_t decode_rounds_scalar(uint32_t* state, const uint32_t* slots, const uint8_t*& in, const uint8_t* end,
                            uint8_t* out, size_t rounds) {
  size_t r = 0;
  for (; r < rounds && end - in >= 2 * kRansLanes; ++r) {
    for (int lane = 0; lane < kRansLanes; ++lane) out[lane] = decode_one(state[lane], slots, in);
    out += kRansLanes;
  }
  return r;
}

#ifdef TZ_HAVE_X86
__attribute__((target("avx2,popcnt"))) size_t decode_rounds_avx2(uint32_t* state, const uint32_t* slots,
                                                                 const uint8_t*& in, const uint8_t* end,
                                                                 uint8_t* out, size_t rounds) {
  static_assert(kRansLanes == 32, "four vectors of eight lanes");
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 0));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 8));
  __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 16));
  __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 24));
  const __m256i zero = _mm256_setzero_si256();  // one table: no table offset
  size_t r = 0;
  // Each vector reads 16 bytes at most 2 * 24 bytes past the round's start.
  for (; r < rounds && end - in >= 2 * kRansLanes; ++r) {
    x0 = decode_vector_avx2(x0, zero, slots, in, out + 0);
    x1 = decode_vector_avx2(x1, zero, slots, in, out + 8);
    x2 = decode_vector_avx2(x2, zero, slots, in, out + 16);
    x3 = decode_vector_avx2(x3, zero, slots, in, out + 24);
    out += kRansLanes;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 0), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 8), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 16), x2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 24), x3);
  return r;
}


TZ_AVX512 size_t decode_rounds_avx512(uint32_t* state, const uint32_t* slots, const uint8_t*& in,
                                      const uint8_t* end, uint8_t* out, size_t rounds) {
  __m512i x0 = _mm512_loadu_si512(state);
  __m512i x1 = _mm512_loadu_si512(state + 16);
  const __m512i zero = _mm512_setzero_si512();  // one table: no table offset
  size_t r = 0;
  // The second vector reads 32 bytes at most 32 bytes past the round's start.
  for (; r < rounds && end - in >= 2 * kRansLanes; ++r) {
    x0 = decode_vector_avx512(x0, zero, slots, in, out);
    x1 = decode_vector_avx512(x1, zero, slots, in, out + 16);
    out += kRansLanes;
  }
  _mm512_storeu_si512(state, x0);
  _mm512_storeu_si512(state + 16, x1);
  return r;
}

TZ_AVX512 size_t decode_pair_rounds_avx512(uint32_t* state_a, const uint32_t* slots_a, const uint8_t*& in_a,
                                           const uint8_t* end_a, uint8_t* out_a, uint32_t* state_b,
                                           const uint32_t* slots_b, const uint8_t*& in_b, const uint8_t* end_b,
                                           uint8_t* out_b, size_t rounds) {
  __m512i a0 = _mm512_loadu_si512(state_a);
  __m512i a1 = _mm512_loadu_si512(state_a + 16);
  __m512i b0 = _mm512_loadu_si512(state_b);
  __m512i b1 = _mm512_loadu_si512(state_b + 16);
  const __m512i zero = _mm512_setzero_si512();
  size_t r = 0;
  for (; r < rounds && end_a - in_a >= 2 * kRansLanes && end_b - in_b >= 2 * kRansLanes; ++r) {
    a0 = decode_vector_avx512(a0, zero, slots_a, in_a, out_a);
    b0 = decode_vector_avx512(b0, zero, slots_b, in_b, out_b);
    a1 = decode_vector_avx512(a1, zero, slots_a, in_a, out_a + 16);
    b1 = decode_vector_avx512(b1, zero, slots_b, in_b, out_b + 16);
    out_a += kRansLanes;
    out_b += kRansLanes;
  }
  _mm512_storeu_si512(state_a, a0);
  _mm512_storeu_si512(state_a + 16, a1);
  _mm512_storeu_si512(state_b, b0);
  _mm512_storeu_si512(state_b + 16, b1);
  return r;
}

__attribute__((target("avx2,popcnt"))) size_t decode_pair_rounds_avx2(
    uint32_t* state_a, const uint32_t* slots_a, const uint8_t*& in_a, const uint8_t* end_a, uint8_t* out_a,
    uint32_t* state_b, const uint32_t* slots_b, const uint8_t*& in_b, const uint8_t* end_b, uint8_t* out_b,
    size_t rounds) {
  __m256i a[4];
  __m256i b[4];
  const __m256i zero = _mm256_setzero_si256();  // one table: no table offset
  for (int v = 0; v < 4; ++v) {
    a[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state_a + 8 * v));
    b[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state_b + 8 * v));
  }
  size_t r = 0;
  for (; r < rounds && end_a - in_a >= 2 * kRansLanes && end_b - in_b >= 2 * kRansLanes; ++r) {
    for (int v = 0; v < 4; ++v) {
      a[v] = decode_vector_avx2(a[v], zero, slots_a, in_a, out_a + 8 * v);
      b[v] = decode_vector_avx2(b[v], zero, slots_b, in_b, out_b + 8 * v);
    }
    out_a += kRansLanes;
    out_b += kRansLanes;
  }
  for (int v = 0; v < 4; ++v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(state_a + 8 * v), a[v]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(state_b + 8 * v), b[v]);
  }
  return r;
}

#endif

}  // namespace

bool rans_encode(const uint8_t* symbols, size_t count, const FrequencyTable& table, size_t max_payload,
                 std::vector<uint8_t>& out, ScratchBuffer<uint16_t>& words) {
  EncoderSymbol enc[256];
  for (int s = 0; s < 256; ++s) {
    if (table.frequency[s]) enc[s] = make_encoder_symbol(table.cumulative[s], table.frequency[s]);
  }
  // At most one 16-bit word leaves a state per symbol; the slack lets the
  // branch-free loops always write below the current position (the AVX2 loop
  // stores eight words at a time).
  const size_t capacity_words = count + 2 * kRansLanes;
  uint16_t* const end = words.reserve(capacity_words) + capacity_words;
  uint16_t* ptr = end;
  const size_t max_words = max_payload / 2;

  uint32_t state[kRansLanes];
  for (uint32_t& x : state) x = kStateLow;

  // Walk backwards (the decoder consumes forwards): the partial last round
  // first, then full rounds.
  const size_t rounds = count / kRansLanes;
  size_t i = count;
  while (i > rounds * kRansLanes) {
    --i;
    encode_one(state[i % kRansLanes], enc[symbols[i]], ptr);
  }
  bool ok = true;
#ifdef TZ_HAVE_X86
  if (rans_encode_path() == RansPath::kAvx2) {
    uint64_t packed[256];
    for (int s = 0; s < 256; ++s) packed[s] = table.frequency[s] ? pack_encoder_symbol(enc[s]) : 0;
    ok = encode_rounds_avx2(state, symbols, rounds, packed, ptr, end, max_words);
    i = 0;
  }
#endif
  while (ok && i > 0) {
    --i;
    encode_one(state[i % kRansLanes], enc[symbols[i]], ptr);
    if ((i & 4095) == 0 && static_cast<size_t>(end - ptr) > max_words) ok = false;
  }
  return ok && frame_stream(state, ptr, end, max_payload, out);
}

RansDecoder::RansDecoder(const uint8_t* payload, size_t length, const FrequencyTable& table,
                         uint32_t* slot_table)
    : in_(payload + kRansStateBytes), end_(payload + length), slots_(slot_table) {
  require_stream(length >= kRansStateBytes && (length - kRansStateBytes) % 2 == 0,
                 "rANS payload has an impossible length");
  fill_slots(table, slot_table);
  std::memcpy(state_, payload, kRansStateBytes);
  for (uint32_t x : state_) {
    require_stream(x >= kStateLow && x < (kStateLow << 16), "rANS payload starts with an invalid state");
  }
}

void RansDecoder::decode(uint8_t* symbols, size_t count) {
  require_stream(!misaligned_, "rANS stream decoded past a partial round");
  const size_t rounds = count / kRansLanes;
  size_t done = 0;
#ifdef TZ_HAVE_X86
  switch (rans_decode_path()) {
    case RansPath::kAvx512: done = decode_rounds_avx512(state_, slots_, in_, end_, symbols, rounds); break;
    case RansPath::kAvx2: done = decode_rounds_avx2(state_, slots_, in_, end_, symbols, rounds); break;
    case RansPath::kScalar: break;
  }
#endif
  done += decode_rounds_scalar(state_, slots_, in_, end_, symbols + done * kRansLanes, rounds - done);
  // Near the end of the payload: bounds-checked, one symbol at a time.
  for (size_t i = done * kRansLanes; i < count; ++i) {
    symbols[i] = decode_one_checked(state_[i % kRansLanes], slots_, in_, end_, "rANS payload is truncated");
  }
  misaligned_ = count % kRansLanes != 0;
}

void decode_pair(RansDecoder& a, uint8_t* out_a, RansDecoder& b, uint8_t* out_b, size_t count) {
  require_stream(!a.misaligned_ && !b.misaligned_, "rANS stream decoded past a partial round");
  const size_t rounds = count / kRansLanes;
  size_t done = 0;
#ifdef TZ_HAVE_X86
  switch (rans_decode_path()) {
    case RansPath::kAvx512:
      done = decode_pair_rounds_avx512(a.state_, a.slots_, a.in_, a.end_, out_a, b.state_, b.slots_, b.in_, b.end_,
                                       out_b, rounds);
      break;
    case RansPath::kAvx2:
      done = decode_pair_rounds_avx2(a.state_, a.slots_, a.in_, a.end_, out_a, b.state_, b.slots_, b.in_, b.end_,
                                     out_b, rounds);
      break;
    case RansPath::kScalar: break;
  }
#endif
  // The rest (and everything without SIMD) one stream at a time.
  a.decode(out_a + done * kRansLanes, count - done * kRansLanes);
  b.decode(out_b + done * kRansLanes, count - done * kRansLanes);
}

void RansDecoder::finish() const {
  require_stream(in_ == end_, "rANS payload has trailing bytes");
  for (uint32_t x : state_) require_stream(x == kStateLow, "rANS payload does not end in its initial state");
}

}  // namespace tensorzip
