#include "context_rans.hpp"

#include <cstring>

#include "cpu_features.hpp"
#include "errors.hpp"
#include "rans.hpp"
#include "rans_kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define TZ_HAVE_X86 1
#endif

namespace tensorzip {

namespace {

using namespace rans_detail;

// Full rounds while at least 2 * kRansLanes bytes remain, so no read passes the end.
size_t decode_rounds_scalar(uint32_t* state, const uint32_t* slots, ContextRange range,
                            const uint8_t* contexts, const uint8_t*& in, const uint8_t* end, uint8_t* out,
                            size_t rounds) {
  size_t r = 0;
  for (; r < rounds && end - in >= 2 * kRansLanes; ++r) {
    for (int lane = 0; lane < kRansLanes; ++lane) {
      out[lane] = decode_one<kContextBits>(state[lane], slots + (range.table(contexts[lane]) << kContextBits), in);
    }
    out += kRansLanes;
    contexts += kRansLanes;
  }
  return r;
}

#ifdef TZ_HAVE_X86
// The eight lanes' first slot words: ContextRange::table on eight contexts.
struct RangeVectors {
  __m256i minus_first_plus_one;
  __m256i own;
};

__attribute__((target("avx2"))) inline __m256i table_offsets(const RangeVectors& range, const uint8_t* contexts) {
  const __m256i context = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(contexts)));
  const __m256i d = _mm256_add_epi32(context, range.minus_first_plus_one);
  const __m256i inside = _mm256_cmpeq_epi32(_mm256_min_epu32(d, range.own), d);
  return _mm256_slli_epi32(_mm256_and_si256(d, inside), kContextBits);
}

__attribute__((target("avx2,popcnt"))) size_t decode_rounds_avx2(uint32_t* state, const uint32_t* slots,
                                                                 ContextRange context_range,
                                                                 const uint8_t* contexts, const uint8_t*& in,
                                                                 const uint8_t* end, uint8_t* out, size_t rounds) {
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 0));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 8));
  __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 16));
  __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 24));
  const RangeVectors range{_mm256_set1_epi32(1 - static_cast<int>(context_range.first)),
                           _mm256_set1_epi32(static_cast<int>(context_range.own))};
  // A local cursor: stores to `out` (bytes, which may alias anything) would
  // otherwise make the compiler reload `in` through memory after every vector.
  const uint8_t* p = in;
  size_t r = 0;
  for (; r < rounds && end - p >= 2 * kRansLanes; ++r) {
    x0 = decode_vector_avx2<kContextBits>(x0, table_offsets(range, contexts + 0), slots, p, out + 0);
    x1 = decode_vector_avx2<kContextBits>(x1, table_offsets(range, contexts + 8), slots, p, out + 8);
    x2 = decode_vector_avx2<kContextBits>(x2, table_offsets(range, contexts + 16), slots, p, out + 16);
    x3 = decode_vector_avx2<kContextBits>(x3, table_offsets(range, contexts + 24), slots, p, out + 24);
    out += kRansLanes;
    contexts += kRansLanes;
  }
  in = p;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 0), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 8), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 16), x2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 24), x3);
  return r;
}

TZ_AVX512 inline __m512i table_offsets_avx512(__m512i minus_first_plus_one, __m512i own, const uint8_t* contexts) {
  const __m512i context = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(contexts)));
  const __m512i d = _mm512_add_epi32(context, minus_first_plus_one);
  return _mm512_maskz_slli_epi32(_mm512_cmple_epu32_mask(d, own), d, kContextBits);
}

TZ_AVX512 size_t decode_rounds_avx512(uint32_t* state, const uint32_t* slots, ContextRange range,
                                      const uint8_t* contexts, const uint8_t*& in, const uint8_t* end, uint8_t* out,
                                      size_t rounds) {
  const __m512i minus_first_plus_one = _mm512_set1_epi32(1 - static_cast<int>(range.first));
  const __m512i own = _mm512_set1_epi32(static_cast<int>(range.own));
  __m512i x0 = _mm512_loadu_si512(state);
  __m512i x1 = _mm512_loadu_si512(state + 16);
  const uint8_t* p = in;  // a local cursor, as in decode_rounds_avx2
  size_t r = 0;
  for (; r < rounds && end - p >= 2 * kRansLanes; ++r) {
    x0 = decode_vector_avx512<kContextBits>(x0, table_offsets_avx512(minus_first_plus_one, own, contexts), slots, p, out);
    x1 = decode_vector_avx512<kContextBits>(x1, table_offsets_avx512(minus_first_plus_one, own, contexts + 16), slots, p,
                              out + 16);
    out += kRansLanes;
    contexts += kRansLanes;
  }
  in = p;
  _mm512_storeu_si512(state, x0);
  _mm512_storeu_si512(state + 16, x1);
  return r;
}

