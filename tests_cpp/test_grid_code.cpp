// The error-bounded codec's grid kernels: codes as documented (zigzag of the grid integer, or
// of its difference with the one `stride` before in the chunk), the decoded values and the
// measured error as the decoder's arithmetic gives them, round trips across chunks and
// threads, non-finite input reported, bad layouts refused.
#include <cmath>
#include <limits>
#include <vector>

#include "check.hpp"
#include "cpu_features.hpp"
#include "errors.hpp"
#include "grid_code.hpp"

using namespace tensorzip;

TEST(grid_code, codes_and_error_as_documented) {
  const std::vector<float> x = {0.0f, 0.26f, -0.26f, 1.0f, -0.74f};
  std::vector<uint32_t> codes(x.size());
  const GridEncodeResult r = grid_encode(x.data(), false, x.size(), 0.5, 0, 1024, nullptr, 0, GridType::kFloat32, codes.data(), 1);
  // q = 0, 1, -1, 2, -1 -> zigzag 0, 2, 1, 4, 1
  CHECK(codes == (std::vector<uint32_t>{0, 2, 1, 4, 1}));
  CHECK(r.finite);
  CHECK(r.max_code == 4);
  CHECK(std::fabs(r.max_error - std::fabs(-0.5 - static_cast<double>(-0.74f))) < 1e-12);
  // With stride 2 the codes are differences within the chunk: q = 0, 1, -1, 2, -1 ->
  // 0, 1, (-1 - 0) = -1, (2 - 1) = 1, (-1 - -1) = 0 -> zigzag 0, 2, 1, 2, 0.
  grid_encode(x.data(), false, x.size(), 0.5, 2, 1024, nullptr, 0, GridType::kFloat32, codes.data(), 1);
  CHECK(codes == (std::vector<uint32_t>{0, 2, 1, 2, 0}));
}

TEST(grid_code, round_trips_across_chunks_and_threads) {
  tztest::Rng rng(41);
  for (size_t stride : {size_t{0}, size_t{1}, size_t{7}}) {
    for (size_t n : {size_t{1}, size_t{69}, size_t{5000}}) {
      std::vector<double> x(n);
      double acc = 0;
      for (double& v : x) v = (acc += (static_cast<int>(rng.next() % 2001) - 1000) * 1e-3);
      const size_t chunk = stride ? 70 * stride : 300;
      std::vector<uint32_t> one(n), many(n);
      const GridEncodeResult a = grid_encode(x.data(), true, n, 0.01, stride, chunk, nullptr, 0, GridType::kFloat64, one.data(), 1);
      const GridEncodeResult b = grid_encode(x.data(), true, n, 0.01, stride, chunk, nullptr, 0, GridType::kFloat64, many.data(), 3);
      CHECK(one == many);
      CHECK(a.max_error == b.max_error);
      CHECK(a.max_error <= 0.005 + 1e-12);
      std::vector<double> back(n);
      grid_decode(reinterpret_cast<const uint8_t*>(one.data()), 4, n, 0.01, stride, chunk, nullptr, 0, back.data(),
                  GridType::kFloat64, 2);
      for (size_t i = 0; i < n; ++i) CHECK(std::fabs(back[i] - x[i]) <= a.max_error);
    }
  }
}

TEST(grid_code, offsets_per_column_from_each_chunks_first_element) {
  // Chunks of 4 over columns of 3: the second chunk starts at column 1.
  const std::vector<float> x = {10.0f, 20.0f, 30.0f, 10.5f, 20.0f, 29.5f, 10.0f, 21.0f};
  const std::vector<int32_t> offsets = {20, 40, 60};
  std::vector<uint32_t> codes(x.size());
  grid_encode(x.data(), false, x.size(), 0.5, 0, 4, offsets.data(), offsets.size(), GridType::kFloat32, codes.data(), 2);
  // q = 20 40 60 21 40 59 20 42, less 20 40 60 20 40 60 20 40 -> 0 0 0 1 0 -1 0 2
  CHECK(codes == (std::vector<uint32_t>{0, 0, 0, 2, 0, 1, 0, 4}));
  std::vector<float> back(x.size());
  grid_decode(reinterpret_cast<const uint8_t*>(codes.data()), 4, x.size(), 0.5, 0, 4, offsets.data(), offsets.size(),
              back.data(), GridType::kFloat32, 1);
  CHECK(back == x);
  const std::vector<int32_t> wide = {int32_t{1} << 30};
  bool refused = false;
  try {
    grid_encode(x.data(), false, x.size(), 0.5, 0, 4, wide.data(), 1, GridType::kFloat32, codes.data(), 1);
  } catch (const InvalidArgumentError&) {
    refused = true;
  }
  CHECK(refused);
}

