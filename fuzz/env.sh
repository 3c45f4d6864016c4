# Sourced by fuzz/build_sanitized.sh and fuzz/run.sh: the runtime and options the
# fuzzers run under. Sets (does not export) ASAN_RUNTIME, ASAN_OPTIONS,
# UBSAN_OPTIONS, FUZZ_PYTHONPATH, CUSTOM_MUTATOR_RUNTIME.
#
# ASAN_RUNTIME: atheris' ASan runtime with libFuzzer linked in. It must be
#   preloaded: CPython is not built with ASan, and the extension's coverage hooks
#   must find the libFuzzer that atheris drives.
# detect_leaks=0: CPython keeps interned objects, pymalloc arenas and module state
#   until exit without freeing them, so LeakSanitizer would report every run;
#   leaks in the native core are not what these harnesses look for.
# allocator_may_return_null=1: an allocation numpy cannot have becomes MemoryError
#   (the harnesses bound every size, so none is expected).
# halt_on_error / abort_on_error: the first report ends the run as a crash, which
#   libFuzzer records with its input.
_fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_atheris="$("$_fuzz_dir/.venv/bin/python" -c "import atheris, os; print(os.path.dirname(atheris.__file__))")"
ASAN_RUNTIME="$(dirname "$_atheris")/asan_with_fuzzer.so"
# A preloaded libFuzzer looks for LLVMFuzzerCustomMutator when it is loaded, before
# atheris imports the module that defines it: a harness with a custom mutator
# (fuzz_reader.py) needs that module preloaded too, or libFuzzer silently uses its
# own mutations only. (Only for such harnesses: without a Python mutator it fails.)
# That module needs libpython's symbols even where it is not Python that loads it
# (ASan's llvm-symbolizer child inherits LD_PRELOAD), so libpython goes first.
CUSTOM_MUTATOR_RUNTIME="$(ls "$_atheris"/custom_mutator.cpython-*.so)"
_libpython="$("$_fuzz_dir/.venv/bin/python" -c "import sysconfig as s; print(s.get_config_var('LIBDIR') + '/' + (s.get_config_var('INSTSONAME') or ''))")"
if [ -f "$_libpython" ]; then
  CUSTOM_MUTATOR_RUNTIME="$_libpython:$CUSTOM_MUTATOR_RUNTIME"
fi
ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:symbolize=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1"
UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:symbolize=1"
FUZZ_PYTHONPATH="$_fuzz_dir/.build/site"
if command -v llvm-symbolizer >/dev/null; then
  ASAN_OPTIONS="$ASAN_OPTIONS:external_symbolizer_path=$(command -v llvm-symbolizer)"
elif [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  ASAN_OPTIONS="$ASAN_OPTIONS:external_symbolizer_path=/usr/lib/llvm-14/bin/llvm-symbolizer"
fi
unset _fuzz_dir _atheris _libpython
