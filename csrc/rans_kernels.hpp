// The per-symbol steps of the interleaved rANS coder, shared by the order-0 coder
// (rans.cpp) and the context-coded one (context_rans.cpp) so both write and read
// exactly the stream layout docs/format.md describes. Internal to the core.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "errors.hpp"
#include "frequency_table.hpp"
#include "rans.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace tensorzip {
namespace rans_detail {

constexpr uint32_t kStateLow = 1u << 15;  // states live in [kStateLow, kStateLow << 16)
constexpr uint32_t kSlotMask = kProbScale - 1;

// A decoder slot: symbol (8 bits) | frequency - 1 (12 bits) | slot - start (12 bits).
// Tables of fewer bits (the context coder's 10) fit the same word; every kernel
// below takes the scale's bits as a template argument, 12 by default.
static_assert(kProbBits == 12, "the packed slot word assumes at most 12-bit probabilities");
static_assert(kStateLow % kProbScale == 0, "the state interval must be a multiple of the scale");

inline uint32_t pack_slot(uint32_t symbol, uint32_t frequency, uint32_t offset) {
  return symbol | ((frequency - 1) << 8) | (offset << 20);
}

// Fills the slot words of one table (as many as its frequencies sum to).
inline void fill_slots(const FrequencyTable& table, uint32_t* slots) {
  for (int s = 0; s < 256; ++s) {
    const uint32_t f = table.frequency[s];
    if (f == 0) continue;
    const uint32_t word = pack_slot(s, f, 0);
    uint32_t* run = slots + table.cumulative[s];
    for (uint32_t k = 0; k < f; ++k) run[k] = word | (k << 20);  // vectorizes
  }
}

// Per-symbol encoder constants: division by the frequency becomes a multiply
// and shift (exact for states below 2^31).
struct EncoderSymbol {
  uint32_t renorm_limit;  // a state >= this sheds 16 bits before coding
  uint32_t reciprocal;
  uint32_t bias;
  uint32_t complement;  // kProbScale - frequency
  uint32_t shift;
};

inline EncoderSymbol make_encoder_symbol(uint32_t start, uint32_t frequency, uint32_t bits = kProbBits) {
  EncoderSymbol e{};
  e.renorm_limit = ((kStateLow >> bits) << 16) * frequency;
  e.complement = (1u << bits) - frequency;
  if (frequency < 2) {
    // q = x - 1 for every x >= 1, giving x * scale + start.
    e.reciprocal = ~0u;
    e.shift = 0;
    e.bias = start + (1u << bits) - 1;
  } else {
    uint32_t shift = 0;
    while (frequency > (1u << shift)) ++shift;
    e.reciprocal = static_cast<uint32_t>(((uint64_t{1} << (shift + 31)) + frequency - 1) / frequency);
    e.shift = shift - 1;
    e.bias = start;
  }
  return e;
}

// One symbol of one lane: writes the state's low word below ptr (keeping it
// only when the state sheds it).
inline void encode_one(uint32_t& state, const EncoderSymbol& e, uint16_t*& ptr) {
  uint32_t x = state;
  const uint32_t shed = x >= e.renorm_limit ? 1 : 0;
  ptr[-1] = static_cast<uint16_t>(x);
  ptr -= shed;
  x >>= shed << 4;  // a shift rather than a select: GCC turns the select into an unpredictable branch
  const uint32_t q = static_cast<uint32_t>((static_cast<uint64_t>(x) * e.reciprocal) >> 32) >> e.shift;
  state = x + e.bias + q * e.complement;
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// One symbol of one lane under the slot table `slots`; `in` must have two readable bytes.
template <uint32_t kBits = kProbBits>
inline uint8_t decode_one(uint32_t& state, const uint32_t* slots, const uint8_t*& in) {
  uint32_t x = state;
  const uint32_t e = slots[x & ((1u << kBits) - 1)];
  x = (((e >> 8) & kSlotMask) + 1) * (x >> kBits) + (e >> 20);
  const uint32_t word = load_u16(in);
  const bool refill = x < kStateLow;
  x = refill ? (x << 16) | word : x;
  in += refill ? 2 : 0;
  state = x;
  return static_cast<uint8_t>(e);
}

// decode_one near the end of a payload, where fewer than two bytes may remain: the
// refill is bounds-checked (`truncated` is the error a short payload raises).
template <uint32_t kBits = kProbBits>
inline uint8_t decode_one_checked(uint32_t& state, const uint32_t* slots, const uint8_t*& in, const uint8_t* end,
                                  const char* truncated) {
  uint32_t x = state;
  const uint32_t e = slots[x & ((1u << kBits) - 1)];
  x = (((e >> 8) & kSlotMask) + 1) * (x >> kBits) + (e >> 20);
  if (x < kStateLow) {
    require_stream(end - in >= 2, truncated);
    x = (x << 16) | load_u16(in);
    in += 2;
  }
  state = x;
  return static_cast<uint8_t>(e);
}

// Appends an encoded stream to out: the kRansLanes final states, then the words [ptr, end)
// (the encoder wrote them backwards, so they are already in the decoder's order).
// Returns false, appending nothing, when it would exceed max_payload bytes.
inline bool frame_stream(const uint32_t* state, const uint16_t* ptr, const uint16_t* end, size_t max_payload,
                         std::vector<uint8_t>& out) {
  const size_t word_count = static_cast<size_t>(end - ptr);
  const size_t payload = kRansStateBytes + 2 * word_count;
  if (payload > max_payload) return false;
  const size_t at = out.size();
  out.resize(at + payload);
  std::memcpy(out.data() + at, state, kRansStateBytes);
  std::memcpy(out.data() + at + kRansStateBytes, ptr, 2 * word_count);
  return true;
}

#if defined(__x86_64__) || defined(_M_X64)
// For each 8-bit refill mask: for each lane, how many lanes below it refill too
// (= the index of its word among the words read for this vector).
struct RefillPermutations {
  alignas(32) uint32_t index[256][8];
  constexpr RefillPermutations() : index() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int lane = 0; lane < 8; ++lane) {
        index[m][lane] = static_cast<uint32_t>(n);
        if (m & (1 << lane)) ++n;
      }
    }
  }
};
inline constexpr RefillPermutations kRefill{};

