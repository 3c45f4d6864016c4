#!/usr/bin/env bash
# Builds tensorzip._native for fuzzing, apart from the normal install:
#
#   fuzz/.venv/      Python with atheris, numpy, ml_dtypes, blake3, pybind11, cmake, ninja
#   fuzz/.build/     CMake build with -DTENSORZIP_FUZZ=ON: clang, ASan + UBSan (every
#                    finding fatal), libFuzzer coverage of the C++ (fuzzer-no-link)
#   fuzz/.build/site/tensorzip/
#                    the package as the fuzzers import it: a link to each file of
#                    src/tensorzip (edits are live) and the sanitized _native
#
# Nothing outside fuzz/ is touched; the dev install keeps its own _native.
# Then it checks that the sanitizers are really there: the extension must call
# ASan, UBSan and coverage hooks, and a deliberate heap overflow and a deliberate
# signed overflow in a throwaway library must be reported under the same runtime
# and options the fuzzers use (fuzz/env.sh).
#
#   fuzz/build_sanitized.sh            # build (incremental) + checks
#   PYTHON=python3.12 fuzz/build_sanitized.sh
set -euo pipefail
FUZZ="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$FUZZ")"
cd "$ROOT"

# clang, and its sanitizer runtime package (ASan links a small static part into the
# extension; the shared runtime that runs it comes with atheris).
clang_runtime_present() {
  [ -f "$(clang++ -print-resource-dir)/lib/linux/libclang_rt.asan_static-$(uname -m).a" ] ||
    [ -f "$(clang++ -print-resource-dir)/lib/linux/libclang_rt.asan-$(uname -m).a" ]
}
if ! command -v clang++ >/dev/null || ! clang_runtime_present; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz: installing clang (apt-get)"
    {
      apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          "libclang-rt-$(clang++ -dumpversion | cut -d. -f1)-dev"
    } >/tmp/tensorzip-fuzz-apt.log 2>&1 || { cat /tmp/tensorzip-fuzz-apt.log >&2; exit 2; }
  else
    echo "fuzz: clang++ or its sanitizer runtimes not found (Debian: apt-get install clang libclang-rt-N-dev)" >&2
    exit 2
  fi
fi

VENV="$FUZZ/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import atheris, numpy, ml_dtypes, pybind11, numcodecs, safetensors, blake3" 2>/dev/null; then
  echo "fuzz: creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "atheris==3.0.0" "numpy>=1.24" "ml_dtypes>=0.4" "tqdm>=4.60" "blake3>=0.4" "pybind11>=2.12" numcodecs safetensors \
    cmake ninja \
    >"$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log" >&2
    exit 1
  fi
fi
PY="$VENV/bin/python"

BUILD="$FUZZ/.build"
if [ ! -f "$BUILD/build.ninja" ]; then
  "$VENV/bin/cmake" -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTENSORZIP_FUZZ=ON \
    -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
fi
if ! "$VENV/bin/cmake" --build "$BUILD" -- -j"$(nproc)" >"$BUILD/build.log" 2>&1; then
  cat "$BUILD/build.log" >&2
  exit 1
fi
SO="$(ls "$BUILD"/_native*.so)"

# The package as the fuzzers see it (re-linked every time: new modules appear).
SITE="$BUILD/site"
rm -rf "$SITE"
mkdir -p "$SITE/tensorzip"
for item in "$ROOT"/src/tensorzip/*; do
  case "$(basename "$item")" in
    _native*.so | __pycache__) ;;
    *) ln -s "$item" "$SITE/tensorzip/" ;;
  esac
done
ln -s "$SO" "$SITE/tensorzip/"

# --- are the sanitizers really in? ---------------------------------------------------
CALLS="$(nm -D --undefined-only "$SO")"
for hook in __asan_report_load __ubsan_handle_ __sanitizer_cov_8bit_counters_init __sanitizer_cov_trace_cmp; do
  if ! grep -q "$hook" <<<"$CALLS"; then
    echo "fuzz: $SO does not call $hook: not a sanitized build" >&2
    exit 1
  fi
done
# shellcheck source=fuzz/env.sh
. "$FUZZ/env.sh"
RUNTIME_SYMBOLS="$(nm -D --defined-only "$ASAN_RUNTIME")"
for symbol in $(awk '{print $2}' <<<"$CALLS" | grep -E '^__(asan|ubsan|sanitizer)'); do
  if ! grep -q " $symbol\$" <<<"$RUNTIME_SYMBOLS"; then
    echo "fuzz: $symbol is not in $ASAN_RUNTIME; the extension would not load" >&2
    exit 1
  fi
done
SELFTEST="$BUILD/selftest"
mkdir -p "$SELFTEST"
cat >"$SELFTEST/selftest.cpp" <<'EOF'
// Throwaway: deliberate bugs that the sanitized build must report.
#include <cstdlib>
#include <cstring>
extern "C" int heap_overflow(int i) {
  char* p = static_cast<char*>(std::malloc(8));
  std::memset(p, 0, 8);
  int v = p[i];  // i = 8: one past the end
  std::free(p);
  return v;
}
extern "C" int signed_overflow(int x) { return x + 1; }  // x = INT_MAX
EOF
clang++ -shared -fPIC -fsanitize=address,undefined -fno-sanitize=vptr,function -fno-sanitize-recover=all \
  -O1 -g -o "$SELFTEST/libselftest.so" "$SELFTEST/selftest.cpp"
selftest() {  # $1: call, $2: what the report must say
  local out
  out="$(env LD_PRELOAD="$ASAN_RUNTIME" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
    "$PY" -c "import ctypes; ctypes.CDLL('$SELFTEST/libselftest.so').$1" 2>&1)" && {
    echo "fuzz: sanitizer self-test $1 was not reported" >&2
    exit 1
  }
  if ! grep -q "$2" <<<"$out"; then
    echo "fuzz: sanitizer self-test $1: expected '$2' in:" >&2
    echo "$out" >&2
    exit 1
  fi
}
selftest "heap_overflow(8)" "AddressSanitizer: heap-buffer-overflow"
selftest "signed_overflow(2147483647)" "runtime error: signed integer overflow"
# The sanitized extension loads and works under the fuzzers' runtime.
env LD_PRELOAD="$ASAN_RUNTIME" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" PYTHONPATH="$SITE" \
  "$PY" -c "
import numpy as np, tensorzip as tz, tensorzip._native as n
assert n.__file__.startswith('$SITE'), n.__file__
a = np.arange(10000, dtype=np.float32)
assert (tz.decompress(tz.compress(a)) == a).all()
"
echo "fuzz: sanitized build ready ($SO); ASan/UBSan self-tests reported as expected"
