// Delta residuals: known values of each mode, exact round trips of random bit
// patterns (NaN payloads included) for every width, mode and float flag, in place
// and across threads.
#include <vector>

#include "check.hpp"
#include "delta.hpp"
#include "errors.hpp"

using namespace tensorzip;

TEST(delta, known_residuals) {
  // xor: the bits that differ.
  std::vector<uint8_t> a = {0x0F, 0xF0}, b = {0xFF, 0xF0}, out(2);
  delta_residual(a.data(), b.data(), out.data(), 2, 1, DeltaMode::kXor, false, 1);
  CHECK_BYTES(out, (std::vector<uint8_t>{0xF0, 0x00}));
  // sub on integers: a - b, zigzagged (2 -> 4, -2 -> 3).
  a = {5, 3};
  b = {3, 5};
  delta_residual(a.data(), b.data(), out.data(), 2, 1, DeltaMode::kSub, false, 1);
  CHECK_BYTES(out, (std::vector<uint8_t>{4, 3}));
  // sub on floats: -0.0 (0x8000) is one step below +0.0 in the ordered integers,
  // so the residual is -1 -> zigzag 1; bf16 1.0 (0x3F80) vs its next float 0x3F81: 1 -> 2.
  std::vector<uint8_t> fa = {0x00, 0x80, 0x81, 0x3F}, fb = {0x00, 0x00, 0x80, 0x3F}, fo(4);
  delta_residual(fa.data(), fb.data(), fo.data(), 2, 2, DeltaMode::kSub, true, 1);
  CHECK_BYTES(fo, (std::vector<uint8_t>{0x01, 0x00, 0x02, 0x00}));
  // The same bits as integers: 0x8000 - 0 = -32768 -> zigzag 0xFFFF.
  delta_residual(fa.data(), fb.data(), fo.data(), 2, 2, DeltaMode::kSub, false, 1);
  CHECK_BYTES(fo, (std::vector<uint8_t>{0xFF, 0xFF, 0x02, 0x00}));
}

TEST(delta, round_trip_every_layout) {
  tztest::Rng rng(30);
  for (int width : {1, 2, 4, 8}) {
    for (DeltaMode mode : {DeltaMode::kXor, DeltaMode::kSub}) {
      for (bool is_float : {false, true}) {
        for (size_t n : {size_t{0}, size_t{1}, size_t{17}, size_t{5000}}) {
          const std::vector<uint8_t> a = rng.bytes(n * width);  // every bit pattern: NaNs, infinities, -0
          std::vector<uint8_t> base = rng.bytes(n * width);
          // Half the elements close to the base, as fine-tuned weights are.
          for (size_t i = 0; i + 1 < base.size(); i += 2) base[i] = a[i];
          std::vector<uint8_t> stored(n * width);
          delta_residual(a.data(), base.data(), stored.data(), n, width, mode, is_float, 1);
          delta_restore(stored.data(), base.data(), n, width, mode, is_float, 1);
          CHECK_BYTES(stored, a);
          // In place (out aliases a).
          std::vector<uint8_t> in_place = a;
          delta_residual(in_place.data(), base.data(), in_place.data(), n, width, mode, is_float, 1);
          delta_restore(in_place.data(), base.data(), n, width, mode, is_float, 1);
          CHECK_BYTES(in_place, a);
        }
      }
    }
  }
}

TEST(delta, threads_give_the_same_bytes) {
  tztest::Rng rng(31);
  const size_t n = (size_t{1} << 18) * 3 + 11;  // several slices of 2^18 elements
  const std::vector<uint8_t> a = rng.bytes(n * 2);
  const std::vector<uint8_t> base = rng.bytes(n * 2);
  std::vector<uint8_t> one(n * 2), four(n * 2);
  delta_residual(a.data(), base.data(), one.data(), n, 2, DeltaMode::kSub, true, 1);
  delta_residual(a.data(), base.data(), four.data(), n, 2, DeltaMode::kSub, true, 4);
  CHECK_BYTES(four, one);
  delta_restore(four.data(), base.data(), n, 2, DeltaMode::kSub, true, 4);
  CHECK_BYTES(four, a);
}

TEST(delta, bad_arguments_rejected) {
  std::vector<uint8_t> a(8), b(8), out(8);
  CHECK_THROWS(delta_residual(a.data(), b.data(), out.data(), 1, 3, DeltaMode::kXor, false, 1),
               InvalidArgumentError);
  CHECK_THROWS(delta_restore(a.data(), b.data(), 1, 16, DeltaMode::kXor, false, 1), InvalidArgumentError);
  CHECK_THROWS(delta_residual(a.data(), b.data(), out.data(), 1, 2, static_cast<DeltaMode>(7), false, 1),
               InvalidArgumentError);
}
