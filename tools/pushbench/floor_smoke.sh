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
[ -s "$dir/ports" ] || { echo "floor_server did not report its ports within 10 s"; exit 1; }
read -r g w <"$dir/ports"
# pushbench's own exit status is reported, not acted on here: its report says what went wrong.
bench_status=0
"$bench" --grpc=127.0.0.1:$g --ws=127.0.0.1:$w --server_pid=$pid --scenario=throughput \
  --mode=unary --connections=200 --duration=2 --max_seconds=60 >"$dir/report" || bench_status=$?
line=$(tail -n 1 "$dir/report")
echo "$line"
[ "$bench_status" = 0 ] || { echo "pushbench exited with status $bench_status:"; cat "$dir/report"; }
for want in '"ok":true' '"lost":0,' '"duplicated":0,' '"reordered":0,'; do
  grep -qF "$want" <<<"$line" || { echo "pushbench's report lacks $want"; exit 1; }
done
kill "$pid"
status=0
wait "$pid" || status=$?
trap 'rm -rf "$dir"' EXIT
[ "$status" = 0 ] || { echo "floor_server exited with status $status"; exit 1; }
