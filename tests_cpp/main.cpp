#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "check.hpp"

namespace tztest {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

namespace {
int failures_in_test = 0;
int failed_checks = 0;
}  // namespace

void fail(const char* file, int line, const std::string& message) {
  ++failed_checks;
  if (++failures_in_test <= 10) std::fprintf(stdout, "  %s:%d: FAILED %s\n", file, line, message.c_str());
  if (failures_in_test == 11) std::fprintf(stdout, "  (further failures of this test not shown)\n");
}

void for_each_simd_cap(const std::function<void(tensorzip::SimdCap)>& body) {
  const tensorzip::SimdCap start = tensorzip::simd_cap();
  for (int cap = 0; cap <= static_cast<int>(start); ++cap) {
    tensorzip::set_simd_cap(static_cast<tensorzip::SimdCap>(cap));
    try {
      body(static_cast<tensorzip::SimdCap>(cap));
    } catch (...) {
      tensorzip::set_simd_cap(start);
      throw;
    }
  }
  tensorzip::set_simd_cap(start);
}

std::string describe_paths() {
  using namespace tensorzip;
  return "cap " + std::to_string(static_cast<int>(simd_cap())) + ": rans_encode " +
         path_name(rans_encode_path()) + ", rans_decode " + path_name(rans_decode_path()) + ", crc32c " +
         path_name(crc32c_path());
}

}  // namespace tztest

int main(int argc, char** argv) {
  using namespace tztest;
  const char* simd = std::getenv("TENSORZIP_SIMD");
  std::printf("TENSORZIP_SIMD=%s; paths: %s\n", simd ? simd : "(unset)", describe_paths().c_str());
  int run = 0;
  int failed_tests = 0;
  for (const TestCase& test : registry()) {
    bool selected = argc < 2;
    for (int i = 1; i < argc; ++i) selected = selected || std::strcmp(argv[i], test.group) == 0;
    if (!selected) continue;
    ++run;
    failures_in_test = 0;
    try {
      test.run();
    } catch (const Abort&) {
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    std::printf("%s %s.%s\n", failures_in_test ? "FAIL" : "ok  ", test.group, test.name);
    if (failures_in_test) ++failed_tests;
  }
  std::fflush(stdout);
  if (run == 0) {
    std::fprintf(stderr, "no test matched the groups given\n");
    return 2;
  }
  std::printf("%d tests, %d failed (%d failed checks)\n", run, failed_tests, failed_checks);
  return failed_tests ? 1 : 0;
}
