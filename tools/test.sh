#!/usr/bin/env bash
# Runs every test: formatting check, the Release build's test suite, then the unit tests of every
# library again under AddressSanitizer + UndefinedBehaviorSanitizer (the tests that drive the CLI
# binary run in the Release pass only). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# The real-model suite (ctest label `shared`) reads ../shared/real-models (or $NNC_SHARED_DIR),
# which CI always has: there, a missing folder is an error, not a silently smaller suite.
shared_dir=${NNC_SHARED_DIR:-../shared}
if [ ! -d "$shared_dir/real-models" ]; then
  if [ -n "${CI:-}" ]; then
    echo "CI: $shared_dir/real-models is missing, so the shared tests (label shared) cannot run"
    exit 1
  fi
  echo "note: $shared_dir/real-models is missing: the shared tests (label shared) are left out"
fi

bash tools/bootstrap.sh

echo "== formatting (clang-format, .clang-format)"
unformatted=$(git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror 2>&1 | grep -c "error:" || true)
if [ "$unformatted" != "0" ]; then
  git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror 2>&1 | grep "error:" | head -20
  echo "formatting check failed: run clang-format -i on the files above"
  exit 1
fi

echo "== Release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${NNC_SHARED_DIR:+-DNNC_SHARED_DIR="$NNC_SHARED_DIR"} >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest -j"$jobs" --output-on-failure)

echo "== ASan + UBSan build and tests"
# -O1 without debug info: the sanitizers need no more, and it halves this build.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNNC_SANITIZE=ON >/dev/null
# Only the test targets that do not drive the nncompress binary (tests/CMakeLists.txt,
# `sanitizer_tests`): the CLI tests ran in the Release pass, and skipping the CLI and report
# libraries here saves a third of this build. The tests of targets not built are left out by name.
cmake --build build-asan -j"$jobs" --target sanitizer_tests
# The 10k-image accuracy runs (label full_dataset) already ran in the Release pass.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -j"$jobs" --output-on-failure -LE full_dataset -E '_NOT_BUILT$')
