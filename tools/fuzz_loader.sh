#!/usr/bin/env bash
# Fuzzes the ONNX loader (nnc::parseModel + save/load round trip, see fuzz/loader_fuzzer.cc).
#
#   tools/fuzz_loader.sh [SECONDS]      (default 60)
#
# Builds fuzz/ into build-fuzz/ with clang++-14 (libFuzzer + ASan + UBSan) if needed, replays
# every file in fuzz/regressions/ once, then fuzzes for SECONDS with one process. The committed
# seed corpus (fuzz/corpus/) is copied into a work corpus (build-fuzz/corpus/, kept between
# runs) so it is never modified. Crash/timeout/OOM inputs land in build-fuzz/artifacts/.
# Exit status: 0 when nothing was found, non-zero when a regression input or the fuzzer failed.
# Not part of ctest. Environment: CXX (default clang++-14), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

DURATION="${1:-60}"
if ! [[ "$DURATION" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
FUZZER="$BUILD/loader_fuzzer"
CXX_COMPILER="${CXX:-clang++-14}"

# ---- build (incremental; configure only the first time) ----
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT/fuzz" -B "$BUILD" -DCMAKE_CXX_COMPILER="$CXX_COMPILER" >/dev/null
fi
cmake --build "$BUILD" -j2 >/dev/null 2>&1 || cmake --build "$BUILD" -j1  # 2nd run shows errors

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
COMMON=(-rss_limit_mb=2048 -timeout=10)

# ---- regressions: inputs that once crashed, each run once ----
shopt -s nullglob
regressions=("$ROOT"/fuzz/regressions/*)
if ((${#regressions[@]})); then
  echo "== replaying ${#regressions[@]} regression input(s)"
  if ! "$FUZZER" "${COMMON[@]}" "${regressions[@]}" >"$BUILD/regressions.log" 2>&1; then
    tail -40 "$BUILD/regressions.log" >&2
    echo "FAIL: a regression input crashes again (log: $BUILD/regressions.log)" >&2
    exit 1
  fi
  echo "   all pass"
fi

((DURATION > 0)) || exit 0

# ---- fuzz ----
mkdir -p "$BUILD/corpus" "$BUILD/artifacts"
cp "$ROOT"/fuzz/corpus/* "$BUILD/corpus/"
echo "== fuzzing for ${DURATION}s (work corpus $BUILD/corpus, log $BUILD/fuzz.log)"
status=0
# One process, as the machine is shared. ${FUZZ_ARGS} is deliberately word-split.
# shellcheck disable=SC2086
"$FUZZER" "${COMMON[@]}" -max_total_time="$DURATION" -max_len=8192 \
  -dict="$ROOT/fuzz/onnx.dict" -artifact_prefix="$BUILD/artifacts/" -print_final_stats=1 \
  ${FUZZ_ARGS:-} "$BUILD/corpus" >"$BUILD/fuzz.log" 2>&1 || status=$?
# Last status line (execs, coverage, corpus) and the final stats (printed once per exit path).
grep -E '^#[0-9]+[[:space:]]' "$BUILD/fuzz.log" | tail -1 || true
grep -E '^stat::' "$BUILD/fuzz.log" | awk '!seen[$0]++' || true
if ((status != 0)); then
  grep -E 'ERROR|ORACLE|SUMMARY|==[0-9]+==|Test unit written' "$BUILD/fuzz.log" | head -20 >&2 || true
  echo "FAIL: the fuzzer found a problem (exit $status); see $BUILD/fuzz.log and $BUILD/artifacts/" >&2
  exit "$status"
fi
echo "OK: no crash in ${DURATION}s"