// One symbol in each of eight lanes (the states in x): lane j reads slot word
// slots[table_offset_j + (x_j & kSlotMask)] (table_offset zero for one table),
// refills from `in`, and writes its symbol byte to out[j].
template <uint32_t kBits = kProbBits>
__attribute__((target("avx2,popcnt"))) inline __m256i decode_vector_avx2(__m256i x, __m256i table_offset,
                                                                       const uint32_t* slots, const uint8_t*& in,
                                                                       uint8_t* out) {
  const __m256i slot_mask = _mm256_set1_epi32(static_cast<int>(kSlotMask));
  const __m256i low = _mm256_set1_epi32(static_cast<int>(kStateLow));
  const __m256i index_mask = _mm256_set1_epi32(static_cast<int>((1u << kBits) - 1));
  const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(slots),
                                           _mm256_add_epi32(table_offset, _mm256_and_si256(x, index_mask)), 4);
  const __m256i frequency =
      _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(e, 8), slot_mask), _mm256_set1_epi32(1));
  x = _mm256_add_epi32(_mm256_mullo_epi32(frequency, _mm256_srli_epi32(x, kBits)), _mm256_srli_epi32(e, 20));
  const __m256i refill = _mm256_cmpgt_epi32(low, x);
  const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(refill));
  const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
  const __m256i placed = _mm256_permutevar8x32_epi32(
      words, _mm256_load_si256(reinterpret_cast<const __m256i*>(kRefill.index[mask])));
  x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), placed), refill);
  in += 2 * _mm_popcnt_u32(static_cast<unsigned>(mask));
  // The low byte of each slot word is the symbol: gather the eight into 8 bytes.
  const __m256i bytes = _mm256_shuffle_epi8(
      e, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
                          -1, -1, -1, -1, -1, -1, -1, -1));
  const __m256i packed = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(packed));
  return x;
}

// The AVX2 encoder's per-symbol constants, read by one 64-bit load per lane: the
// low word is the reciprocal (mul_epu32 reads only it); the high word packs bias
// (bits 0-12), shift (bits 13-16) and complement << (31 - kBits) (the top kBits
// bits below the sign: 19-30 for 12-bit tables). A state x sheds exactly when
// x >= frequency << (31 - kBits) = 2^31 - (complement << (31 - kBits)), i.e. when
// x + (complement << (31 - kBits)) has its sign bit set.
template <uint32_t kBits = kProbBits>
inline uint64_t pack_encoder_symbol(const EncoderSymbol& e) {
  static_assert(kBits >= 8 && kBits <= 12, "bias and shift fields need 13 bits below the complement");
  const uint32_t packed = e.bias | (e.shift << 13) | (e.complement << (31 - kBits));
  return e.reciprocal | (uint64_t{packed} << 32);
}

// For each 8-bit shed mask: a byte shuffle moving the shed lanes' 16-bit words,
// in ascending lane order, to the top of a 16-byte vector.
struct ShedShuffles {
  alignas(16) uint8_t bytes[256][16];
  constexpr ShedShuffles() : bytes() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int lane = 0; lane < 8; ++lane) n += (m >> lane) & 1;
      for (int k = 0; k < 16; ++k) bytes[m][k] = 0x80;
      int slot = 8 - n;
      for (int lane = 0; lane < 8; ++lane) {
        if (m & (1 << lane)) {
          bytes[m][2 * slot] = static_cast<uint8_t>(2 * lane);
          bytes[m][2 * slot + 1] = static_cast<uint8_t>(2 * lane + 1);
          ++slot;
        }
      }
    }
  }
};
inline constexpr ShedShuffles kShed{};

