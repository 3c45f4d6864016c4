#include "byte_planes.hpp"

#include <cstring>
#include <string>

#include "errors.hpp"

namespace tensorzip {

namespace {

template <typename T>
inline T rotate_left(T v, int r) {
  constexpr int bits = 8 * sizeof(T);
  return r == 0 ? v : static_cast<T>((v << r) | (v >> (bits - r)));
}

template <typename T>
inline T rotate_right(T v, int r) {
  constexpr int bits = 8 * sizeof(T);
  return r == 0 ? v : static_cast<T>((v >> r) | (v << (bits - r)));
}

// The rotation is a template parameter so each loop is branch-free and the
// compiler can vectorize it.
template <typename T, int R>
void split_typed(const uint8_t* elements, size_t count, uint8_t* const* planes) {
  constexpr int W = sizeof(T);
  uint8_t* p[W];
  for (int k = 0; k < W; ++k) p[k] = planes[k];
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, elements + i * W, W);
    v = rotate_left<T>(v, R);
    for (int k = 0; k < W; ++k) p[k][i] = static_cast<uint8_t>(v >> (8 * (W - 1 - k)));
  }
}

template <typename T, int R>
void merge_typed(const uint8_t* const* planes, size_t count, uint8_t* elements) {
  constexpr int W = sizeof(T);
  const uint8_t* p[W];
  for (int k = 0; k < W; ++k) p[k] = planes[k];
  for (size_t i = 0; i < count; ++i) {
    T v = 0;
    for (int k = 0; k < W; ++k) v |= static_cast<T>(static_cast<T>(p[k][i]) << (8 * (W - 1 - k)));
    v = rotate_right<T>(v, R);
    std::memcpy(elements + i * W, &v, W);
  }
}

template <typename T>
void split_dispatch(const uint8_t* e, size_t n, int rotate, uint8_t* const* planes) {
  if (rotate == 0) split_typed<T, 0>(e, n, planes);
  else split_typed<T, 1>(e, n, planes);
}

template <typename T>
void merge_dispatch(const uint8_t* const* planes, size_t n, int rotate, uint8_t* e) {
  if (rotate == 0) merge_typed<T, 0>(planes, n, e);
  else merge_typed<T, 1>(planes, n, e);
}

}  // namespace

void check_layout(int width, int rotate) {
  if (width != 1 && width != 2 && width != 4 && width != 8) {
    throw InvalidArgumentError("element width must be 1, 2, 4 or 8 bytes, got " + std::to_string(width));
  }
  if (rotate != 0 && rotate != 1) {
    throw InvalidArgumentError("rotation must be 0 or 1 bit, got " + std::to_string(rotate));
  }
}

void split_planes(const uint8_t* elements, size_t count, int width, int rotate, uint8_t* const* planes) {
  check_layout(width, rotate);
  switch (width) {
    case 1: {
      // A byte rotated by one bit is a bijection of the same byte: keep it plain.
      if (count) std::memcpy(planes[0], elements, count);  // (an empty buffer's pointer may be null)
      return;
    }
    case 2: split_dispatch<uint16_t>(elements, count, rotate, planes); return;
    case 4: split_dispatch<uint32_t>(elements, count, rotate, planes); return;
    default: split_dispatch<uint64_t>(elements, count, rotate, planes); return;
  }
}

void merge_planes(const uint8_t* const* planes, size_t count, int width, int rotate, uint8_t* elements) {
  check_layout(width, rotate);
  switch (width) {
    case 1: if (count) std::memcpy(elements, planes[0], count); return;
    case 2: merge_dispatch<uint16_t>(planes, count, rotate, elements); return;
    case 4: merge_dispatch<uint32_t>(planes, count, rotate, elements); return;
    default: merge_dispatch<uint64_t>(planes, count, rotate, elements); return;
  }
}

}  // namespace tensorzip
