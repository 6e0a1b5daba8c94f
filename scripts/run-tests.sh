#!/usr/bin/env bash
# Sets everything up, builds, and runs the whole test suite with ctest; then compiles all of
# pushd's code with clang to check its lock annotations (build-tsa/), each libFuzzer target's
# deterministic run (build-fuzz/, clang: the seeds and regression inputs, then a fixed number of
# executions from a fixed seed) and the whole suite again built with AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/). Every step runs; the script fails if any failed.
#   PUSHD_SANITIZE_STEP=0 / PUSHD_FUZZ_STEP=0 / PUSHD_THREAD_SAFETY_STEP=0 skip those steps (local
#   iterations only).
set -euo pipefail
cd "$(dirname "$0")/.."
# Compiler caching that survives a fresh clone in another directory: paths relative to the
# checkout, and the working directory left out of the hash even for -g builds (the sanitizer
# build), where ccache would otherwise miss in every new folder (only debug info's compilation
# directory differs).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
scripts/setup.sh
# Raise the open-files soft limit for connection-heavy tests (the hard limit is the cap).
ulimit -n "$(ulimit -Hn)" || true

failed=()
# Runs one step and records a failure (inside `if`, `set -e` does not apply: steps check their
# commands themselves).
step() {
  local name=$1 start=$SECONDS
  shift
  echo "=== step $name"
  if "$@"; then
    echo "=== step $name: passed in $((SECONDS - start)) s"
  else
    echo "=== step $name: FAILED after $((SECONDS - start)) s"
    failed+=("$name")
  fi
}

run_ctest() {
  ctest --test-dir "$1" --output-on-failure --parallel "${TEST_PARALLEL:-4}" --timeout 300 "${@:2}"
}

# Clang's -Wthread-safety checks the lock annotations (ABSL_GUARDED_BY,
# ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...) that GCC ignores; CMakeLists.txt makes every such warning an
# error under clang. Compiling is the whole check: no optimisation, no debug info, nothing run.
thread_safety() {
  if ! command -v clang++ >/dev/null; then
    echo "clang++ not found (scripts/setup.sh installs it): the lock annotations are not checked"
    return 1
  fi
  local dir=${TSA_BUILD_DIR:-build-tsa}
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=None || return 1
  fi
  cmake --build "$dir"
}

fuzz() {
  if ! command -v clang++ >/dev/null; then
    echo "clang++ not found (scripts/setup.sh installs it): fuzz targets skipped"
    return 0
  fi
  local dir=${FUZZ_BUILD_DIR:-build-fuzz}
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DPUSHD_FUZZ=ON || return 1
  fi
  cmake --build "$dir" --target fuzz || return 1
  # Each target is one single-threaded process: two at a time on two cores.
  ctest --test-dir "$dir" -L fuzz --no-tests=error --output-on-failure --parallel 2
}

sanitize() {
  local dir=${ASAN_BUILD_DIR:-build-asan}
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPUSHD_SANITIZE=ON || return 1
  fi
  cmake --build "$dir" || return 1
  local status=0
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest "$dir" || status=1
  # pushd's own reports fail their test (exit status check in tests/testing/pushd_process.cc and
  # clients/js/testing/pushd.js); this also catches one from a process no test waits for.
  local log="$dir/Testing/Temporary/LastTest.log"
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error: ' "$log"; then
    echo "sanitizer reports in $log:"
    grep -nE -A30 'ERROR: (Address|Leak)Sanitizer|runtime error: ' "$log" | head -n 400
    status=1
  fi
  return "$status"
}

step tests run_ctest "${BUILD_DIR:-build}"
[ "${PUSHD_THREAD_SAFETY_STEP:-1}" = 0 ] || step thread_safety thread_safety
[ "${PUSHD_FUZZ_STEP:-1}" = 0 ] || step fuzz fuzz
[ "${PUSHD_SANITIZE_STEP:-1}" = 0 ] || step sanitizers sanitize

if ((${#failed[@]})); then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
