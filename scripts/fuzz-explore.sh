#!/usr/bin/env bash
# Exploratory fuzzing, outside CI: random seeds and long runs that keep what they find.
#   scripts/fuzz-explore.sh [SECONDS] [TARGET...]   (default 600 s each; all four targets)
# Targets: jwt_fuzz client_frame_fuzz json_fuzz upgrade_fuzz. Builds them in build-fuzz/ (clang),
# then runs each for SECONDS with a random seed on a corpus kept between runs in
# build-fuzz/explore/<target>/ (started from the committed seeds). On a crash it stops that target
# and prints the input; see README "Fuzzing" for what to do with it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
dir=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPUSHD_FUZZ=ON
fi
cmake --build "$dir" --target fuzz

# Each target's corpus and input size limit, as tests/fuzz/CMakeLists.txt defines them.
declare -A corpus=() max_len=()
all=()
while read -r target_name target_corpus target_max_len; do
  all+=("$target_name")
  corpus[$target_name]=$target_corpus
  max_len[$target_name]=$target_max_len
done <"$dir/tests/fuzz/targets.txt"
((${#targets[@]})) || targets=("${all[@]}")
failed=()
for t in "${targets[@]}"; do
  [ -n "${corpus[$t]:-}" ] || { echo "fuzz-explore: unknown target $t" >&2; exit 2; }
  keep="$dir/explore/$t"
  crashes="$dir/explore/crashes"
  mkdir -p "$keep" "$crashes"
  dict=()
  [ -f "tests/fuzz/${corpus[$t]}.dict" ] && dict=(-dict="tests/fuzz/${corpus[$t]}.dict")
  echo "=== $t: ${seconds} s, random seed, corpus $keep"
  # -seed=0: libFuzzer picks a seed from the clock and prints it ("Seed: N"), so a run can be
  # repeated with -seed=N.
  if ! "$dir/tests/fuzz/$t" "$keep" "tests/fuzz/corpus/${corpus[$t]}" -seed=0 \
      -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=30 -rss_limit_mb=2048 \
      -artifact_prefix="$crashes/$t-" "${dict[@]}" -print_final_stats=1; then
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz-explore: inputs that broke ${failed[*]} are in $dir/explore/crashes/"
  ls -l "$dir/explore/crashes/"
  echo "Replay one: $dir/tests/fuzz/<target> <file>. Fix the cause, then add the file to"
  echo "tests/fuzz/corpus/<corpus>/regression_<what> so that CI replays it from then on."
  exit 1
fi
echo "fuzz-explore: no failure; new inputs are in $dir/explore/<target>/ (copy the few worth"
echo "keeping into tests/fuzz/corpus/<corpus>/)"
