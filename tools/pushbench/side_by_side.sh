#!/usr/bin/env bash
# Measures pushd builds and the reference server (../shared/anchors: seedserver) in the same
# sitting, alternating, so that the ratios come from one machine state:
#   tools/pushbench/side_by_side.sh RUNS "PUSHBENCH FLAGS" NAME=PATH... [seed=SEEDSERVER]
# e.g. side_by_side.sh 3 "--scenario=throughput --mode=unary" new=build/services/pushd \
#        seed=/tmp/seedserver
# A NAME=PATH whose name is `seed` is started as the reference server (loopback ports, --server_pid
# for its CPU), and so is one named `floor` or `floor_*` (build/tools/pushbench/floor_server: one
# frame and the answer per Push, nothing else; its flags may follow the path, as in
# "floor_nobatch=build/tools/pushbench/floor_server --nobatch"); the others are pushd binaries
# pushbench starts itself. Prints one JSON line per
# run (prefixed with the name; all of them also in $OUT when set) and, at the end, the medians of
# deliveries per server CPU-second, delivered msg/s, latency p99 and p99.9, and server CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=$1 flags=$2
shift 2
bench=${PUSHBENCH:-build/tools/pushbench/pushbench}
out=${OUT:-$(mktemp)}
[ -n "${OUT:-}" ] && trap 'rm -f "$out.server.log"' EXIT || trap 'rm -f "$out" "$out.server.log"' EXIT
free_port() {
  local p
  for _ in $(seq 1 50); do
    # Below the usual ephemeral range (32768-60999), where no outgoing connection holds a port.
    p=$((20000 + RANDOM % 12000))
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { echo "$p"; return; }
  done
  return 1
}
for r in $(seq 1 "$runs"); do
  for spec in "$@"; do
    name=${spec%%=*} path=${spec#*=}
    if [ "$name" = seed ] || [ "${name%%_*}" = floor ]; then
      g=$(free_port) w=$(free_port)
      # shellcheck disable=SC2086  # PATH may carry the server's own flags
      $path --grpc_listen=127.0.0.1:$g --ws_listen=127.0.0.1:$w >"$out.server.log" 2>&1 &
      pid=$!
      # Until both listeners accept (at most 10 s): a fixed sleep let a run start before them.
      for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$g") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$w") 2>/dev/null &&
          break
        sleep 0.1
      done
      # shellcheck disable=SC2086
      line=$("$bench" --grpc=127.0.0.1:$g --ws=127.0.0.1:$w --server_pid=$pid $flags | tail -n 1) || true
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      # A run that failed shows what the server said (it is not pushd's log, which pushbench keeps).
      grep -q '"ok":true' <<<"$line" || { echo "$name's output:"; tail -n 5 "$out.server.log"; } >&2
    else
      # shellcheck disable=SC2086
      line=$("$bench" --pushd="$path" $flags | tail -n 1) || true
    fi
    echo "$name $line" >>"$out"
    echo "$name $(grep -oE '"(ok|deliveries_per_cpu_s|p99|p999|lost|duplicated|reordered)":[a-z0-9.]*' <<<"$line" |
      head -n 7 | tr '\n' ' ')"
  done
done
echo "--- medians of $runs (deliveries per server CPU-s, delivered msg/s, p99 ms, p99.9 ms, server CPU s)"
for spec in "$@"; do
  name=${spec%%=*}
  # The first occurrence of the key in each run's line (latency_ms comes before rpc_latency_ms).
  med() { grep "^$name " "$out" | while read -r l; do grep -o "\"$1\":[0-9.]*" <<<"$l" | head -n 1; done |
            cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
  echo "$name $(med deliveries_per_cpu_s) $(med delivered_per_s) $(med p99) $(med p999) $(med cpu_seconds)"
done
