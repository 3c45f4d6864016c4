// A tiny test harness (standard library only): TEST(group, name) registers a
// test; CHECK* record a failure (file, line, values) and let the test go on;
// REQUIRE stops the test. tensorzip_core_tests [GROUP...] runs the tests of
// those groups (all without arguments) and exits non-zero if any check failed or
// no test matched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu_features.hpp"

namespace tztest {

struct TestCase {
  const char* group;
  const char* name;
  void (*run)();
};

std::vector<TestCase>& registry();

struct Register {
  Register(const char* group, const char* name, void (*run)()) { registry().push_back({group, name, run}); }
};

// Records a failed check (prints at most a few per test, counts all).
void fail(const char* file, int line, const std::string& message);

// Thrown by REQUIRE to leave the current test.
struct Abort {};

template <typename T>
std::string show(const T& value) {
  std::ostringstream out;
  if constexpr (std::is_integral_v<T> && sizeof(T) == 1) {
    out << static_cast<int>(value);
  } else if constexpr (std::is_enum_v<T>) {
    out << static_cast<long long>(value);
  } else {
    out << value;
  }
  return out.str();
}

// Deterministic on every platform: raw mt19937_64 output, no std distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  uint64_t below(uint64_t n) { return next() % n; }
  std::vector<uint8_t> bytes(size_t n) {
    std::vector<uint8_t> out(n);
    for (uint8_t& b : out) b = static_cast<uint8_t>(next());
    return out;
  }

 private:
  std::mt19937_64 engine_;
};

// Runs body(cap) once for every SIMD cap from scalar up to the cap the process
// started with (TENSORZIP_SIMD), then restores it. Under TENSORZIP_SIMD=scalar
// that is the scalar paths only.
void for_each_simd_cap(const std::function<void(tensorzip::SimdCap)>& body);

// "cap 2 (rans_decode avx512, rans_encode avx2, crc32c sse4.2)" for messages.
std::string describe_paths();

}  // namespace tztest

#define TZ_CONCAT2(a, b) a##b
#define TZ_CONCAT(a, b) TZ_CONCAT2(a, b)

#define TEST(group, name)                                                                                     \
  static void TZ_CONCAT(test_, TZ_CONCAT(group, TZ_CONCAT(_, name)))();                                       \
  static const ::tztest::Register TZ_CONCAT(register_, TZ_CONCAT(group, TZ_CONCAT(_, name)))(                 \
      #group, #name, &TZ_CONCAT(test_, TZ_CONCAT(group, TZ_CONCAT(_, name))));                                \
  static void TZ_CONCAT(test_, TZ_CONCAT(group, TZ_CONCAT(_, name)))()

#define CHECK(condition)                                                                                      \
  do {                                                                                                        \
    if (!(condition)) ::tztest::fail(__FILE__, __LINE__, "CHECK(" #condition ")");                            \
  } while (0)

#define CHECK_EQ(actual, expected)                                                                            \
  do {                                                                                                        \
    const auto tz_a = (actual); /* a copy: (actual) may refer into a temporary */                             \
    const auto tz_e = (expected);                                                                             \
    if (!(tz_a == tz_e)) {                                                                                    \
      ::tztest::fail(__FILE__, __LINE__,                                                                      \
                     "CHECK_EQ(" #actual ", " #expected "): " + ::tztest::show(tz_a) + " != " +               \
                         ::tztest::show(tz_e) + " [" + ::tztest::describe_paths() + "]");                     \
    }                                                                                                         \
  } while (0)

// Byte vectors (or anything with ==, size() and operator[]): reports the first difference.
#define CHECK_BYTES(actual, expected)                                                                         \
  do {                                                                                                        \
    const auto& tz_a = (actual);                                                                              \
    const auto& tz_e = (expected);                                                                            \
    if (!(tz_a == tz_e)) {                                                                                    \
      size_t tz_i = 0;                                                                                        \
      while (tz_i < tz_a.size() && tz_i < tz_e.size() && tz_a[tz_i] == tz_e[tz_i]) ++tz_i;                    \
      ::tztest::fail(__FILE__, __LINE__,                                                                      \
                     "CHECK_BYTES(" #actual ", " #expected "): sizes " + std::to_string(tz_a.size()) +        \
                         " / " + std::to_string(tz_e.size()) + ", first difference at " +                     \
                         std::to_string(tz_i) + " [" + ::tztest::describe_paths() + "]");                     \
    }                                                                                                         \
  } while (0)

// expression must throw exactly_this (or a subclass); anything else fails.
#define CHECK_THROWS(expression, exception_type)                                                              \
  do {                                                                                                        \
    bool tz_thrown = false;                                                                                   \
    try {                                                                                                     \
      (void)(expression);                                                                                     \
    } catch (const exception_type&) {                                                                         \
      tz_thrown = true;                                                                                       \
    } catch (const std::exception& tz_other) {                                                                \
      ::tztest::fail(__FILE__, __LINE__,                                                                      \
                     "CHECK_THROWS(" #expression ", " #exception_type "): threw another exception: " +        \
                         std::string(tz_other.what()));                                                       \
      tz_thrown = true;                                                                                       \
    }                                                                                                         \
    if (!tz_thrown) {                                                                                         \
      ::tztest::fail(__FILE__, __LINE__, "CHECK_THROWS(" #expression ", " #exception_type "): no exception"); \
    }                                                                                                         \
  } while (0)

#define REQUIRE(condition)                                                                                    \
  do {                                                                                                        \
    if (!(condition)) {                                                                                       \
      ::tztest::fail(__FILE__, __LINE__, "REQUIRE(" #condition ")");                                          \
      throw ::tztest::Abort{};                                                                                \
    }                                                                                                         \
  } while (0)
