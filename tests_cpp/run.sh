#!/usr/bin/env bash
# Configures, builds and runs the C++ unit tests of the native core (tests_cpp/)
# with ctest: every test group twice, once as the environment has it (the best SIMD
# paths of this CPU, and each lower one in-process) and once with
# TENSORZIP_SIMD=scalar (every kernel on its portable path).
#
#   tests_cpp/run.sh                          # build dir: build/tests_cpp
#   BUILD_DIR=/tmp/tz-tests tests_cpp/run.sh
#   CMAKE_ARGS="-DTENSORZIP_SANITIZE=ON" tests_cpp/run.sh    # the tests under ASan + UBSan
#
# Needs only cmake and a C++17 compiler: the Python module is not built
# (-DTENSORZIP_PYTHON=OFF), so neither Python nor pybind11 is looked for.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build/tests_cpp}"
JOBS="${JOBS:-2}"

mkdir -p "$BUILD"
GENERATOR=()
if [ ! -f "$BUILD/CMakeCache.txt" ] && ninja --version >/dev/null 2>&1; then
  GENERATOR=(-G Ninja)
fi
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of words
cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DTENSORZIP_PYTHON=OFF -DTENSORZIP_TESTS=ON ${CMAKE_ARGS:-} >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" --parallel "$JOBS"
cd "$BUILD" && ctest --output-on-failure --parallel "$JOBS"
