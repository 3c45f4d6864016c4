// tensorzip._native: the Python face of the C++ core. Private; the package's
// Python modules wrap it and turn its exceptions into TensorzipError subclasses.
//
// Buffers are taken through the buffer protocol (bytes, bytearray, memoryview,
// numpy arrays of any dtype) as flat contiguous bytes; every long-running call
// releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "byte_planes.hpp"
#include "chunk_codec.hpp"
#include "cpu_features.hpp"
#include "crc32c.hpp"
#include "delta.hpp"
#include "errors.hpp"
#include "file_writeback.hpp"
#include "frequency_table.hpp"
#include "grid_code.hpp"
#include "symbol_scores.hpp"
#include "tensor_codec.hpp"

namespace py = pybind11;
using namespace tensorzip;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensorzip's native core assumes a little-endian host"
#endif

namespace {

// A C-contiguous byte view of any buffer-protocol object, released with the GIL held. A
// Fortran-ordered array is refused (numpy: ValueError "not C-contiguous"): its bytes are not the row-major
// layout every kernel here assumes.
class ByteView {
 public:
  ByteView(const py::handle& object, bool writable) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object.ptr(), &view_, flags) != 0) throw py::error_already_set();
  }
  ~ByteView() { PyBuffer_Release(&view_); }
  ByteView(const ByteView&) = delete;
  ByteView& operator=(const ByteView&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// A job tuple of the wrong shape, or with a number its C++ field cannot hold, is a
// TypeError, as for any argument pybind11 cannot convert (a bare cast would raise
// RuntimeError).
template <typename Tuple>
Tuple cast_job(const py::handle& item, const char* expected) {
  try {
    return item.cast<Tuple>();
  } catch (const py::cast_error&) {
    throw py::type_error(std::string("each job must be ") + expected + ", got a " +
                         std::string(py::str(py::type::handle_of(item).attr("__name__"))) +
                         " that does not fit it (wrong shape, type, or a number out of range)");
  }
}

DeltaMode delta_mode(int mode) {
  if (mode != 0 && mode != 1) throw InvalidArgumentError("delta mode must be 0 (xor) or 1 (sub)");
  return static_cast<DeltaMode>(mode);
}

TensorLayout make_layout(int width, int rotate, long long chunk_elements, bool context = false) {
  if (chunk_elements < 1) throw InvalidArgumentError("chunk_elements must be at least 1");
  TensorLayout layout{width, rotate, static_cast<size_t>(chunk_elements), context};
  validate_layout(layout);
  return layout;
}

std::vector<EncodeJob> encode_jobs(const py::list& jobs, std::vector<std::unique_ptr<ByteView>>& views) {
  std::vector<EncodeJob> native_jobs;
  for (const py::handle& item : jobs) {
    // The layout's last field, context planes (issue 22's max level), may be left out.
    const bool with_context = py::isinstance<py::tuple>(item) && py::len(item) == 5;
    const auto job = with_context
        ? cast_job<std::tuple<py::object, int, int, long long, bool>>(
              item, "(data, width, rotate, chunk_elements[, context_planes])")
        : std::tuple_cat(cast_job<std::tuple<py::object, int, int, long long>>(
                             item, "(data, width, rotate, chunk_elements[, context_planes])"),
                         std::make_tuple(false));
    views.push_back(std::make_unique<ByteView>(std::get<0>(job), false));
    EncodeJob native;
    native.data = views.back()->data();
    native.length = views.back()->size();
    native.layout = make_layout(std::get<1>(job), std::get<2>(job), std::get<3>(job), std::get<4>(job));
    native_jobs.push_back(native);
  }
  return native_jobs;
}

// Per tensor: ([chunk], [crc32c], plane histograms as a width x 256 uint64 array,
// order-0 bound in bytes), each chunk made by make_chunk(EncodedChunk&).
template <typename MakeChunk>
py::list encoded_result(const std::vector<EncodeJob>& jobs, EncodeArena& arena, MakeChunk make_chunk) {
  py::list result;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const int width = jobs[j].layout.width;
    py::array_t<uint64_t> histograms({static_cast<py::ssize_t>(width), py::ssize_t{256}});
    auto h = histograms.mutable_unchecked<2>();
    for (int k = 0; k < width; ++k) {
      for (int s = 0; s < 256; ++s) h(k, s) = 0;
    }
    py::list chunks;
    py::list crcs;
    const size_t n = chunk_count(jobs[j].length / width, jobs[j].layout.chunk_elements);
    for (size_t c = 0; c < n; ++c) {
      EncodedChunk& chunk = arena.chunks[arena.first_chunk[j] + c];
      for (int k = 0; k < width; ++k) {
        for (int s = 0; s < 256; ++s) h(k, s) += chunk.histograms[k][s];
      }
      crcs.append(chunk.crc32c);
      chunks.append(make_chunk(chunk));
    }
    double bound_bits = 0.0;
    for (int k = 0; k < width; ++k) {
      ByteHistogram plane{};
      for (int s = 0; s < 256; ++s) plane[s] = h(k, s);
      bound_bits += entropy_bits(plane);
    }
    result.append(py::make_tuple(chunks, crcs, histograms, bound_bits / 8.0));
  }
  return result;
}