// Two streams in one loop: each stream's rounds are a chain of dependent gathers,
// so two keep twice as many in flight (as decode_pair in rans.cpp).
TZ_AVX512 size_t decode_pair_rounds_avx512(uint32_t* const* state, const uint32_t* const* slots,
                                           const ContextRange* range, const uint8_t* const* contexts,
                                           const uint8_t** in, const uint8_t* const* end, uint8_t* const* out,
                                           size_t rounds) {
  __m512i mf[2], own[2], x[2][2];
  const uint8_t* p[2] = {in[0], in[1]};
  for (int s = 0; s < 2; ++s) {
    mf[s] = _mm512_set1_epi32(1 - static_cast<int>(range[s].first));
    own[s] = _mm512_set1_epi32(static_cast<int>(range[s].own));
    x[s][0] = _mm512_loadu_si512(state[s]);
    x[s][1] = _mm512_loadu_si512(state[s] + 16);
  }
  size_t r = 0;
  for (; r < rounds && end[0] - p[0] >= 2 * kRansLanes && end[1] - p[1] >= 2 * kRansLanes; ++r) {
    const size_t at = r * kRansLanes;
    for (int v = 0; v < 2; ++v) {
      for (int s = 0; s < 2; ++s) {
        x[s][v] = decode_vector_avx512<kContextBits>(x[s][v], table_offsets_avx512(mf[s], own[s], contexts[s] + at + 16 * v),
                                       slots[s], p[s], out[s] + at + 16 * v);
      }
    }
  }
  for (int s = 0; s < 2; ++s) {
    in[s] = p[s];
    _mm512_storeu_si512(state[s], x[s][0]);
    _mm512_storeu_si512(state[s] + 16, x[s][1]);
  }
  return r;
}

__attribute__((target("avx2,popcnt"))) size_t decode_pair_rounds_avx2(uint32_t* const* state,
                                                                      const uint32_t* const* slots,
                                                                      const ContextRange* range,
                                                                      const uint8_t* const* contexts,
                                                                      const uint8_t** in, const uint8_t* const* end,
                                                                      uint8_t* const* out, size_t rounds) {
  RangeVectors ranges[2];
  __m256i x[2][4];
  const uint8_t* p[2] = {in[0], in[1]};
  for (int s = 0; s < 2; ++s) {
    ranges[s] = {_mm256_set1_epi32(1 - static_cast<int>(range[s].first)),
                 _mm256_set1_epi32(static_cast<int>(range[s].own))};
    for (int v = 0; v < 4; ++v) x[s][v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state[s] + 8 * v));
  }
  size_t r = 0;
  for (; r < rounds && end[0] - p[0] >= 2 * kRansLanes && end[1] - p[1] >= 2 * kRansLanes; ++r) {
    const size_t at = r * kRansLanes;
    for (int v = 0; v < 4; ++v) {
      for (int s = 0; s < 2; ++s) {
        x[s][v] = decode_vector_avx2<kContextBits>(x[s][v], table_offsets(ranges[s], contexts[s] + at + 8 * v), slots[s], p[s],
                                     out[s] + at + 8 * v);
      }
    }
  }
  for (int s = 0; s < 2; ++s) {
    in[s] = p[s];
    for (int v = 0; v < 4; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(state[s] + 8 * v), x[s][v]);
  }
  return r;
}
#endif

}  // namespace

bool context_rans_encode(const uint8_t* symbols, const uint8_t* contexts, size_t count,
                         const std::vector<FrequencyTable>& tables, ContextRange range, size_t max_payload,
                         std::vector<uint8_t>& out, ScratchBuffer<uint16_t>& words) {
  require(range.first + range.own <= 256 && tables.size() == range.own + 1, "context range does not match the tables");
  // Per table, the constants of each of its symbols, at index table * 256 + symbol.
  std::vector<EncoderSymbol> enc(tables.size() * 256);
  for (size_t t = 0; t < tables.size(); ++t) {
    for (int s = 0; s < 256; ++s) {
      if (tables[t].frequency[s]) {
        enc[t * 256 + s] = make_encoder_symbol(tables[t].cumulative[s], tables[t].frequency[s], kContextBits);
      }
    }
  }
  const size_t capacity_words = count + 2 * kRansLanes;
  // The words, then (AVX2) each symbol's index into the constants, in one scratch buffer.
  uint16_t* const scratch = words.reserve(capacity_words + count);
  uint16_t* const end = scratch + capacity_words;
  uint16_t* ptr = end;
  const size_t max_words = max_payload / 2;
  uint32_t state[kRansLanes];
  for (uint32_t& x : state) x = kStateLow;
  // Backwards, as the decoder reads forwards; lane i % 32 as in the order-0 coder:
  // the partial last round first, then full rounds.
  const size_t rounds = count / kRansLanes;
  size_t i = count;
  while (i > rounds * kRansLanes) {
    --i;
    encode_one(state[i % kRansLanes], enc[range.table(contexts[i]) * 256 + symbols[i]], ptr);
  }
  bool ok = true;
#ifdef TZ_HAVE_X86
  if (rans_encode_path() == RansPath::kAvx2) {
    std::vector<uint64_t> packed(enc.size(), 0);
    for (size_t t = 0; t < tables.size(); ++t) {
      for (int s = 0; s < 256; ++s) {
        if (tables[t].frequency[s]) packed[t * 256 + s] = pack_encoder_symbol<kContextBits>(enc[t * 256 + s]);
      }
    }
    uint16_t* const index = end;  // after the words' room
    for (size_t j = 0; j < rounds * kRansLanes; ++j) {
      index[j] = static_cast<uint16_t>(range.table(contexts[j]) * 256 + symbols[j]);
    }
    ok = encode_rounds_avx2<kContextBits>(state, index, rounds, packed.data(), ptr, end, max_words);
    i = 0;
  }
#endif
  while (ok && i > 0) {
    --i;
    encode_one(state[i % kRansLanes], enc[range.table(contexts[i]) * 256 + symbols[i]], ptr);
    if ((i & 4095) == 0 && static_cast<size_t>(end - ptr) > max_words) ok = false;
  }
  return ok && frame_stream(state, ptr, end, max_payload, out);
}

