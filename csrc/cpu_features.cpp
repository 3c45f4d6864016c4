#include "cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define TZ_DETECT_X86 1
#endif

namespace tensorzip {

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#ifdef TZ_DETECT_X86
  // __builtin_cpu_supports also checks that the OS saves the wider registers
  // (XCR0), so AVX2 / AVX-512 are reported only where they can really be used.
  __builtin_cpu_init();
  f.sse42 = __builtin_cpu_supports("sse4.2");
  f.popcnt = __builtin_cpu_supports("popcnt");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.bmi2 = __builtin_cpu_supports("bmi2");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.pclmul = __builtin_cpu_supports("pclmul");
  f.vpclmulqdq = __builtin_cpu_supports("vpclmulqdq");
#endif
  return f;
}

SimdCap cap_from_environment() {
  const char* value = std::getenv("TENSORZIP_SIMD");
  if (value == nullptr) return SimdCap::kAll;
  if (std::strcmp(value, "scalar") == 0) return SimdCap::kScalar;
  if (std::strcmp(value, "avx2") == 0) return SimdCap::kAvx2;
  return SimdCap::kAll;
}

std::atomic<int>& cap_storage() {
  static std::atomic<int> cap{static_cast<int>(cap_from_environment())};
  return cap;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

SimdCap simd_cap() { return static_cast<SimdCap>(cap_storage().load(std::memory_order_relaxed)); }

SimdCap set_simd_cap(SimdCap cap) {
  return static_cast<SimdCap>(cap_storage().exchange(static_cast<int>(cap), std::memory_order_relaxed));
}

namespace {

bool avx2_usable() {
  const CpuFeatures& f = cpu_features();
  return simd_cap() >= SimdCap::kAvx2 && f.avx2 && f.popcnt;
}

bool avx512_usable() {
  const CpuFeatures& f = cpu_features();
  return simd_cap() >= SimdCap::kAll && f.avx512f && f.avx512bw && f.avx512vl && f.popcnt;
}

// A kernel path at the AVX2 cap level that needs `feature`: built with GCC/Clang on
// x86-64 (the target attributes), on a CPU that has it, under the cap.
bool avx2_level_path(bool feature) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return simd_cap() >= SimdCap::kAvx2 && feature;
#else
  (void)feature;
  return false;
#endif
}

}  // namespace

bool avx2_path_allowed() { return avx2_level_path(cpu_features().avx2); }

bool bmi2_path_allowed() { return avx2_level_path(cpu_features().bmi2); }

RansPath rans_encode_path() { return avx2_usable() ? RansPath::kAvx2 : RansPath::kScalar; }

RansPath rans_decode_path() {
  if (avx512_usable()) return RansPath::kAvx512;
  return avx2_usable() ? RansPath::kAvx2 : RansPath::kScalar;
}

// SSE4.2 is below the AVX2 cap, so only "scalar" rules it out; the 512-bit folds need the full cap.
Crc32cPath crc32c_path() {
  const CpuFeatures& f = cpu_features();
  if (simd_cap() >= SimdCap::kAll && f.sse42 && f.avx512f && f.pclmul && f.vpclmulqdq) return Crc32cPath::kFold512;
  return simd_cap() >= SimdCap::kAvx2 && f.sse42 ? Crc32cPath::kSse42 : Crc32cPath::kPortable;
}

const char* path_name(RansPath path) {
  switch (path) {
    case RansPath::kAvx512: return "avx512";
    case RansPath::kAvx2: return "avx2";
    default: return "scalar";
  }
}

const char* path_name(Crc32cPath path) {
  switch (path) {
    case Crc32cPath::kFold512: return "avx512-clmul";
    case Crc32cPath::kSse42: return "sse4.2";
    default: return "portable";
  }
}

}  // namespace tensorzip