// jobs: [(data, width, rotate, chunk_elements[, context_planes])] -> per tensor ([chunk arrays], [crc32c], histograms).
// The arrays own their bytes.
py::list encode_tensors_py(const py::list& jobs, int threads) {
  std::vector<std::unique_ptr<ByteView>> views;
  const std::vector<EncodeJob> native_jobs = encode_jobs(jobs, views);
  EncodeArena arena;
  {
    py::gil_scoped_release release;
    encode_tensors(native_jobs, threads, arena);
  }
  return encoded_result(native_jobs, arena, [](EncodedChunk& chunk) {
    auto* owned = new std::vector<uint8_t>(std::move(chunk.bytes));
    py::capsule release(owned, [](void* p) { delete static_cast<std::vector<uint8_t>*>(p); });
    return py::array_t<uint8_t>({static_cast<py::ssize_t>(owned->size())}, owned->data(), release);
  });
}

// An encoder that keeps its buffers between calls (see EncodeArena): the chunk
// views it returns stay valid only until its next encode() call.
class StreamingEncoder {
 public:
  explicit StreamingEncoder(int threads) : threads_(threads) {}

  py::list encode(const py::list& jobs) {
    std::vector<std::unique_ptr<ByteView>> views;
    const std::vector<EncodeJob> native_jobs = encode_jobs(jobs, views);
    {
      py::gil_scoped_release release;
      encode_tensors(native_jobs, threads_, arena_);
    }
    return encoded_result(native_jobs, arena_, [](EncodedChunk& chunk) {
      return py::memoryview::from_memory(chunk.bytes.data(), static_cast<py::ssize_t>(chunk.bytes.size()), true);
    });
  }

 private:
  int threads_;
  EncodeArena arena_;
};

// jobs: [(source, [(offset, length, crc32c)], out, width, rotate, chunk_elements[, context_planes])]
void decode_tensors_py(const py::list& jobs, int threads, bool verify_checksums) {
  std::vector<std::unique_ptr<ByteView>> views;
  std::vector<DecodeJob> native_jobs;
  for (const py::handle& item : jobs) {
    using Table = std::vector<std::tuple<unsigned long long, unsigned long long, uint32_t>>;
    const char* expected =
        "(source, [(offset, length, crc32c)], out, width, rotate, chunk_elements[, context_planes[, base, delta_mode, "
        "delta_is_float]])";
    // The optional fields: context planes (issue 22's max level), and a base the chunks are
    // residuals against (restored chunk by chunk, see DecodeJob).
    const size_t fields = py::isinstance<py::tuple>(item) ? py::len(item) : 0;
    using Full = std::tuple<py::object, Table, py::object, int, int, long long, bool, py::object, int, bool>;
    const Full job =
        fields == 10 ? cast_job<Full>(item, expected)
        : fields == 7
            ? std::tuple_cat(cast_job<std::tuple<py::object, Table, py::object, int, int, long long, bool>>(item, expected),
                             std::make_tuple(py::object(py::none()), 0, false))
            : std::tuple_cat(cast_job<std::tuple<py::object, Table, py::object, int, int, long long>>(item, expected),
                             std::make_tuple(false, py::object(py::none()), 0, false));
    DecodeJob native;
    views.push_back(std::make_unique<ByteView>(std::get<0>(job), false));
    native.source = views.back()->data();
    native.source_length = views.back()->size();
    for (const auto& [offset, length, crc] : std::get<1>(job)) native.chunks.push_back({offset, length, crc});
    views.push_back(std::make_unique<ByteView>(std::get<2>(job), true));
    native.out = views.back()->data();
    native.out_length = views.back()->size();
    native.layout = make_layout(std::get<3>(job), std::get<4>(job), std::get<5>(job), std::get<6>(job));
    if (!std::get<7>(job).is_none()) {
      views.push_back(std::make_unique<ByteView>(std::get<7>(job), false));
      if (views.back()->size() != native.out_length) {
        throw InvalidArgumentError("decode_tensors: a base must have the output's size");
      }
      native.base = views.back()->data();
      native.delta_mode = delta_mode(std::get<8>(job));
      native.delta_float = std::get<9>(job);
    }
    native_jobs.push_back(std::move(native));
  }
  py::gil_scoped_release release;
  decode_tensors(native_jobs, threads, verify_checksums);
}