void fill_context_slots(const FrequencyTable& table, uint32_t* slots) { fill_slots(table, slots); }

ContextRansDecoder::ContextRansDecoder(const uint8_t* payload, size_t length, ContextRange range,
                                       const uint32_t* slot_tables)
    : range_(range), in_(payload), end_(payload + length), slots_(slot_tables) {
  require(range.first + range.own <= 256, "context range runs past context 255");
  require_stream(length >= kRansStateBytes && (length - kRansStateBytes) % 2 == 0,
                 "context rANS payload has an impossible length");
  in_ = payload + kRansStateBytes;  // only once the payload is known to hold the states
  std::memcpy(state_, payload, kRansStateBytes);
  for (uint32_t x : state_) {
    require_stream(x >= kStateLow && x < (kStateLow << 16), "context rANS payload starts with an invalid state");
  }
}

void ContextRansDecoder::decode(const uint8_t* contexts, uint8_t* symbols, size_t count) {
  require_stream(!misaligned_, "context rANS stream decoded past a partial round");
  const size_t rounds = count / kRansLanes;
  size_t done = 0;
#ifdef TZ_HAVE_X86
  switch (rans_decode_path()) {
    case RansPath::kAvx512: done = decode_rounds_avx512(state_, slots_, range_, contexts, in_, end_, symbols, rounds); break;
    case RansPath::kAvx2: done = decode_rounds_avx2(state_, slots_, range_, contexts, in_, end_, symbols, rounds); break;
    case RansPath::kScalar: break;
  }
#endif
  done += decode_rounds_scalar(state_, slots_, range_, contexts + done * kRansLanes, in_, end_,
                               symbols + done * kRansLanes, rounds - done);
  for (size_t i = done * kRansLanes; i < count; ++i) {
    symbols[i] = decode_one_checked<kContextBits>(state_[i % kRansLanes],
                                                  slots_ + (range_.table(contexts[i]) << kContextBits), in_, end_,
                                                  "context rANS payload is truncated");
  }
  misaligned_ = count % kRansLanes != 0;
}

void decode_pair(ContextRansDecoder& a, const uint8_t* contexts_a, uint8_t* out_a, ContextRansDecoder& b,
                 const uint8_t* contexts_b, uint8_t* out_b, size_t count) {
  require_stream(!a.misaligned_ && !b.misaligned_, "context rANS stream decoded past a partial round");
  const size_t rounds = count / kRansLanes;
  size_t done = 0;
#ifdef TZ_HAVE_X86
  uint32_t* state[2] = {a.state_, b.state_};
  const uint32_t* slots[2] = {a.slots_, b.slots_};
  const ContextRange range[2] = {a.range_, b.range_};
  const uint8_t* contexts[2] = {contexts_a, contexts_b};
  const uint8_t* in[2] = {a.in_, b.in_};
  const uint8_t* end[2] = {a.end_, b.end_};
  uint8_t* out[2] = {out_a, out_b};
  switch (rans_decode_path()) {
    case RansPath::kAvx512: done = decode_pair_rounds_avx512(state, slots, range, contexts, in, end, out, rounds); break;
    case RansPath::kAvx2: done = decode_pair_rounds_avx2(state, slots, range, contexts, in, end, out, rounds); break;
    case RansPath::kScalar: break;
  }
  a.in_ = in[0];
  b.in_ = in[1];
#endif
  const size_t at = done * kRansLanes;
  a.decode(contexts_a + at, out_a + at, count - at);
  b.decode(contexts_b + at, out_b + at, count - at);
}

void ContextRansDecoder::finish() const {
  require_stream(in_ == end_, "context rANS payload has trailing bytes");
  for (uint32_t x : state_) {
    require_stream(x == kStateLow, "context rANS payload does not end in its initial state");
  }
}

}  // namespace tensorzip