// Codes eight symbols (lanes of x; symbol j's constants table[symbols[j]]) and
// writes their shed words just below ptr; the eight words below ptr must be
// writable. Symbols are bytes for one table, or table-and-symbol indices.
template <uint32_t kBits = kProbBits, typename Index = uint8_t>
__attribute__((target("avx2,popcnt"))) inline __m256i encode_vector_avx2(__m256i x, const Index* symbols,
                                                                       const uint64_t* table, uint16_t*& ptr) {
  // Even lanes in one vector, odd lanes in the other, so that mul_epu32 pairs
  // each reciprocal with its state. Scalar loads beat two vpgatherdq here.
  const __m256i ee = _mm256_setr_epi64x(
      static_cast<long long>(table[symbols[0]]), static_cast<long long>(table[symbols[2]]),
      static_cast<long long>(table[symbols[4]]), static_cast<long long>(table[symbols[6]]));
  const __m256i eo = _mm256_setr_epi64x(
      static_cast<long long>(table[symbols[1]]), static_cast<long long>(table[symbols[3]]),
      static_cast<long long>(table[symbols[5]]), static_cast<long long>(table[symbols[7]]));
  const __m256i packed = _mm256_blend_epi32(_mm256_srli_epi64(ee, 32), eo, 0xAA);
  constexpr uint32_t kComplementField = ((1u << kBits) - 1) << (31 - kBits);
  const __m256i shed =
      _mm256_add_epi32(x, _mm256_and_si256(packed, _mm256_set1_epi32(static_cast<int>(kComplementField))));
  const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(shed));
  // The low words of all eight states (< 2^31, so packus cannot saturate); the
  // shed ones go, in lane order, to the top of the eight words below ptr.
  const __m256i low = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(ptr - 8),
                   _mm_shuffle_epi8(words, _mm_load_si128(reinterpret_cast<const __m128i*>(kShed.bytes[mask]))));
  ptr -= _mm_popcnt_u32(static_cast<unsigned>(mask));
  x = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(x), _mm256_castsi256_ps(_mm256_srli_epi32(x, 16)),
                                           _mm256_castsi256_ps(shed)));
  // q = x / frequency: the high half of x * reciprocal, shifted.
  const __m256i pe = _mm256_mul_epu32(x, ee);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), eo);
  const __m256i shift = _mm256_and_si256(_mm256_srli_epi32(packed, 13), _mm256_set1_epi32(0xF));
  const __m256i q = _mm256_srlv_epi32(_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA), shift);
  const __m256i bias = _mm256_and_si256(packed, _mm256_set1_epi32(0x1FFF));
  const __m256i complement = _mm256_srli_epi32(packed, 31 - kBits);
  return _mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_mullo_epi32(q, complement));
}

// Codes full rounds [0, rounds) backwards, starting from ptr: lanes 24-31 first,
// since their words come last in the stream. Returns false as soon as more than
// max_words words are below end (checked every 4096 symbols).
template <uint32_t kBits = kProbBits, typename Index = uint8_t>
__attribute__((target("avx2,popcnt"))) bool encode_rounds_avx2(uint32_t* state, const Index* symbols,
                                                               size_t rounds, const uint64_t* table,
                                                               uint16_t*& ptr, const uint16_t* end,
                                                               size_t max_words) {
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 0));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 8));
  __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 16));
  __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(state + 24));
  bool ok = true;
  for (size_t r = rounds; r-- > 0;) {
    const Index* in = symbols + r * kRansLanes;
    x3 = encode_vector_avx2<kBits>(x3, in + 24, table, ptr);
    x2 = encode_vector_avx2<kBits>(x2, in + 16, table, ptr);
    x1 = encode_vector_avx2<kBits>(x1, in + 8, table, ptr);
    x0 = encode_vector_avx2<kBits>(x0, in + 0, table, ptr);
    if ((r & 127) == 0 && static_cast<size_t>(end - ptr) > max_words) {
      ok = false;
      break;
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 0), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 8), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 16), x2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + 24), x3);
  return ok;
}

// AVX-512: sixteen lanes. vpexpandd places the refill words in the lanes that need
// them (no permutation table) and vpmovdb packs the symbols.
#define TZ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,popcnt")))

template <uint32_t kBits = kProbBits>
TZ_AVX512 inline __m512i decode_vector_avx512(__m512i x, __m512i table_offset, const uint32_t* slots,
                                              const uint8_t*& in, uint8_t* out) {
  const __m512i slot_mask = _mm512_set1_epi32(static_cast<int>(kSlotMask));
  const __m512i index_mask = _mm512_set1_epi32(static_cast<int>((1u << kBits) - 1));
  const __m512i e = _mm512_i32gather_epi32(_mm512_add_epi32(table_offset, _mm512_and_si512(x, index_mask)), slots, 4);
  const __m512i frequency =
      _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(e, 8), slot_mask), _mm512_set1_epi32(1));
  x = _mm512_add_epi32(_mm512_mullo_epi32(frequency, _mm512_srli_epi32(x, kBits)), _mm512_srli_epi32(e, 20));
  const __mmask16 refill = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(static_cast<int>(kStateLow)));
  const __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in)));
  const __m512i placed = _mm512_maskz_expand_epi32(refill, words);
  x = _mm512_mask_or_epi32(x, refill, _mm512_slli_epi32(x, 16), placed);
  in += 2 * _mm_popcnt_u32(static_cast<unsigned>(refill));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(e));
  return x;
}
#endif

}  // namespace rans_detail
}  // namespace tensorzip