py::array_t<uint64_t> plane_histograms_py(const py::object& data, int width, int rotate) {
  ByteView view(data, false);
  check_layout(width, rotate);  // before width divides anything (width 0 was a division by zero)
  require(view.size() % static_cast<size_t>(width) == 0, "byte length is not a multiple of the element width");
  std::vector<ByteHistogram> histograms;
  {
    py::gil_scoped_release release;
    ChunkScratch scratch;
    histograms = plane_histograms(view.data(), view.size() / width, width, rotate, scratch);
  }
  py::array_t<uint64_t> out({static_cast<py::ssize_t>(width), py::ssize_t{256}});
  auto m = out.mutable_unchecked<2>();
  for (int k = 0; k < width; ++k) {
    for (int s = 0; s < 256; ++s) m(k, s) = histograms[k][s];
  }
  return out;
}

uint32_t crc32c_py(const py::object& data, uint32_t previous) {
  ByteView view(data, false);
  py::gil_scoped_release release;
  return crc32c(view.data(), view.size(), previous);
}


void delta_residual_py(const py::object& a, const py::object& base, const py::object& out, int width, int mode,
                       bool is_float, int threads) {
  ByteView va(a, false), vb(base, false), vo(out, true);
  if (va.size() != vb.size() || va.size() != vo.size())
    throw InvalidArgumentError("delta_residual: tensor, base and output must have the same size");
  if (width < 1 || va.size() % static_cast<size_t>(width) != 0)
    throw InvalidArgumentError("delta_residual: size is not a multiple of the element width");
  const DeltaMode m = delta_mode(mode);
  py::gil_scoped_release release;
  delta_residual(va.data(), vb.data(), vo.data(), va.size() / width, width, m, is_float, threads);
}

void delta_restore_py(const py::object& stored, const py::object& base, int width, int mode, bool is_float,
                      int threads) {
  ByteView vs(stored, true), vb(base, false);
  if (vs.size() != vb.size()) throw InvalidArgumentError("delta_restore: tensor and base must have the same size");
  if (width < 1 || vs.size() % static_cast<size_t>(width) != 0)
    throw InvalidArgumentError("delta_restore: size is not a multiple of the element width");
  const DeltaMode m = delta_mode(mode);
  py::gil_scoped_release release;
  delta_restore(vs.data(), vb.data(), vs.size() / width, width, m, is_float, threads);
}

// A buffer that must hold exactly rows x columns items of `item` bytes (checked without
// overflow: the products are compared by division first).
void check_matrix(const ByteView& view, size_t rows, size_t columns, size_t item, const std::string& what) {
  if ((rows != 0 && columns > view.size() / item / rows) || view.size() != rows * columns * item)
    throw InvalidArgumentError(what);
}

