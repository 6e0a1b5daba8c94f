#!/usr/bin/env bash
# ctest smoke of floor_server: started on :0 ports, driven by pushbench's unary throughput at a tiny
# size; passes when pushbench reports ok with nothing lost, duplicated or reordered. Not timed.
#   floor_smoke.sh FLOOR_SERVER PUSHBENCH
set -euo pipefail
floor=$1 bench=$2
dir=$(mktemp -d)
"$floor" --grpc_listen=127.0.0.1:0 --ws_listen=127.0.0.1:0 --ports_file="$dir/ports" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do [ -s "$dir/ports" ] && break; sleep 0.1; done
read -r g w <"$dir/ports"
line=$("$bench" --grpc=127.0.0.1:$g --ws=127.0.0.1:$w --server_pid=$pid --scenario=throughput \
  --mode=unary --connections=200 --duration=2 --max_seconds=60 | tail -n 1)
echo "$line"
grep -q '"ok":true' <<<"$line"
grep -q '"lost":0,' <<<"$line"
grep -q '"duplicated":0,' <<<"$line"
grep -q '"reordered":0,' <<<"$line"
kill "$pid"
status=0
wait "$pid" || status=$?
trap 'rm -rf "$dir"' EXIT
[ "$status" = 0 ] || { echo "floor_server exited with status $status"; exit 1; }
