#include "grid_code.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "errors.hpp"
#include "parallel.hpp"

namespace tensorzip {
namespace {

constexpr int64_t kMaxInteger = int64_t{1} << 30;

inline uint32_t zigzag(int64_t value) {
  return static_cast<uint32_t>((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
}

inline int64_t unzigzag(uint32_t code) { return static_cast<int64_t>(code >> 1) ^ -static_cast<int64_t>(code & 1); }

// The offsets of a chunk: offsets[column] for each element, the column running from the
// chunk's first element's (the tensor's flat index modulo the period) and wrapping.
struct Columns {
  const int32_t* offsets;
  size_t period;  // 0: no offsets
  size_t column;
  int64_t next() {
    if (!period) return 0;
    const int64_t value = offsets[column];
    if (++column == period) column = 0;
    return value;
  }
};

template <typename T>
GridEncodeResult encode_chunk(const T* x, size_t count, double step, size_t stride, Columns columns, uint32_t* codes,
                              std::vector<int64_t>& previous) {
  GridEncodeResult result{0.0, 0, true};
  if (stride) std::fill(previous.begin(), previous.end(), 0);
  for (size_t i = 0; i < count; ++i) {
    const int64_t offset = columns.next();
    const double value = static_cast<double>(x[i]);
    if (!std::isfinite(value)) {
      result.finite = false;
      codes[i] = 0;
      continue;
    }
    double scaled = std::nearbyint(value / step);
    int64_t q;
    if (!(scaled < static_cast<double>(kMaxInteger) && scaled > -static_cast<double>(kMaxInteger))) {
      result.max_error = std::numeric_limits<double>::infinity();
      q = 0;
    } else {
      q = static_cast<int64_t>(scaled);
      const double decoded = static_cast<double>(static_cast<T>(static_cast<double>(q) * step));
      result.max_error = std::max(result.max_error, std::fabs(decoded - value));
      q -= offset;
      if (!(q < kMaxInteger && q > -kMaxInteger)) {  // the stored integer must stay in range too
        result.max_error = std::numeric_limits<double>::infinity();
        q = 0;
      }
    }
    int64_t residual = q;
    if (stride) {
      const size_t lane = i % stride;
      if (i >= stride) residual = q - previous[lane];
      previous[lane] = q;
    }
    const uint32_t code = zigzag(residual);
    codes[i] = code;
    result.max_code = std::max<uint64_t>(result.max_code, code);
  }
  return result;
}

template <typename S, typename T>
void decode_chunk(const S* codes, size_t count, double step, size_t stride, Columns columns, T* out,
                  std::vector<int64_t>& previous) {
  if (!stride && !columns.period) {
    for (size_t i = 0; i < count; ++i)
      out[i] = static_cast<T>(static_cast<double>(unzigzag(static_cast<uint32_t>(codes[i]))) * step);
    return;
  }
  if (!stride) {
    for (size_t i = 0; i < count; ++i)
      out[i] = static_cast<T>(static_cast<double>(unzigzag(static_cast<uint32_t>(codes[i])) + columns.next()) * step);
    return;
  }
  std::fill(previous.begin(), previous.end(), 0);
  size_t lane = 0;
  for (size_t i = 0; i < count; ++i) {
    const int64_t q = unzigzag(static_cast<uint32_t>(codes[i])) + previous[lane];
    previous[lane] = q;
    out[i] = static_cast<T>(static_cast<double>(q + columns.next()) * step);
    if (++lane == stride) lane = 0;
  }
}

void check_layout(size_t stride, size_t chunk_elements, double step, const int32_t* offsets, size_t period) {
  if (chunk_elements == 0) throw InvalidArgumentError("grid code: chunk_elements must be at least 1");
  if (period && !offsets) throw InvalidArgumentError("grid code: offsets missing for a period");
  for (size_t c = 0; c < period; ++c)
    if (!(offsets[c] < kMaxInteger && offsets[c] > -kMaxInteger))
      throw InvalidArgumentError("grid code: offsets must lie within +-2^30");
  if (stride && chunk_elements % stride) throw InvalidArgumentError("grid code: chunk_elements must be a multiple of stride");
  if (!(step > 0.0) || !std::isfinite(step)) throw InvalidArgumentError("grid code: step must be positive and finite");
}

}  // namespace

GridEncodeResult grid_encode(const void* x, bool is_double, size_t count, double step, size_t stride,
                             size_t chunk_elements, const int32_t* offsets, size_t period, uint32_t* codes,
                             int threads) {
  check_layout(stride, chunk_elements, step, offsets, period);
  const size_t chunks = (count + chunk_elements - 1) / chunk_elements;
  std::vector<GridEncodeResult> results(chunks);
  const size_t workers = worker_count(chunks, threads);
  std::vector<std::vector<int64_t>> previous(workers, std::vector<int64_t>(stride));
  parallel_for(chunks, threads, [&](size_t c, size_t worker) {
    const size_t start = c * chunk_elements, n = std::min(chunk_elements, count - start);
    const Columns columns{offsets, period, period ? start % period : 0};
    results[c] = is_double ? encode_chunk(static_cast<const double*>(x) + start, n, step, stride, columns,
                                          codes + start, previous[worker])
                           : encode_chunk(static_cast<const float*>(x) + start, n, step, stride, columns,
                                          codes + start, previous[worker]);
  });
  GridEncodeResult total{0.0, 0, true};
  for (const GridEncodeResult& r : results) {
    total.max_error = std::max(total.max_error, r.max_error);
    total.max_code = std::max(total.max_code, r.max_code);
    total.finite = total.finite && r.finite;
  }
  return total;
}

void grid_decode(const uint8_t* codes, int symbol_bytes, size_t count, double step, size_t stride,
                 size_t chunk_elements, const int32_t* offsets, size_t period, void* out, bool out_double,
                 int threads) {
  check_layout(stride, chunk_elements, step, offsets, period);
  if (symbol_bytes != 1 && symbol_bytes != 2 && symbol_bytes != 4)
    throw InvalidArgumentError("grid_decode: symbols are 1, 2 or 4 bytes");
  const size_t chunks = (count + chunk_elements - 1) / chunk_elements;
  const size_t workers = worker_count(chunks, threads);
  std::vector<std::vector<int64_t>> previous(workers, std::vector<int64_t>(stride));
  parallel_for(chunks, threads, [&](size_t c, size_t worker) {
    const size_t start = c * chunk_elements, n = std::min(chunk_elements, count - start);
    const Columns columns{offsets, period, period ? start % period : 0};
    auto run = [&](auto* typed_out) {
      if (symbol_bytes == 1)
        decode_chunk(codes + start, n, step, stride, columns, typed_out + start, previous[worker]);
      else if (symbol_bytes == 2)
        decode_chunk(reinterpret_cast<const uint16_t*>(codes) + start, n, step, stride, columns, typed_out + start,
                     previous[worker]);
      else
        decode_chunk(reinterpret_cast<const uint32_t*>(codes) + start, n, step, stride, columns, typed_out + start,
                     previous[worker]);
    };
    if (out_double)
      run(static_cast<double*>(out));
    else
      run(static_cast<float*>(out));
  });
}

}  // namespace tensorzip