void symbol_scores_py(const py::object& symbols, int symbol_bytes, size_t dims, size_t count, size_t start,
                      size_t stop, const py::object& weights, size_t queries, const py::object& out, int threads) {
  ByteView vs(symbols, false), vw(weights, false), vo(out, true);
  if (symbol_bytes != 1 && symbol_bytes != 2) throw InvalidArgumentError("symbol_scores: symbols are 1 or 2 bytes");
  check_matrix(vs, dims, count, static_cast<size_t>(symbol_bytes),
               "symbol_scores: symbols must hold exactly dims x count values");
  if (start > stop || stop > count) throw InvalidArgumentError("symbol_scores: vectors [start, stop) out of range");
  check_matrix(vw, queries, dims, sizeof(float), "symbol_scores: weights must be queries x dims float32");
  check_matrix(vo, queries, stop - start, sizeof(float),
               "symbol_scores: out must be queries x (stop - start) float32");
  py::gil_scoped_release release;
  symbol_scores(vs.data(), symbol_bytes, dims, count, start, stop, reinterpret_cast<const float*>(vw.data()),
                queries, reinterpret_cast<float*>(vo.data()), threads);
}

// The packed layout is checked whole before any native code reads it: widths at most 16,
// rows in order, each starting where the previous one ends or later, the last one ending
// kPackedPadding bytes before the buffer does.
struct PackedLayout {
  const uint8_t* widths;
  const uint64_t* row_starts;
};

PackedLayout check_packed(const ByteView& packed, const ByteView& widths, const ByteView& row_starts, size_t dims,
                          size_t count, const char* where) {
  const std::string name(where);
  if (widths.size() != dims) throw InvalidArgumentError(name + ": widths must hold one uint8 per row");
  if (row_starts.size() != dims * sizeof(uint64_t))
    throw InvalidArgumentError(name + ": row_starts must be dims uint64");
  const auto* w = widths.data();
  const auto* starts = reinterpret_cast<const uint64_t*>(row_starts.data());
  uint64_t end = 0;
  for (size_t j = 0; j < dims; ++j) {
    if (w[j] > 16) throw InvalidArgumentError(name + ": a row is wider than 16 bits");
    if (starts[j] < end) throw InvalidArgumentError(name + ": rows overlap or are out of order");
    if (count > (UINT64_MAX - 7) / 16 || starts[j] > packed.size())
      throw InvalidArgumentError(name + ": a row starts past the buffer");
    end = starts[j] + packed_row_bytes(count, w[j]);
  }
  if (end + kPackedPadding > packed.size())
    throw InvalidArgumentError(name + ": the rows (and their padding) run past the buffer");
  return {w, starts};
}

void pack_rows_py(const py::object& symbols, int symbol_bytes, size_t dims, size_t count, const py::object& widths,
                  const py::object& row_starts, const py::object& out) {
  ByteView vs(symbols, false), vw(widths, false), vr(row_starts, false), vo(out, true);
  if (symbol_bytes != 1 && symbol_bytes != 2) throw InvalidArgumentError("pack_rows: symbols are 1 or 2 bytes");
  check_matrix(vs, dims, count, static_cast<size_t>(symbol_bytes),
               "pack_rows: symbols must hold exactly dims x count values");
  const PackedLayout layout = check_packed(vo, vw, vr, dims, count, "pack_rows");
  py::gil_scoped_release release;
  pack_rows(vs.data(), symbol_bytes, dims, count, layout.widths, layout.row_starts, vo.data());
}

void unpack_rows_py(const py::object& packed, const py::object& widths, const py::object& row_starts, size_t dims,
                    size_t count, size_t start, size_t stop, int symbol_bytes, const py::object& out, int threads) {
  ByteView vp(packed, false), vw(widths, false), vr(row_starts, false), vo(out, true);
  if (symbol_bytes != 1 && symbol_bytes != 2) throw InvalidArgumentError("unpack_rows: symbols are 1 or 2 bytes");
  if (start > stop || stop > count) throw InvalidArgumentError("unpack_rows: vectors [start, stop) out of range");
  check_matrix(vo, dims, stop - start, static_cast<size_t>(symbol_bytes),
               "unpack_rows: out must hold exactly dims x (stop - start) values");
  const PackedLayout layout = check_packed(vp, vw, vr, dims, count, "unpack_rows");
  if (symbol_bytes == 1)
    for (size_t j = 0; j < dims; ++j)
      if (layout.widths[j] > 8) throw InvalidArgumentError("unpack_rows: a row wider than 8 bits needs 2-byte symbols");
  py::gil_scoped_release release;
  unpack_rows(vp.data(), layout.widths, layout.row_starts, dims, count, start, stop, symbol_bytes, vo.data(),
              threads);
}

