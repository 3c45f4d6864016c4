// The dispatch itself: TENSORZIP_SIMD caps every kernel's path, CRC-32C included.
#include <cstdlib>
#include <cstring>
#include <string>

#include "check.hpp"
#include "cpu_features.hpp"

using namespace tensorzip;

namespace {

// What the process must have read from TENSORZIP_SIMD (the cap tests start with).
SimdCap expected_cap() {
  const char* value = std::getenv("TENSORZIP_SIMD");
  if (value != nullptr && std::strcmp(value, "scalar") == 0) return SimdCap::kScalar;
  if (value != nullptr && std::strcmp(value, "avx2") == 0) return SimdCap::kAvx2;
  return SimdCap::kAll;
}

}  // namespace

TEST(cpu_features, environment_sets_the_cap) { CHECK_EQ(simd_cap(), expected_cap()); }

TEST(cpu_features, scalar_forces_every_portable_path) {
  const SimdCap before = set_simd_cap(SimdCap::kScalar);
  CHECK_EQ(rans_encode_path(), RansPath::kScalar);
  CHECK_EQ(rans_decode_path(), RansPath::kScalar);
  CHECK_EQ(crc32c_path(), Crc32cPath::kPortable);
  set_simd_cap(before);
  if (expected_cap() == SimdCap::kScalar) {  // and the environment alone does it
    CHECK_EQ(std::string(path_name(rans_encode_path())), std::string("scalar"));
    CHECK_EQ(std::string(path_name(rans_decode_path())), std::string("scalar"));
    CHECK_EQ(std::string(path_name(crc32c_path())), std::string("portable"));
  }
}

TEST(cpu_features, paths_follow_cap_and_cpu) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.popcnt;
  const bool avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.popcnt;
  const SimdCap before = simd_cap();
  for (SimdCap cap : {SimdCap::kScalar, SimdCap::kAvx2, SimdCap::kAll}) {
    set_simd_cap(cap);
    const bool allow_avx2 = cap >= SimdCap::kAvx2 && avx2;
    const bool allow_avx512 = cap >= SimdCap::kAll && avx512;
    CHECK_EQ(rans_encode_path(), allow_avx2 ? RansPath::kAvx2 : RansPath::kScalar);
    CHECK_EQ(rans_decode_path(),
             allow_avx512 ? RansPath::kAvx512 : (allow_avx2 ? RansPath::kAvx2 : RansPath::kScalar));
    // SSE4.2 sits below the avx2 cap: only "scalar" rules it out; the 512-bit folds need the full cap.
    const bool fold512 = cap >= SimdCap::kAll && f.sse42 && f.avx512f && f.pclmul && f.vpclmulqdq;
    CHECK_EQ(crc32c_path(), fold512                              ? Crc32cPath::kFold512
                            : cap >= SimdCap::kAvx2 && f.sse42 ? Crc32cPath::kSse42
                                                               : Crc32cPath::kPortable);
  }
  CHECK_EQ(set_simd_cap(before), SimdCap::kAll);
  CHECK_EQ(simd_cap(), before);
}

TEST(cpu_features, detection_is_consistent) {
  const CpuFeatures& f = cpu_features();
  CHECK(&f == &cpu_features());  // detected once
#if !(defined(__x86_64__) || defined(_M_X64))
  CHECK(!f.sse42 && !f.avx2 && !f.avx512f);
#else
  // Every x86-64 CPU with AVX2 has SSE4.2; AVX-512BW/VL come with AVX-512F.
  if (f.avx2) CHECK(f.sse42);
  if (f.avx512bw || f.avx512vl) CHECK(f.avx512f);
  if (f.vpclmulqdq) CHECK(f.pclmul);
#endif
  CHECK_EQ(std::string(path_name(RansPath::kAvx512)), std::string("avx512"));
  CHECK_EQ(std::string(path_name(RansPath::kAvx2)), std::string("avx2"));
  CHECK_EQ(std::string(path_name(RansPath::kScalar)), std::string("scalar"));
  CHECK_EQ(std::string(path_name(Crc32cPath::kFold512)), std::string("avx512-clmul"));
  CHECK_EQ(std::string(path_name(Crc32cPath::kSse42)), std::string("sse4.2"));
  CHECK_EQ(std::string(path_name(Crc32cPath::kPortable)), std::string("portable"));
}
