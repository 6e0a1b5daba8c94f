#!/usr/bin/env bash
# Runs one libFuzzer target the way CI does (ctest's `fuzz` tests), so that the same commit gives
# the same result on any machine:
#   run_fuzzer.sh <fuzzer> <scratch corpus dir> <seed corpus dir> -seed=N -runs=N [flags...]
# Every committed seed (regression inputs included) is run first, then the fuzzer mutates from
# them for exactly -runs executions with a fixed -seed. The scratch directory, where libFuzzer
# writes the inputs it finds, is emptied first so that an earlier run cannot change this one; the
# committed seeds are only read. -reload=0: libFuzzer would otherwise re-read the scratch
# directory every second, which makes the run depend on timing (seen: two runs with the same
# seed ended with different coverage). Address-space randomisation is off for the run
# (setarch -R), so that nothing that hashes addresses changes which paths an input covers.
# On a crash, leak, timeout or failed invariant the fuzzer exits non-zero, and this prints the
# saved input (the path, a hex dump and the command that replays it) so that CI output is enough
# to reproduce.
set -uo pipefail
fuzzer=$1 scratch=$2 seeds=$3
shift 3
rm -rf "$scratch"
mkdir -p "$scratch"
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norandom=(setarch "$(uname -m)" -R)
else
  echo "run_fuzzer.sh: setarch -R is not permitted here; running with address randomisation"
fi
"${norandom[@]}" "$fuzzer" "$scratch" "$seeds" -reload=0 -print_final_stats=1 "$@"
status=$?
if [ "$status" -ne 0 ]; then
  echo "=== $(basename "$fuzzer") failed (exit $status); inputs it saved:"
  prefix=""
  for a in "$@"; do
    case "$a" in -artifact_prefix=*) prefix=${a#-artifact_prefix=} ;; esac
  done
  found=0
  for f in "$prefix"*; do
    [ -f "$f" ] && [ "$f" -nt "$marker" ] || continue
    found=1
    echo "--- $f ($(wc -c <"$f") bytes); replay: $fuzzer $f"
    od -A d -t x1z -v "$f" | head -n 64
    echo "base64: $(base64 -w0 "$f")"
  done
  [ "$found" = 1 ] || echo "(none found under ${prefix}*)"
  echo "Add the input to $seeds as regression_<what> once fixed (README: Fuzzing)."
fi
exit "$status"