void packed_symbol_scores_py(const py::object& packed, const py::object& widths, const py::object& row_starts,
                             size_t dims, size_t count, size_t start, size_t stop, const py::object& weights,
                             size_t queries, const py::object& out, int threads) {
  ByteView vp(packed, false), vw(widths, false), vr(row_starts, false), vq(weights, false), vo(out, true);
  if (start > stop || stop > count)
    throw InvalidArgumentError("packed_symbol_scores: vectors [start, stop) out of range");
  check_matrix(vq, queries, dims, sizeof(float), "packed_symbol_scores: weights must be queries x dims float32");
  check_matrix(vo, queries, stop - start, sizeof(float),
               "packed_symbol_scores: out must be queries x (stop - start) float32");
  const PackedLayout layout = check_packed(vp, vw, vr, dims, count, "packed_symbol_scores");
  py::gil_scoped_release release;
  packed_symbol_scores(vp.data(), layout.widths, layout.row_starts, dims, count, start, stop,
                       reinterpret_cast<const float*>(vq.data()), queries, reinterpret_cast<float*>(vo.data()),
                       threads);
}

void unzigzag_to_float_py(const py::object& symbols, int symbol_bytes, const py::object& out) {
  ByteView vs(symbols, false), vo(out, true);
  if (symbol_bytes != 1 && symbol_bytes != 2) throw InvalidArgumentError("unzigzag_to_float: symbols are 1 or 2 bytes");
  const size_t count = vs.size() / static_cast<size_t>(symbol_bytes);
  if (vs.size() % static_cast<size_t>(symbol_bytes) != 0 || vo.size() != count * sizeof(float))
    throw InvalidArgumentError("unzigzag_to_float: out must hold one float32 per symbol");
  py::gil_scoped_release release;
  unzigzag_to_float(vs.data(), symbol_bytes, count, reinterpret_cast<float*>(vo.data()));
}

// Per-column offsets as the grid kernels take them: int32, any length (0: none).
size_t offset_period(const ByteView& offsets, const char* what) {
  if (offsets.size() % sizeof(int32_t) != 0) throw InvalidArgumentError(std::string(what) + ": offsets are int32");
  return offsets.size() / sizeof(int32_t);
}

py::tuple grid_encode_py(const py::object& x, int value_bytes, double step, size_t stride, size_t chunk_elements,
                         const py::object& offsets, const py::object& codes, int threads, int decoded) {
  ByteView vx(x, false), vc(codes, true), voff(offsets, false);
  const size_t period = offset_period(voff, "grid_encode");
  if (value_bytes != 4 && value_bytes != 8) throw InvalidArgumentError("grid_encode: values are float32 or float64");
  const GridType type = decoded < 0 ? (value_bytes == 8 ? GridType::kFloat64 : GridType::kFloat32) : grid_type(decoded);
  const size_t count = vx.size() / static_cast<size_t>(value_bytes);
  if (vx.size() % static_cast<size_t>(value_bytes) != 0 || vc.size() != count * sizeof(uint32_t))
    throw InvalidArgumentError("grid_encode: codes must hold one uint32 per value");
  GridEncodeResult result;
  {
    py::gil_scoped_release release;
    result = grid_encode(vx.data(), value_bytes == 8, count, step, stride, chunk_elements,
                         reinterpret_cast<const int32_t*>(voff.data()), period, type,
                         reinterpret_cast<uint32_t*>(vc.data()), threads);
  }
  return py::make_tuple(result.max_error, result.max_code, result.finite);
}

py::tuple grid_columns_py(const py::object& x, size_t rows, size_t columns, size_t row_stride,
                          const py::object& steps, const py::object& codes_t, int threads) {
  ByteView vx(x, false), vs(steps, false), vc(codes_t, true);
  if (row_stride < columns || (rows != 0 && row_stride > vx.size() / sizeof(float) / rows) ||
      vx.size() != rows * row_stride * sizeof(float) || vs.size() != columns * sizeof(float) ||
      (rows != 0 && columns > vc.size() / sizeof(uint32_t) / rows) || vc.size() != rows * columns * sizeof(uint32_t))
    throw InvalidArgumentError("grid_columns: x must be rows x row_stride float32 (row_stride >= columns), steps "
                               "one float32 per column, codes_t one uint32 per value");
  bool in_range = true;
  uint64_t largest;
  {
    py::gil_scoped_release release;
    largest = grid_columns(reinterpret_cast<const float*>(vx.data()), rows, columns, row_stride,
                           reinterpret_cast<const float*>(vs.data()), reinterpret_cast<uint32_t*>(vc.data()),
                           in_range, threads);
  }
  return py::make_tuple(largest, in_range);
}

