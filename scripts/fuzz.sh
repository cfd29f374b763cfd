#!/usr/bin/env bash
# scripts/fuzz.sh [seconds]: builds the libFuzzer targets (Clang, in
# build-fuzz) and runs each for `seconds` (default 30) over a copy of its
# seed corpus in tests/fuzz/corpus/<target> (the committed corpus is never
# written). Exits non-zero when a target crashes, printing the crash input.
#
# Environment: CHORUS_FUZZ_BUILD (build dir, default <repo>/build-fuzz),
# CHORUS_FUZZ_CC (default clang, else clang-14; libFuzzer and the
# sanitizers come with libclang-rt-14-dev), CHORUS_FUZZ_TARGETS (default
# "fuzz_api fuzz_validate fuzz_record"), CHORUS_FUZZ_JOBS (build jobs).
# Outputs: <build>/fuzz-run/<target>/{corpus,artifacts,log}. Replay a
# crash with: <build>/<target> <crash file> (CHORUS_FUZZ_TRACE=1 shows
# what fuzz_api sends and gets).
set -euo pipefail

secs=${1:-30}
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CHORUS_FUZZ_BUILD:-$root/build-fuzz}
targets=${CHORUS_FUZZ_TARGETS:-fuzz_api fuzz_validate fuzz_record}
jobs=${CHORUS_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

cc=${CHORUS_FUZZ_CC:-$(command -v clang || command -v clang-14 || echo clang)}
CC=$cc cmake -S "$root" -B "$build" -DCHORUS_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
# shellcheck disable=SC2086 # targets is a word list
cmake --build "$build" -j "$jobs" --target $targets

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $targets; do
  run="$build/fuzz-run/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  seeds="$root/tests/fuzz/corpus/${t#fuzz_}"
  [ -d "$seeds" ] && cp -R "$seeds/." "$run/corpus/"
  echo "== $t: ${secs}s (log: $run/log)"
  set +e
  "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$root/tests/fuzz/fuzz.dict" \
    -artifact_prefix="$run/artifacts/" "$run/corpus" >"$run/log" 2>&1
  rc=$?
  set -e
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done )' \
    "$run/log" || true
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "!! $t failed (exit $rc); the report from $run/log:" >&2
    # The harness's message (fuzz: ...) or the sanitizer's, else the end.
    grep -a -m1 -A30 -E '^(fuzz: |==[0-9]+==ERROR)' "$run/log" >&2 ||
      tail -n 40 "$run/log" >&2
    for f in "$run"/artifacts/*; do
      [ -e "$f" ] && echo "!! crash input: $f" >&2
    done
  fi
done
exit "$status"
