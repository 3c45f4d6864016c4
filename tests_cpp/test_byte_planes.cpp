// Byte planes: split/merge round trips for 1/2/4/8-byte elements with and without
// rotation, the exact plane contents against a plain reference, and bad layouts.
// main.cpp runs each test under every SIMD cap, so the AVX2 paths (32 elements a
// round) and their tails are checked against the same reference.
#include <cstring>
#include <vector>

#include "byte_planes.hpp"
#include "check.hpp"
#include "errors.hpp"

using namespace tensorzip;

namespace {

// Plane k of element i: byte (width - 1 - k) of the element rotated left by
// `rotate` bits (1-byte elements are never rotated).
std::vector<std::vector<uint8_t>> reference_split(const std::vector<uint8_t>& elements, int width, int rotate) {
  const size_t count = elements.size() / width;
  std::vector<std::vector<uint8_t>> planes(width, std::vector<uint8_t>(count));
  for (size_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    for (int b = 0; b < width; ++b) v |= uint64_t{elements[i * width + b]} << (8 * b);  // little-endian
    const int bits = 8 * width;
    if (rotate && width > 1) {
      v = (v << rotate) | (v >> (bits - rotate));
      if (bits < 64) v &= (uint64_t{1} << bits) - 1;
    }
    for (int k = 0; k < width; ++k) planes[k][i] = static_cast<uint8_t>(v >> (8 * (width - 1 - k)));
  }
  return planes;
}

}  // namespace

TEST(byte_planes, split_merge_round_trip) {
  tztest::Rng rng(20);
  for (int width : {1, 2, 4, 8}) {
    for (int rotate : {0, 1}) {
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{16}, size_t{32}, size_t{33}, size_t{64}, size_t{95}, size_t{1000}, size_t{4099}}) {
        const std::vector<uint8_t> elements = rng.bytes(count * width);
        std::vector<std::vector<uint8_t>> planes(width, std::vector<uint8_t>(count + 1, 0xCD));
        uint8_t* p[8];
        for (int k = 0; k < width; ++k) p[k] = planes[k].data();
        split_planes(elements.data(), count, width, rotate, p);
        const auto expected = reference_split(elements, width, rotate);
        for (int k = 0; k < width; ++k) {
          CHECK_EQ(planes[k][count], 0xCD);  // nothing past the end
          planes[k].resize(count);
          CHECK_BYTES(planes[k], expected[k]);
        }
        std::vector<uint8_t> back(count * width + 1, 0xCD);
        const uint8_t* q[8];
        for (int k = 0; k < width; ++k) q[k] = planes[k].data();
        merge_planes(q, count, width, rotate, back.data());
        CHECK_EQ(back.back(), 0xCD);
        back.pop_back();
        CHECK_BYTES(back, elements);
      }
    }
  }
}

TEST(byte_planes, known_layouts) {
  // bf16 -1.0 = 0xBF80 (little-endian bytes 80 BF). Rotated by one bit: 0x7F01,
  // so plane 0 holds the exponent (0x7F) and plane 1 the mantissa with the sign last.
  const std::vector<uint8_t> bf16 = {0x80, 0xBF};
  uint8_t a = 0, b = 0;
  uint8_t* planes[2] = {&a, &b};
  split_planes(bf16.data(), 1, 2, 1, planes);
  CHECK_EQ(a, 0x7F);
  CHECK_EQ(b, 0x01);
  split_planes(bf16.data(), 1, 2, 0, planes);
  CHECK_EQ(a, 0xBF);
  CHECK_EQ(b, 0x80);
  // fp32 1.0 = 0x3F800000: rotated 0x7F000000, exponent in plane 0.
  const std::vector<uint8_t> fp32 = {0x00, 0x00, 0x80, 0x3F};
  uint8_t p4[4];
  uint8_t* planes4[4] = {p4, p4 + 1, p4 + 2, p4 + 3};
  split_planes(fp32.data(), 1, 4, 1, planes4);
  CHECK_EQ(p4[0], 0x7F);
  CHECK_EQ(p4[1], 0x00);
  CHECK_EQ(p4[2], 0x00);
  CHECK_EQ(p4[3], 0x00);
}

TEST(byte_planes, bad_layouts_rejected) {
  uint8_t element[8] = {};
  uint8_t plane[8] = {};
  uint8_t* planes[8] = {plane, plane, plane, plane, plane, plane, plane, plane};
  const uint8_t* in[8] = {plane, plane, plane, plane, plane, plane, plane, plane};
  for (int width : {0, 3, 5, 16, -1}) {
    CHECK_THROWS(split_planes(element, 1, width, 0, planes), InvalidArgumentError);
    CHECK_THROWS(merge_planes(in, 1, width, 0, element), InvalidArgumentError);
  }
  for (int rotate : {-1, 2, 8}) {
    CHECK_THROWS(check_layout(2, rotate), InvalidArgumentError);
  }
  check_layout(8, 1);
}
