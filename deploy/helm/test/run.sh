#!/usr/bin/env bash
# CI check of the Helm chart without Helm (not packaged for Debian 12): render deploy/helm/pushd
# with render/ (Go text/template + sprig, Helm's semantics) and validate the result with
# validate.js (values.schema.json, Kubernetes schemas with unknown fields refused, wiring).
#   - the default values, values-redis.yaml, values-secure.yaml and values-dev.yaml must render
#     and validate;
#   - each cases/*.yaml must be refused with the message in its "# expect:" first line;
#   - deploy/grafana/pushd-dashboard.json must parse and query only metrics pushd exports.
# Usage: run.sh [WORK_DIR]   (ctest passes a folder in the build tree; default a temp folder)
# Needs: go, Debian's golang-github-masterminds-sprig-dev and golang-k8s-sigs-yaml-dev, node, and
# `npm ci` done here (scripts/setup.sh does all of it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chart="$here/../pushd"
config_cc="$here/../../../common/config.cc"
work=${1:-$(mktemp -d)}
mkdir -p "$work"

for tool in go node; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done
[ -d "$here/node_modules/kubernetes-models" ] ||
  { echo "run.sh: no node_modules in $here: run scripts/setup.sh (npm ci)" >&2; exit 1; }

# GOPATH mode builds from the sources Debian's golang-*-dev packages install: nothing downloaded.
(cd "$here" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS='' GOENV=off GOPROXY=off \
  GOCACHE="$work/gocache" go build -o "$work/render" ./render)

passed=0
failed=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# render_and_validate NAME [VALUES_FILE]: output in $work/NAME.log, status as exit code.
render_and_validate() {
  local name=$1 args=()
  [ $# -ge 2 ] && args=(-f "$2")
  {
    "$work/render" -chart "$chart" -name demo -namespace push "${args[@]}" -o "$work/$name.json" &&
      (cd "$here" && node validate.js "$chart" "$work/$name.json" "$config_cc")
  } >"$work/$name.log" 2>&1
}

for case in default values-redis values-secure values-dev; do
  if [ "$case" = default ]; then render_and_validate "$case"; else render_and_validate "$case" "$here/$case.yaml"; fi &&
    { pass "$case: $(tail -n 1 "$work/$case.log")"; continue; }
  fail "$case"
  sed 's/^/    /' "$work/$case.log"
done

# Issue 5: the default values run pushd --auth=jwt with a key file, and set the edge limits.
if node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const d = r.objects.map((o) => o.object).find((o) => o.kind === "Deployment");
  const c = d.spec.template.spec.containers.find((c) => c.name === "pushd");
  const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  const want = ["PUSHD_MAX_CONNECTIONS", "PUSHD_MAX_CONNECTIONS_PER_USER",
                "PUSHD_MAX_REQUEST_HEADER_BYTES", "PUSHD_HANDSHAKE_TIMEOUT"];
  const ok = c.args.includes("--auth=jwt") &&
    c.args.some((a) => a.startsWith("--jwt_hs256_secret_file=")) &&
    want.every((n) => env[n] !== undefined && env[n] !== "");
  process.exit(ok ? 0 : 1);' "$work/default.json" 2>"$work/default-auth.log"; then
  pass "default: pushd --auth=jwt with a key, limits set"
else
  fail "default: expected --auth=jwt, --jwt_hs256_secret_file and the limit flags in the Deployment"
  sed 's/^/    /' "$work/default-auth.log"
fi

for file in "$here"/cases/*.yaml; do
  case=$(basename "$file" .yaml)
  expect=$(sed -n '1s/^# expect: //p' "$file")
  if [ -z "$expect" ]; then
    fail "$case: first line must be '# expect: <message>'"
  elif render_and_validate "case-$case" "$file"; then
    fail "$case: accepted, expected refusal with: $expect"
  elif grep -qF -- "$expect" "$work/case-$case.log"; then
    pass "$case: refused ($expect)"
  else
    fail "$case: refused, but without: $expect"
    sed 's/^/    /' "$work/case-$case.log"
  fi
done

# The Grafana dashboard parses and queries only metrics that pushd's sources export.
dashboard="$here/../../grafana/pushd-dashboard.json"
src="$here/../../.."
unknown=""
while read -r metric; do
  grep -rqE "\"$metric([^a-z0-9_]|\$)" "$src/common" "$src/services" "$src/edge" --include='*.cc' ||
    unknown+=" $metric"
done < <(grep -o 'pushd_[a-z0-9_]*' "$dashboard" | sed -E 's/_(bucket|sum|count)$//' | sort -u)
if ! node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$dashboard"; then
  fail "grafana: $dashboard is not JSON"
elif [ -n "$unknown" ]; then
  fail "grafana: the dashboard queries metrics pushd does not export:$unknown"
else
  pass "grafana: the dashboard queries only metrics pushd exports"
fi

echo "chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