// bfloat16 and float16 outputs: q * step rounded once, to nearest even, as the reference
// (round-to-nearest-even of the float64 value by integer arithmetic on its bits) does, for
// values across every binade, the subnormals, the halfway cases and the overflow to infinity.
template <int E, int M>
uint16_t reference_round(double v) {
  // The exact nearest-even of v among the format's values, found by search over all 2^16 patterns
  // would be slow; use the definition instead: compare with both neighbours.
  const bool negative = std::signbit(v);
  const double a = std::fabs(v);
  constexpr int bias = (1 << (E - 1)) - 1;
  uint16_t best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  // Candidates: every finite non-negative pattern whose value is within a factor of 2 of a.
  for (uint32_t bits = 0; bits < (((1u << E) - 1) << M); ++bits) {
    const int field = static_cast<int>(bits >> M);
    const double value = field == 0 ? std::ldexp(static_cast<double>(bits & ((1u << M) - 1)), 1 - bias - M)
                                    : std::ldexp(static_cast<double>((bits & ((1u << M) - 1)) | (1u << M)),
                                                 field - bias - M);
    const double distance = std::fabs(value - a);
    if (distance < best_distance || (distance == best_distance && (bits & 1) == 0)) {
      best = static_cast<uint16_t>(bits);
      best_distance = distance;
    }
  }
  const double largest = std::ldexp(2.0 - std::ldexp(1.0, -M), bias);
  if (a >= largest + std::ldexp(1.0, bias - M - 1)) best = static_cast<uint16_t>(((1u << E) - 1) << M);  // overflow
  return static_cast<uint16_t>(best | (negative ? 0x8000 : 0));
}

template <int E, int M>
void check_narrow(GridType type) {
  tztest::Rng rng(7);
  std::vector<double> values = {0.0, -0.0, 1.0, 1.0 + std::ldexp(1.0, -M - 1), 1.0 + 3 * std::ldexp(1.0, -M - 1),
                                1.0 + std::ldexp(1.0, -M - 1) + std::ldexp(1.0, -40), 65504.0, 65520.0, 1e38, 3.4e38,
                                1e-40, 5.9e-8, 2.9e-8, 3.0e-8};
  for (int i = 0; i < 300; ++i)
    values.push_back(std::ldexp(static_cast<double>(rng.next() % 100000) / 1000.0, static_cast<int>(rng.next() % 80) - 60));
  std::vector<uint32_t> codes(values.size());
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double step = values[i] == 0.0 ? 1.0 : std::fabs(values[i]);  // q = +-1 or 0: the value itself
    const int64_t q = values[i] == 0.0 ? 0 : (values[i] > 0 ? 1 : -1);
    codes[0] = static_cast<uint32_t>((q << 1) ^ (q >> 63));
    grid_decode(reinterpret_cast<const uint8_t*>(codes.data()), 4, 1, step, 0, 16, nullptr, 0, out.data(), type, 1);
    const uint16_t expected = reference_round<E, M>(static_cast<double>(q) * step);
    CHECK(out[0] == expected);
  }
}

TEST(grid_code, narrow_outputs_round_once_to_nearest_even) {
  check_narrow<8, 7>(GridType::kBFloat16);
  check_narrow<5, 10>(GridType::kFloat16);
}

