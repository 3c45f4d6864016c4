// The error-bounded codec's grid kernels: codes as documented (zigzag of the grid integer, or
// of its difference with the one `stride` before in the chunk), the decoded values and the
// measured error as the decoder's arithmetic gives them, round trips across chunks and
// threads, non-finite input reported, bad layouts refused.
#include <cmath>
#include <limits>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "grid_code.hpp"

using namespace tensorzip;

TEST(grid_code, codes_and_error_as_documented) {
  const std::vector<float> x = {0.0f, 0.26f, -0.26f, 1.0f, -0.74f};
  std::vector<uint32_t> codes(x.size());
  const GridEncodeResult r = grid_encode(x.data(), false, x.size(), 0.5, 0, 1024, nullptr, 0, codes.data(), 1);
  // q = 0, 1, -1, 2, -1 -> zigzag 0, 2, 1, 4, 1
  CHECK(codes == (std::vector<uint32_t>{0, 2, 1, 4, 1}));
  CHECK(r.finite);
  CHECK(r.max_code == 4);
  CHECK(std::fabs(r.max_error - std::fabs(-0.5 - static_cast<double>(-0.74f))) < 1e-12);
  // With stride 2 the codes are differences within the chunk: q = 0, 1, -1, 2, -1 ->
  // 0, 1, (-1 - 0) = -1, (2 - 1) = 1, (-1 - -1) = 0 -> zigzag 0, 2, 1, 2, 0.
  grid_encode(x.data(), false, x.size(), 0.5, 2, 1024, nullptr, 0, codes.data(), 1);
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
      const GridEncodeResult a = grid_encode(x.data(), true, n, 0.01, stride, chunk, nullptr, 0, one.data(), 1);
      const GridEncodeResult b = grid_encode(x.data(), true, n, 0.01, stride, chunk, nullptr, 0, many.data(), 3);
      CHECK(one == many);
      CHECK(a.max_error == b.max_error);
      CHECK(a.max_error <= 0.005 + 1e-12);
      std::vector<double> back(n);
      grid_decode(reinterpret_cast<const uint8_t*>(one.data()), 4, n, 0.01, stride, chunk, nullptr, 0, back.data(), true,
                  2);
      for (size_t i = 0; i < n; ++i) CHECK(std::fabs(back[i] - x[i]) <= a.max_error);
    }
  }
}

TEST(grid_code, offsets_per_column_from_each_chunks_first_element) {
  // Chunks of 4 over columns of 3: the second chunk starts at column 1.
  const std::vector<float> x = {10.0f, 20.0f, 30.0f, 10.5f, 20.0f, 29.5f, 10.0f, 21.0f};
  const std::vector<int32_t> offsets = {20, 40, 60};
  std::vector<uint32_t> codes(x.size());
  grid_encode(x.data(), false, x.size(), 0.5, 0, 4, offsets.data(), offsets.size(), codes.data(), 2);
  // q = 20 40 60 21 40 59 20 42, less 20 40 60 20 40 60 20 40 -> 0 0 0 1 0 -1 0 2
  CHECK(codes == (std::vector<uint32_t>{0, 0, 0, 2, 0, 1, 0, 4}));
  std::vector<float> back(x.size());
  grid_decode(reinterpret_cast<const uint8_t*>(codes.data()), 4, x.size(), 0.5, 0, 4, offsets.data(), offsets.size(),
              back.data(), false, 1);
  CHECK(back == x);
  const std::vector<int32_t> wide = {int32_t{1} << 30};
  bool refused = false;
  try {
    grid_encode(x.data(), false, x.size(), 0.5, 0, 4, wide.data(), 1, codes.data(), 1);
  } catch (const InvalidArgumentError&) {
    refused = true;
  }
  CHECK(refused);
}

TEST(grid_code, non_finite_and_bad_layouts) {
  const std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  std::vector<uint32_t> codes(2);
  CHECK(!grid_encode(x.data(), false, 2, 0.1, 0, 16, nullptr, 0, codes.data(), 1).finite);
  const std::vector<float> huge = {1e30f};
  CHECK(std::isinf(grid_encode(huge.data(), false, 1, 1e-3, 0, 16, nullptr, 0, codes.data(), 1).max_error));
  bool refused = false;
  try {
    grid_encode(x.data(), false, 2, 0.1, 3, 16, nullptr, 0, codes.data(), 1);
  } catch (const InvalidArgumentError&) {
    refused = true;
  }
  CHECK(refused);
}
