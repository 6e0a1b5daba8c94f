#!/usr/bin/env bash
# Runs one libFuzzer target the way CI does (ctest's `fuzz` tests), so that the same commit gives
# the same result on any machine:
#   run_fuzzer.sh <fuzzer> <scratch corpus dir> <seed corpus dir> -seed=N -runs=N [flags...]
# Every committed seed (regression inputs included) is run first, then the fuzzer mutates from
# them for exactly -runs executions with a fixed -seed. The scratch directory, where libFuzzer
# writes the inputs it finds, is emptied first so that an earlier run cannot change this one; the
# committed seeds are only read.
# What else the run's course depends on is pinned too, since coverage decides which mutations are
# kept and some code under test hashes addresses (Boost.JSON seeds an object's table from its
# address), so the heap layout matters:
#   - address-space randomisation off (setarch -R);
#   - the same command line and environment wherever the checkout is: the fuzzer runs from a
#     folder beside the scratch directory through fixed relative names (./fuzzer, dict, scratch,
#     artifacts/) with only PATH set (seen: the same binary and seed ended with different
#     coverage when only the checkout's path differed), and the seeds come as a sorted list;
#   - the same binary wherever the checkout is (tests/fuzz/CMakeLists.txt maps the source and
#     build paths out of it);
#   - -reload=0: libFuzzer would otherwise re-read the scratch directory every second, which
#     makes the run depend on timing.
# On a crash, leak, timeout or failed invariant the fuzzer exits non-zero, and this prints the
# saved input (the path, a hex dump, base64 and the command that replays it) so that CI output is
# enough to reproduce.
set -uo pipefail
fuzzer=$1 scratch=$2 seeds=$3
shift 3
run="$scratch.run"
rm -rf "$scratch" "$run"
mkdir -p "$run/scratch" "$run/artifacts"
ln -s "$(readlink -f "$fuzzer")" "$run/fuzzer"
# The seeds as a list in a fixed order (a directory's listing order depends on the filesystem
# and on how the files came there, and libFuzzer's sort by size keeps it for equal sizes).
# Names relative to the run folder, so that their lengths (and so the heap) do not depend on where
# the checkout is.
ln -s "$(readlink -f "$seeds")" "$run/in"
(cd "$seeds" && LC_ALL=C ls -1 | sed 's|^|in/|' | paste -sd, -) >"$run/seeds"
args=()
prefix=""
for a in "$@"; do
  case "$a" in
    -dict=*) ln -s "$(readlink -f "${a#-dict=}")" "$run/dict" && a=-dict=dict ;;
    -artifact_prefix=*) prefix=${a#-artifact_prefix=} && a=-artifact_prefix=artifacts/ ;;
  esac
  args+=("$a")
done
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norandom=(setarch "$(uname -m)" -R)
else
  echo "run_fuzzer.sh: setarch -R is not permitted here; running with address randomisation"
fi
(cd "$run" && exec env -i PATH=/usr/bin:/bin "${norandom[@]}" ./fuzzer scratch -seed_inputs=@seeds \
  -reload=0 -print_final_stats=1 "${args[@]}")
status=$?
# Keep what was found where the caller asked for it, then drop the run folder.
mv "$run/scratch" "$scratch"
if [ "$status" -ne 0 ]; then
  echo "=== $(basename "$fuzzer") failed (exit $status); inputs it saved:"
  found=0
  for f in "$run"/artifacts/*; do
    [ -f "$f" ] || continue
    found=1
    kept="$prefix$(basename "$f")"
    mkdir -p "$(dirname "$kept")"
    cp "$f" "$kept"
    echo "--- $kept ($(wc -c <"$f") bytes); replay: $fuzzer $kept"
    od -A d -t x1z -v "$f" | head -n 64
    echo "base64: $(base64 -w0 "$f")"
  done
  [ "$found" = 1 ] || echo "(none found)"
  echo "Add the input to $seeds as regression_<what> once fixed (README: Fuzzing)."
fi
rm -rf "$run"
exit "$status"