TEST(grid_code, columns_transposed_with_one_step_each) {
  // 3 rows x 2 columns; steps 0.5 and 2: q = rint(x / step), ties to even; codes_t is [column][row].
  const std::vector<float> x = {0.25f, 3.0f, -0.75f, -1.0f, 1.0f, 5.0f};
  const std::vector<float> steps = {0.5f, 2.0f};
  std::vector<uint32_t> codes_t(6);
  bool in_range = false;
  // column 0: 0.5 -> 0, -1.5 -> -2, 2 -> 2; column 1: 1.5 -> 2, -0.5 -> -0, 2.5 -> 2
  const uint64_t largest = grid_columns(x.data(), 3, 2, 2, steps.data(), codes_t.data(), in_range, 2);
  CHECK(in_range);
  CHECK(codes_t == (std::vector<uint32_t>{0, 3, 4, 4, 0, 4}));
  CHECK(largest == 4);
  const std::vector<float> bad = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  grid_columns(bad.data(), 1, 2, 2, steps.data(), codes_t.data(), in_range, 1);
  CHECK(!in_range);
}

TEST(grid_code, columns_every_path_gives_the_same_codes) {
  // 203 rows x 21 of 27 columns (blocks of 8 x 8 and both edges), values on and between grid
  // points, one NaN inside a block and one on an edge: every SIMD path, the same codes.
  tztest::Rng rng(77);
  const size_t rows = 203, columns = 21, stride = 27;
  std::vector<float> x(rows * stride), steps(columns);
  for (float& v : x) v = static_cast<float>(static_cast<int>(rng.next() % 20001) - 10000) * 0.01f;
  for (size_t c = 0; c < columns; ++c) steps[c] = 0.05f * static_cast<float>(c + 1);
  x[9 * stride + 3] = 1.5f * steps[3];  // a tie: to even
  std::vector<uint32_t> first;
  bool first_range = true;
  uint64_t first_largest = 0;
  for (const bool poisoned : {false, true}) {
    if (poisoned) {
      x[10 * stride + 4] = std::numeric_limits<float>::quiet_NaN();
      x[201 * stride + 20] = 3e12f;
    }
    bool have = false;
    tztest::for_each_simd_cap([&](SimdCap) {
      std::vector<uint32_t> codes(rows * columns, 7);
      bool in_range = true;
      const uint64_t largest = grid_columns(x.data(), rows, columns, stride, steps.data(), codes.data(), in_range, 2);
      CHECK(in_range == !poisoned);
      if (!poisoned) {
        for (size_t r = 0; r < rows; r += 17)
          for (size_t c = 0; c < columns; ++c) {
            const int64_t q = static_cast<int64_t>(std::nearbyint(x[r * stride + c] / steps[c]));
            CHECK_EQ(codes[c * rows + r], static_cast<uint32_t>(q >= 0 ? 2 * q : -2 * q - 1));
          }
      } else {
        CHECK_EQ(codes[4 * rows + 10], 0u);
        CHECK_EQ(codes[20 * rows + 201], 0u);
      }
      if (!have) {
        first = codes, first_range = in_range, first_largest = largest, have = true;
      } else {
        CHECK(codes == first);
        CHECK(in_range == first_range);
        CHECK(largest == first_largest);
      }
    });
  }
}

TEST(grid_code, non_finite_and_bad_layouts) {
  const std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  std::vector<uint32_t> codes(2);
  CHECK(!grid_encode(x.data(), false, 2, 0.1, 0, 16, nullptr, 0, GridType::kFloat32, codes.data(), 1).finite);
  const std::vector<float> huge = {1e30f};
  CHECK(std::isinf(grid_encode(huge.data(), false, 1, 1e-3, 0, 16, nullptr, 0, GridType::kFloat32, codes.data(), 1).max_error));
  bool refused = false;
  try {
    grid_encode(x.data(), false, 2, 0.1, 3, 16, nullptr, 0, GridType::kFloat32, codes.data(), 1);
  } catch (const InvalidArgumentError&) {
    refused = true;
  }
  CHECK(refused);
}
