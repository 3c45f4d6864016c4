#!/usr/bin/env bash
# Run the fuzzers against the sanitized build (built first if needed).
#
#   fuzz/run.sh [SECONDS] [reader|native ...]     default: 60 seconds, both harnesses
#
# Each harness runs SECONDS under libFuzzer (atheris), starting from its committed
# seeds (fuzz/corpus/NAME) and the inputs earlier local runs found (fuzz/.work/corpus/
# NAME, where new ones are written; the committed corpus is never changed). Prints
# executions, coverage and features per harness; the full libFuzzer log is
# fuzz/.work/NAME.log. A finding (Python exception other than the allowed ones,
# ASan/UBSan report, timeout, out of memory) ends that harness, leaves its input in
# fuzz/.work/artifacts/, and makes this script exit non-zero after all harnesses ran.
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-jobs=2);
# TENSORZIP_SIMD=scalar|avx2 caps the rANS paths fuzzed (default: the best the CPU has).
# Reproduce a finding: fuzz/run.sh 0 reader fuzz/.work/artifacts/reader-crash-...
set -euo pipefail
FUZZ="$(cd "$(dirname "$0")" && pwd)"
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=()
REPLAY=()
for arg in "$@"; do
  case "$arg" in
    reader | native | faces) TARGETS+=("$arg") ;;
    *) REPLAY+=("$(realpath "$arg")") ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(reader native faces)

"$FUZZ/build_sanitized.sh"
# shellcheck source=fuzz/env.sh
. "$FUZZ/env.sh"
WORK="$FUZZ/.work"
mkdir -p "$WORK/artifacts"

failed=()
for target in "${TARGETS[@]}"; do
  timeout=25
  case "$target" in
    reader)
      options=(-max_len=32768 "-dict=$FUZZ/reader.dict")
      preload="$ASAN_RUNTIME:$CUSTOM_MUTATOR_RUNTIME"
      ;;
    faces)
      # Every face on each input; 5 s per input is the bound the faces promise for files under 1 MB.
      options=(-max_len=65536 "-dict=$FUZZ/reader.dict")
      timeout=5
      preload="$ASAN_RUNTIME:$CUSTOM_MUTATOR_RUNTIME"
      ;;
    native)
      # Full length from the start: each operation builds its buffers from the input.
      options=(-max_len=4096 -len_control=0)
      preload="$ASAN_RUNTIME"
      ;;
  esac
  mkdir -p "$WORK/corpus/$target"
  if [ ${#REPLAY[@]} -gt 0 ]; then
    inputs=("${REPLAY[@]}")
  else
    inputs=("$WORK/corpus/$target" "$FUZZ/corpus/$target")
  fi
  echo "fuzz: $target for ${SECONDS_EACH}s (log: $WORK/$target.log)"
  set +e
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  env LD_PRELOAD="$preload" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
    PYTHONPATH="$FUZZ_PYTHONPATH" PYTHONHASHSEED=0 \
    "$FUZZ/.venv/bin/python" "$FUZZ/fuzz_$target.py" "${options[@]}" \
    -max_total_time="$SECONDS_EACH" -timeout="${timeout:-25}" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$WORK/artifacts/$target-" ${FUZZ_ARGS:-} "${inputs[@]}" >"$WORK/$target.log" 2>&1
  rc=$?
  set -e
  # Summary: the last status line (executions, coverage, features, corpus) and the final stats.
  grep -E "^#[0-9]+" "$WORK/$target.log" | tail -n 1 | sed "s/^/fuzz: $target: /" || true
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done [0-9]+ runs)" \
    "$WORK/$target.log" | sed "s/^/fuzz: $target: /" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $rc); the end of its log:" >&2
    tail -n 60 "$WORK/$target.log" >&2
    ls -t "$WORK/artifacts/$target-"* 2>/dev/null | head -n 3 | sed "s/^/fuzz: input: /" >&2 || true
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no findings"
