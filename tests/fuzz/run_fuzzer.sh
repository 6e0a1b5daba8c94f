#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (ctest's `fuzz` tests):
#   run_fuzzer.sh <fuzzer> <scratch corpus dir> <seed corpus dir> [libFuzzer flags...]
# New inputs go to the scratch directory; the committed seeds are only read. On a crash, leak,
# timeout or failed invariant the fuzzer exits non-zero, and this prints the saved input (the
# path, a hex dump and the command that replays it) so that CI output is enough to reproduce.
set -uo pipefail
fuzzer=$1 scratch=$2 seeds=$3
shift 3
mkdir -p "$scratch"
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
"$fuzzer" "$scratch" "$seeds" "$@"
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
  done
  [ "$found" = 1 ] || echo "(none found under ${prefix}*)"
fi
exit "$status"
