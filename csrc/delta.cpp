#include "delta.hpp"

#include <cstring>

#include "errors.hpp"
#include "parallel.hpp"

namespace tensorzip {
namespace {

constexpr size_t kSliceElements = size_t{1} << 18;  // per task: enough work to dwarf scheduling

// Sign-magnitude to two's-complement order (an involution): negative floats get
// their magnitude bits flipped, so adjacent floats are adjacent integers.
// `flip` is the magnitude mask for floats and 0 for integers (branch-free, so the
// loops vectorize).
template <typename U>
inline U ordered(U u, U flip) {
  constexpr int kBits = sizeof(U) * 8;
  const U negative = static_cast<U>(static_cast<U>(0) - static_cast<U>(u >> (kBits - 1)));
  return static_cast<U>(u ^ (negative & flip));
}

template <typename U>
inline U flip_mask(bool is_float) {
  constexpr int kBits = sizeof(U) * 8;
  return is_float ? static_cast<U>(~(U{1} << (kBits - 1))) : U{0};
}

template <typename U>
inline U zigzag(U d) {
  constexpr int kBits = sizeof(U) * 8;
  return static_cast<U>((d << 1) ^ (static_cast<U>(0) - static_cast<U>(d >> (kBits - 1))));
}

template <typename U>
inline U unzigzag(U z) {
  return static_cast<U>((z >> 1) ^ (static_cast<U>(0) - static_cast<U>(z & 1)));
}

// Elements are read and written through memcpy: buffers need not be aligned.
template <typename U>
void residual_range(const uint8_t* a, const uint8_t* base, uint8_t* out, size_t begin, size_t end,
                    DeltaMode mode, bool is_float) {
  const U flip = flip_mask<U>(is_float);
  for (size_t i = begin; i < end; ++i) {
    U x, b;
    std::memcpy(&x, a + i * sizeof(U), sizeof(U));
    std::memcpy(&b, base + i * sizeof(U), sizeof(U));
    const U r = mode == DeltaMode::kXor
                    ? static_cast<U>(x ^ b)
                    : zigzag<U>(static_cast<U>(ordered<U>(x, flip) - ordered<U>(b, flip)));
    std::memcpy(out + i * sizeof(U), &r, sizeof(U));
  }
}

template <typename U>
void restore_range(uint8_t* stored, const uint8_t* base, size_t begin, size_t end, DeltaMode mode,
                   bool is_float) {
  const U flip = flip_mask<U>(is_float);
  for (size_t i = begin; i < end; ++i) {
    U s, b;
    std::memcpy(&s, stored + i * sizeof(U), sizeof(U));
    std::memcpy(&b, base + i * sizeof(U), sizeof(U));
    const U x = mode == DeltaMode::kXor
                    ? static_cast<U>(s ^ b)
                    : ordered<U>(static_cast<U>(ordered<U>(b, flip) + unzigzag<U>(s)), flip);
    std::memcpy(stored + i * sizeof(U), &x, sizeof(U));
  }
}

template <typename Kernel>
void over_slices(size_t n, int threads, Kernel&& kernel) {
  const size_t slices = (n + kSliceElements - 1) / kSliceElements;
  parallel_for(slices, threads, [&](size_t k, size_t) {
    kernel(k * kSliceElements, std::min(n, (k + 1) * kSliceElements));
  });
}

void check(int width, DeltaMode mode) {
  if (width != 1 && width != 2 && width != 4 && width != 8)
    throw InvalidArgumentError("delta: element width must be 1, 2, 4 or 8 bytes");
  if (mode != DeltaMode::kXor && mode != DeltaMode::kSub) throw InvalidArgumentError("delta: unknown mode");
}

}  // namespace

void delta_residual(const uint8_t* a, const uint8_t* base, uint8_t* out, size_t n, int width, DeltaMode mode,
                    bool is_float, int threads) {
  check(width, mode);
  over_slices(n, threads, [&](size_t begin, size_t end) {
    switch (width) {
      case 1: residual_range<uint8_t>(a, base, out, begin, end, mode, is_float); break;
      case 2: residual_range<uint16_t>(a, base, out, begin, end, mode, is_float); break;
      case 4: residual_range<uint32_t>(a, base, out, begin, end, mode, is_float); break;
      default: residual_range<uint64_t>(a, base, out, begin, end, mode, is_float); break;
    }
  });
}

void delta_restore(uint8_t* stored, const uint8_t* base, size_t n, int width, DeltaMode mode, bool is_float,
                   int threads) {
  check(width, mode);
  over_slices(n, threads, [&](size_t begin, size_t end) {
    switch (width) {
      case 1: restore_range<uint8_t>(stored, base, begin, end, mode, is_float); break;
      case 2: restore_range<uint16_t>(stored, base, begin, end, mode, is_float); break;
      case 4: restore_range<uint32_t>(stored, base, begin, end, mode, is_float); break;
      default: restore_range<uint64_t>(stored, base, begin, end, mode, is_float); break;
    }
  });
}

}  // namespace tensorzip
