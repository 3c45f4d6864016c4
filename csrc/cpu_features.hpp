// The one place that decides which instruction-set path each kernel takes.
//
// The CPU's features are detected once per process; TENSORZIP_SIMD is read once
// per process and caps what may be used:
//   unset (or any other value)  every path the CPU has
//   avx2                        nothing above AVX2 (no AVX-512); SSE4.2 stays
//   scalar                      the portable path of every kernel
// Every path of a kernel produces the same bytes, so the cap changes speed only;
// it lets one machine run (and the tests check) every path. Kernels ask for their
// path here on each call (a few loads and compares), never cache it themselves.
#pragma once

namespace tensorzip {

// Ordered: a cap allows every level at or below it.
enum class SimdCap : int { kScalar = 0, kAvx2 = 1, kAll = 2 };

struct CpuFeatures {
  bool sse42 = false;
  bool popcnt = false;
  bool avx2 = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool pclmul = false;      // carry-less multiply (128-bit)
  bool vpclmulqdq = false;  // carry-less multiply on 512-bit vectors (with AVX-512F)
};

// What this CPU (and OS) supports, detected on first use. All false off x86-64.
const CpuFeatures& cpu_features();

// The cap in force: TENSORZIP_SIMD as read on first use, unless set_simd_cap
// changed it since.
SimdCap simd_cap();

// Test hook (C++ unit tests only; not exposed to Python): sets the cap for the
// whole process and returns the previous one. A cap never enables an instruction
// set the CPU lacks. Not meant to be changed while kernels run on other threads
// (it is atomic, but a kernel may then mix paths between calls).
SimdCap set_simd_cap(SimdCap cap);

// The path each SIMD-dispatched kernel takes under the current cap.
enum class RansPath : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
// kFold512: four 512-bit carry-less-multiply folds (AVX-512F + VPCLMULQDQ), ~3x the
// three-stream crc32 instruction; under the full cap only.
enum class Crc32cPath : int { kPortable = 0, kSse42 = 1, kFold512 = 2 };

// Kernels with one AVX2 path beside the portable one (embedding scores, packed symbols, the
// embedding quantizer): whether the AVX2 path runs: built (GCC/Clang on x86-64), on this CPU,
// under the cap.
bool avx2_path_allowed();

// Kernels with a BMI2 path (pdep: the context plane's low bits) beside the portable one:
// built, on this CPU, and under the AVX2 cap (the CPUs with AVX2 have BMI2 too).
bool bmi2_path_allowed();

RansPath rans_encode_path();  // AVX2 or scalar (there is no AVX-512 encoder)
RansPath rans_decode_path();  // AVX-512, AVX2 or scalar (also the paired decoder)
Crc32cPath crc32c_path();     // AVX-512 carry-less folds, SSE4.2 crc32 instruction or the portable table

const char* path_name(RansPath path);    // "scalar", "avx2", "avx512"
const char* path_name(Crc32cPath path);  // "portable", "sse4.2", "avx512-clmul"

}  // namespace tensorzip