void grid_decode_py(const py::object& codes, int symbol_bytes, double step, size_t stride, size_t chunk_elements,
                    const py::object& offsets, const py::object& out, int out_type, int threads) {
  ByteView vc(codes, false), vo(out, true), voff(offsets, false);
  const size_t period = offset_period(voff, "grid_decode");
  const GridType type = grid_type(out_type);
  if (symbol_bytes != 1 && symbol_bytes != 2 && symbol_bytes != 4)
    throw InvalidArgumentError("grid_decode: symbols are 1, 2 or 4 bytes");
  const size_t count = vc.size() / static_cast<size_t>(symbol_bytes);
  if (vc.size() % static_cast<size_t>(symbol_bytes) != 0 || vo.size() != count * grid_type_bytes(type))
    throw InvalidArgumentError("grid_decode: out must hold one value per symbol");
  py::gil_scoped_release release;
  grid_decode(vc.data(), symbol_bytes, count, step, stride, chunk_elements,
              reinterpret_cast<const int32_t*>(voff.data()), period, vo.data(), type, threads);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "tensorzip's native core (private; use the tensorzip package).";

  static py::exception<CorruptStreamError> corrupt_stream(m, "CorruptStreamError", PyExc_ValueError);
  static py::exception<ChunkError> chunk_error(m, "ChunkError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ChunkError& e) {
      // args = (message, job index, chunk index)
      py::object args = py::make_tuple(std::string(e.what()), e.job, e.chunk);
      PyErr_SetObject(chunk_error.ptr(), args.ptr());
    } catch (const CorruptStreamError& e) {
      corrupt_stream(e.what());
    } catch (const InvalidArgumentError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.attr("PROBABILITY_BITS") = kProbBits;
  m.attr("MAX_CHUNK_BYTES") = kMaxChunkBytes;
  m.def("encode_tensors", &encode_tensors_py, py::arg("jobs"), py::arg("threads"),
        "Encode [(data, width, rotate, chunk_elements)] into [([chunk arrays], crc32cs, histograms)].");
  py::class_<StreamingEncoder>(m, "StreamingEncoder",
                               "Encoder reusing its buffers; returned chunk views live until the next encode().")
      .def(py::init<int>(), py::arg("threads"))
      .def("encode", &StreamingEncoder::encode, py::arg("jobs"),
           "Like encode_tensors, but chunks are read-only memoryviews into reused buffers.");
  m.def("decode_tensors", &decode_tensors_py, py::arg("jobs"), py::arg("threads"),
        py::arg("verify_checksums") = true,
        "Decode [(source, [(offset, length, crc32c)], out, width, rotate, chunk_elements)] in place.");
  m.def("plane_histograms", &plane_histograms_py, py::arg("data"), py::arg("width"), py::arg("rotate"),
        "Byte histograms (width x 256) of each plane of data under a layout.");
  m.def("delta_residual", &delta_residual_py, py::arg("a"), py::arg("base"), py::arg("out"), py::arg("width"),
        py::arg("mode"), py::arg("is_float"), py::arg("threads"),
        "out = residual of a against base (mode 0 xor, 1 ordered difference, zigzag).");
  m.def("delta_restore", &delta_restore_py, py::arg("stored"), py::arg("base"), py::arg("width"), py::arg("mode"),
        py::arg("is_float"), py::arg("threads"), "Undo delta_residual in place.");
  m.def("symbol_scores", &symbol_scores_py, py::arg("symbols"), py::arg("symbol_bytes"), py::arg("dims"),
        py::arg("count"), py::arg("start"), py::arg("stop"), py::arg("weights"), py::arg("queries"), py::arg("out"),
        py::arg("threads"),
        "out[q, i - start] = sum_j weights[q, j] * unzigzag(symbols[j, i]) for i in [start, stop): scores "
        "without decoding the vectors.");
  m.def("pack_rows", &pack_rows_py, py::arg("symbols"), py::arg("symbol_bytes"), py::arg("dims"), py::arg("count"),
        py::arg("widths"), py::arg("row_starts"), py::arg("out"),
        "Rows of uint8/uint16 symbols bit-packed at widths[j] bits from byte row_starts[j] of out (zeroed; "
        "16 bytes of padding after the last row).");
  m.def("unpack_rows", &unpack_rows_py, py::arg("packed"), py::arg("widths"), py::arg("row_starts"),
        py::arg("dims"), py::arg("count"), py::arg("start"), py::arg("stop"), py::arg("symbol_bytes"),
        py::arg("out"), py::arg("threads"),
        "The symbols of vectors [start, stop) of every packed row, as dims x (stop - start).");
  m.def("packed_symbol_scores", &packed_symbol_scores_py, py::arg("packed"), py::arg("widths"),
        py::arg("row_starts"), py::arg("dims"), py::arg("count"), py::arg("start"), py::arg("stop"),
        py::arg("weights"), py::arg("queries"), py::arg("out"), py::arg("threads"),
        "symbol_scores over packed rows: the same floats.");
  m.def("unzigzag_to_float", &unzigzag_to_float_py, py::arg("symbols"), py::arg("symbol_bytes"), py::arg("out"),
        "out[i] = unzigzag(symbols[i]) as float32 (uint8 or uint16 codes).");
  m.def("grid_encode", &grid_encode_py, py::arg("x"), py::arg("value_bytes"), py::arg("step"), py::arg("stride"),
        py::arg("chunk_elements"), py::arg("offsets"), py::arg("codes"), py::arg("threads"), py::arg("decoded") = -1,
        "Grid integers of float32/float64 values, less offsets[i % len(offsets)] (int32; empty: none), predicted "
        "by the one `stride` before in each chunk, zigzag-coded into uint32 codes: (max error of the decoded "
        "values rounded to `decoded` (0 float32, 1 float64, 2 bfloat16, 3 float16; -1: the input's type), max "
        "code, all finite).");
  m.def("grid_columns", &grid_columns_py, py::arg("x"), py::arg("rows"), py::arg("columns"), py::arg("row_stride"),
        py::arg("steps"), py::arg("codes_t"), py::arg("threads"),
        "codes_t[c, r] = zigzag(rint(x[r, c] / steps[c])) in float32 arithmetic for the first `columns` columns of "
        "a rows x row_stride matrix, transposed: (largest code, every scaled value finite and within +-2^30).");
  m.def("grid_decode", &grid_decode_py, py::arg("codes"), py::arg("symbol_bytes"), py::arg("step"), py::arg("stride"),
        py::arg("chunk_elements"), py::arg("offsets"), py::arg("out"), py::arg("out_type"), py::arg("threads"),
        "The inverse of grid_encode (the same offsets): codes (1, 2 or 4 bytes) to values of out_type (0 float32, "
        "1 float64, 2 bfloat16, 3 float16; the 16-bit types as their bit patterns).");
  m.def("crc32c", &crc32c_py, py::arg("data"), py::arg("previous") = 0, "CRC-32C of a buffer.");
  m.def(
      "start_writeback",
      [](int fd, std::int64_t offset, std::int64_t length) {
        py::gil_scoped_release release;
        start_writeback(fd, offset, length);
      },
      py::arg("fd"), py::arg("offset"), py::arg("length"),
      "Start writing a just-written range of a file to its device without waiting (advice; fsync still "
      "reports errors).");
  m.def(
      "simd_paths",
      [] {
        py::dict paths;
        paths["rans_encode"] = path_name(rans_encode_path());
        paths["rans_decode"] = path_name(rans_decode_path());
        paths["crc32c"] = path_name(crc32c_path());
        paths["symbol_scores"] = symbol_scores_path();
        paths["grid_columns"] = grid_columns_path();
        return paths;
      },
      "The instruction-set path each SIMD-dispatched kernel takes in this process (CPU and TENSORZIP_SIMD): "
      "rans_encode avx2|scalar, rans_decode avx512|avx2|scalar, crc32c sse4.2|portable, symbol_scores avx2|portable.");
}
