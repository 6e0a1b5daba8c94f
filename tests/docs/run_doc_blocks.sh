#!/usr/bin/env bash
# The doc test (ctest doc_blocks): runs the shell blocks of the READMEs, so that a documented
# command cannot drift from the tools.
#
#   run_doc_blocks.sh BUILD_DIR SOURCE_DIR WORK_PARENT DOC...      (DOCs relative to SOURCE_DIR)
#
# Every ```sh (or bash/shell/console) block carries a classification on the line just before
# its fence, an HTML comment that Markdown does not show:
#
#   <!-- doc-test: skip: REASON -->     not run; the reason says why (needs Docker, a cluster, ...)
#   <!-- doc-test: run [OPTION...] -->  run, with OPTIONs:
#       continue          in the sandbox of the previous run block of the same file: its files and
#                         the servers it started are still there (otherwise a fresh sandbox)
#       serve=PORT,...    the block ends with a server in the foreground: run it in the background,
#                         go on once every PORT accepts connections on 127.0.0.1, and leave it
#                         running for the `continue` blocks
#       given=THING,...   set up first what the text before the block assumes: `pushd` (pushd
#                         with its defaults, as scripts/run-pushd.sh starts it), `ws:USER` (a
#                         WebSocket open as USER on port 8080, like the demo page)
#       needs=PROG,...    programs the block calls that scripts/setup.sh does not install; when
#                         one is missing the block is reported as not run (the test still passes)
#       timeout=SECONDS   bound on the block (default 60)
# A shell block without a classification, an unknown classification, or a doc-test comment that
# is not right before a shell block's fence fails the test. Other blocks (js, html, promql, ...)
# are not run.
#
# How blocks run: as written, with bash -e -o pipefail, from a directory that holds a symlink to
# every top-level entry of SOURCE_DIR and `build` -> BUILD_DIR, so `build/services/pushd` and
# `deploy/helm/...` resolve as in a checkout. Each sandbox is its own network, PID and mount
# namespace (unshare): a private loopback, so the ports the docs use (50051, 8080, 6379, ...)
# cannot collide with tests running in parallel; a private /tmp and /run; and every process a
# block starts, a daemonized redis-server included, dies with the namespace when the sandbox ends,
# whether the blocks passed, failed or timed out, or this script was killed. A failure names the
# file:line of the block and of the failing command, and shows the block's output (its servers'
# output included). Where namespaces cannot be made (an unprivileged container) or `ip` is
# missing, the test is skipped (exit 77) with the reason.
set -uo pipefail

SELF=$(readlink -f "$0")
readonly SELF
readonly DEFAULT_TIMEOUT=60
readonly SERVE_WAIT=20    # seconds for a server (serve=, given=pushd) to accept connections
readonly TOTAL_BUDGET=270 # seconds for all sandboxes (ctest's TIMEOUT is 300)

log() { printf 'doc-test: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Inside a sandbox (namespaces made by unshare; PID 1 is the timeout that bounds it): run the
# blocks of one plan, record results.

# Waits until TCP PORT on 127.0.0.1 accepts a connection, or WAIT seconds pass, or PID exits.
wait_port() {
  local port=$1 pid=${3:-} deadline=$((SECONDS + $2))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.1
  done
}

# Waits until FILE contains TEXT (fixed string), or WAIT seconds pass.
wait_text() {
  local file=$1 text=$2 deadline=$((SECONDS + $3))
  until grep -aqF -- "$text" "$file" 2>/dev/null; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.1
  done
}

# given=pushd: pushd with its defaults (gRPC 0.0.0.0:50051, HTTP/WebSocket 0.0.0.0:8080).
given_pushd() {
  local out=$1
  build/services/pushd >>"$out" 2>&1 &
  if ! wait_text "$out" "pushd ready" "$SERVE_WAIT"; then
    echo "given=pushd: pushd did not print its ready line within ${SERVE_WAIT} s"
    return 1
  fi
}

# given=ws:USER: a WebSocket open as USER on 127.0.0.1:8080, held until the sandbox ends (or the
# server closes it); waits for its welcome frame, so the user is connected when the block runs.
given_ws() {
  local user=$1 out=$2.ws-$1
  (
    exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
    printf 'GET /ws?user_id=%s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n' \
      "$user" >&3
    printf 'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' >&3
    printf 'Sec-WebSocket-Version: 13\r\n\r\n' >&3
    exec cat <&3 >"$out"
  ) &
  if ! wait_text "$out" '"type":"welcome"' "$SERVE_WAIT"; then
    echo "given=ws:$user: no welcome frame on ws://127.0.0.1:8080/ws?user_id=$user:"
    cat -v "$out" 2>/dev/null
    return 1
  fi
}

# Runs block N (from DOC, fence at FENCE) with OPTS; returns its status, output in $WORK/N.log.
run_block() {
  local n=$1 doc=$2 fence=$3 opts=$4
  local body=$WORK/blocks/$n.body script=$WORK/blocks/$n.sh out=$WORK/$n.log
  local timeout=$DEFAULT_TIMEOUT serve="" given="" opt
  for opt in $opts; do
    case $opt in
      timeout=*) timeout=${opt#timeout=} ;;
      serve=*) serve=${opt#serve=} ;;
      given=*) given=${opt#given=} ;;
    esac
  done
  # The block, after a header of exactly 3 lines (so its line k is line k+3 of the script).
  {
    echo 'set -eo pipefail'
    echo "trap 's=\$?; echo \"doc-test: $doc:\$((LINENO - 3 + $fence)): exit status \$s\" >&2' ERR"
    echo "# $doc:$fence"
    cat "$body"
  } >"$script"
  : >"$out"
  local thing
  for thing in ${given//,/ }; do
    case $thing in
      pushd) given_pushd "$out" >>"$out" 2>&1 || return 1 ;;
      ws:*) given_ws "${thing#ws:}" "$out" >>"$out" 2>&1 || return 1 ;;
    esac
  done
  if [ -z "$serve" ]; then
    timeout -k 5 "$timeout" bash "$script" >>"$out" 2>&1
    local status=$?
    if ((status == 124 || status == 137)); then
      echo "doc-test: $doc:$fence: the block did not finish within $timeout s" >>"$out"
    fi
    return "$status"
  fi
  bash "$script" >>"$out" 2>&1 &
  local pid=$! port
  for port in ${serve//,/ }; do
    wait_port "$port" "$SERVE_WAIT" "$pid"
    case $? in
      0) ;;
      2)
        wait "$pid"
        local status=$?
        echo "doc-test: $doc:$fence: the block exited (status $status) before port $port" \
          "accepted connections: it was to leave a server running" >>"$out"
        return "$((status == 0 ? 1 : status))"
        ;;
      *)
        echo "doc-test: $doc:$fence: nothing accepted connections on port $port within" \
          "${SERVE_WAIT} s" >>"$out"
        return 1
        ;;
    esac
  done
}

private_tmp() {
  # Private /tmp and /run (redis-server --dir /tmp, its default pidfile in /var/run,
  # /tmp/render). Our own directories stay reachable: one under /tmp is bound back into the new
  # /tmp from the host's, seen through /run/doc-test-host-tmp.
  local path
  for path in "$WORK" "$BUILD" "$SOURCE"; do
    if [[ $path/ == /run/* ]]; then
      log "note: /tmp and /run are shared with the host ($path is in /run)"
      return 0
    fi
  done
  if ! mount -t tmpfs -o mode=755 doc-test /run || ! mkdir /run/doc-test-host-tmp ||
    ! mount --bind /tmp /run/doc-test-host-tmp || ! mount -t tmpfs -o mode=1777 doc-test /tmp; then
    log "cannot mount a private /tmp and /run"
    return 1
  fi
  for path in "$WORK" "$BUILD" "$SOURCE"; do
    if [[ $path/ == /tmp/* ]]; then
      mkdir -p "$path" && mount --bind "/run/doc-test-host-tmp/${path#/tmp/}" "$path" || return 1
    fi
  done
}

sandbox_main() {
  local plan=$1 results=$2
  cd / || exit 1
  if ! ip link set lo up; then
    log "cannot bring up the loopback interface of the sandbox"
    exit 1
  fi
  private_tmp || exit 1
  local box=$WORK/sandbox-${plan##*-}
  mkdir -p "$box" && cd "$box" || exit 1
  local entry
  for entry in "$SOURCE"/* "$SOURCE"/.[!.]*; do
    [ -e "$entry" ] || continue
    case ${entry##*/} in build | .git) continue ;; esac
    ln -s "$entry" .
  done
  ln -s "$BUILD" build
  # Nothing from the environment of the test run leaks into pushd's flags.
  unset "${!PUSHD_@}"

  local n doc fence opts failed=""
  while IFS=$'\t' read -r n doc fence opts; do
    if [ -n "$failed" ]; then
      printf '%s\tNOTRUN\tan earlier block of its sandbox failed (%s)\n' "$n" "$failed" >>"$results"
      continue
    fi
    local start=$SECONDS
    run_block "$n" "$doc" "$fence" "$opts"
    local status=$?
    if ((status == 0)); then
      printf '%s\tPASS\t%s s\n' "$n" "$((SECONDS - start))" >>"$results"
    else
      printf '%s\tFAIL\texit status %s\n' "$n" "$status" >>"$results"
      failed="$doc:$fence"
    fi
  done <"$plan"
  # Returning ends the sandbox: its PID 1 (timeout) exits with us, and the kernel kills every
  # process left in the namespace.
}

if [ "${1:-}" = --sandbox ]; then
  sandbox_main "$2" "$3"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: extract and check the blocks, run the sandboxes, report.

if (($# < 4)); then
  echo "usage: $0 BUILD_DIR SOURCE_DIR WORK_PARENT DOC..." >&2
  exit 2
fi
BUILD=$(readlink -f "$1")
SOURCE=$(readlink -f "$2")
mkdir -p "$3"
WORK=$(mktemp -d "$(readlink -f "$3")/doc-test.XXXXXX")
export BUILD SOURCE WORK
shift 3
DOCS=("$@")
mkdir -p "$WORK/blocks"
for bin in services/pushd tools/pushctl; do
  if [ ! -x "$BUILD/$bin" ]; then
    log "$BUILD/$bin is missing: build first"
    exit 1
  fi
done

# Extract every fenced block: blocks/N.body (the fence's indentation removed) and one manifest
# line per block: N, doc, fence line, language, classification ("" when none). Problems with
# doc-test comments go to the manifest as ERROR lines.
manifest=$WORK/manifest
: >"$manifest"
n=0
for doc in "${DOCS[@]}"; do
  if [ ! -f "$SOURCE/$doc" ]; then
    log "$doc: no such file in $SOURCE"
    exit 1
  fi
  n=$(awk -v doc="$doc" -v n="$n" -v dir="$WORK/blocks" -v manifest="$manifest" '
    function error(line, text) { printf "ERROR\t%s:%d\t%s\n", doc, line, text >> manifest }
    function flush_comment() {
      if (cline) error(cline, "this doc-test comment is not on the line just before a ```sh fence")
      cline = 0
    }
    {
      if (!infence) {
        if (match($0, /^ *```+/)) {
          indent = 0; while (substr($0, indent + 1, 1) == " ") indent++
          ticks = RLENGTH - indent
          info = substr($0, RLENGTH + 1); sub(/^[ \t]+/, "", info); split(info, words, /[ \t{]/)
          lang = tolower(words[1])
          cls = (cline == NR - 1) ? ctext : ""
          if (cline && cline != NR - 1) flush_comment()
          cline = 0
          infence = 1; fence = NR; n++
          body = dir "/" n ".body"; printf "" > body
          next
        }
        if ($0 ~ /^ *<!-- *doc-test:/) {
          flush_comment()
          cline = NR; ctext = $0
          sub(/^ *<!-- *doc-test: */, "", ctext)
          if (!sub(/ *--> *$/, "", ctext)) {
            error(NR, "a doc-test comment must end with --> on the same line")
            cline = 0
          }
          next
        }
        if (cline) flush_comment()
        next
      }
      line = $0
      if (match(line, /^ *```+ *$/)) {
        t = line; gsub(/[ ]/, "", t)
        if (length(t) >= ticks) {
          close(body)
          printf "%d\t%s\t%d\t%s\t%s\n", n, doc, fence, (lang == "" ? "-" : lang), cls >> manifest
          infence = 0
          next
        }
      }
      for (i = 0; i < indent && substr(line, 1, 1) == " "; i++) line = substr(line, 2)
      print line >> body
    }
    END {
      flush_comment()
      if (infence) error(fence, "this fence is never closed")
      print n
    }' "$SOURCE/$doc")
done

# Check the classifications and build the plans (one per sandbox).
errors=()
hint='put <!-- doc-test: run --> or <!-- doc-test: skip: REASON --> on the line just before'
hint+=' its fence'
declare -A class reason where opts sandbox_of
plans=()
order=()
last_run_doc=""
while IFS=$'\t' read -r id a b lang cls; do
  if [ "$id" = ERROR ]; then
    errors+=("$a: $b")
    continue
  fi
  doc=$a fence=$b
  where[$id]="$doc:$fence"
  case $lang in
    sh | bash | shell | console | zsh | shell-session) ;;
    *)
      if [ -n "$cls" ]; then
        errors+=("$doc:$fence: a doc-test comment on a \`\`\`$lang block (only shell blocks run)")
      fi
      continue
      ;;
  esac
  order+=("$id")
  case $cls in
    "")
      errors+=("$doc:$fence: this \`\`\`$lang block has no classification: $hint")
      ;;
    skip:*)
      class[$id]=skip
      reason[$id]=${cls#skip:}
      reason[$id]=${reason[$id]#"${reason[$id]%%[! ]*}"}
      if [ -z "${reason[$id]}" ]; then
        errors+=("$doc:$fence: doc-test skip needs a reason (skip: REASON)")
      fi
      ;;
    run | "run "*)
      class[$id]=run
      o=${cls#run}
      bad=""
      new_sandbox=1
      for word in $o; do
        case $word in
          continue) new_sandbox="" ;;
          serve=[0-9]*) [[ $word =~ ^serve=[0-9]+(,[0-9]+)*$ ]] || bad+=" $word" ;;
          timeout=[0-9]*) [[ $word =~ ^timeout=[0-9]+$ ]] || bad+=" $word" ;;
          given=*)
            for thing in $(tr , ' ' <<<"${word#given=}"); do
              [[ $thing =~ ^(pushd|ws:[A-Za-z0-9._:@-]+)$ ]] || bad+=" given=$thing"
            done
            ;;
          needs=?*) ;;
          *) bad+=" $word" ;;
        esac
      done
      if [ -n "$bad" ]; then
        errors+=("$doc:$fence: unknown doc-test run option(s):$bad")
        continue
      fi
      if [ -z "$new_sandbox" ] && [ "$last_run_doc" != "$doc" ]; then
        errors+=("$doc:$fence: doc-test run continue, but no run block before it in $doc")
        continue
      fi
      if [ -n "$new_sandbox" ]; then
        plans+=("$WORK/plan-${#plans[@]}")
        : >"${plans[-1]}"
      fi
      sandbox_of[$id]=${#plans[@]}
      last_run_doc=$doc
      opts[$id]=$o
      printf '%s\t%s\t%s\t%s\n' "$id" "$doc" "$fence" "$o" >>"${plans[-1]}"
      ;;
    *)
      errors+=("$doc:$fence: unknown doc-test classification '$cls' (run or skip: REASON)")
      ;;
  esac
done <"$manifest"

if ((${#errors[@]})); then
  log "FAILED: unclassified or badly classified blocks (see the top of $SELF):"
  printf '  %s\n' "${errors[@]}" >&2
  rm -rf "$WORK"
  exit 1
fi

# Blocks whose needs= programs are missing are taken out of their plan (reported as not run).
declare -A missing
for plan in "${plans[@]}"; do
  kept=$(mktemp "$WORK/plan.XXXXXX")
  while IFS=$'\t' read -r id doc fence o; do
    miss=""
    for word in $o; do
      case $word in
        needs=*) for prog in $(tr , ' ' <<<"${word#needs=}"); do
          command -v "$prog" >/dev/null || miss+=" $prog"
        done ;;
      esac
    done
    if [ -n "$miss" ]; then
      missing[$id]=${miss# }
    else
      printf '%s\t%s\t%s\t%s\n' "$id" "$doc" "$fence" "$o" >>"$kept"
    fi
  done <"$plan"
  mv "$kept" "$plan"
done

# The sandbox: network, PID and mount namespaces (and a user namespace when not root).
ns=(--net --pid --fork --kill-child --mount-proc)
[ "$(id -u)" -eq 0 ] || ns=(--user --map-root-user "${ns[@]}")
if ! command -v ip >/dev/null; then
  log "SKIPPED: needs ip (iproute2; scripts/setup.sh installs it) to bring up a private loopback"
  exit 77
fi
if ! out=$(unshare "${ns[@]}" sh -c 'ip link set lo up' 2>&1); then
  log "SKIPPED: cannot create network, PID and mount namespaces here (unshare ${ns[*]}): $out"
  exit 77
fi

results=$WORK/results
: >"$results"
sandbox_pid=""
cleanup() {
  [ -n "$sandbox_pid" ] && kill -KILL "$sandbox_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'log "interrupted"; exit 1' INT TERM
for plan in "${plans[@]}"; do
  [ -s "$plan" ] || continue
  budget=$((TOTAL_BUDGET - SECONDS))
  if ((budget <= 0)); then
    log "out of time ($TOTAL_BUDGET s) before $plan"
    break
  fi
  # setpriv: unshare dies with this script, even by SIGKILL; --kill-child: the sandbox's PID 1
  # (timeout, bounding the whole sandbox) dies with unshare; and the kernel kills every other
  # process of the namespace when its PID 1 dies.
  setpriv --pdeathsig KILL unshare "${ns[@]}" timeout -s KILL "$budget" \
    bash "$SELF" --sandbox "$plan" "$results" &
  sandbox_pid=$!
  wait "$sandbox_pid"
  status=$?
  sandbox_pid=""
  ((status == 0)) || log "sandbox $plan ended with status $status"
done

# Report every shell block in document order.
declare -A result detail
while IFS=$'\t' read -r id r d; do
  result[$id]=$r
  detail[$id]=$d
done <"$results"
failures=0
for id in "${order[@]}"; do
  case ${class[$id]} in
    skip) printf 'doc-test: %-22s skip: %s\n' "${where[$id]}" "${reason[$id]}" ;;
    run)
      if [ -n "${missing[$id]:-}" ]; then
        printf 'doc-test: %-22s NOT RUN: %s not installed\n' "${where[$id]}" "${missing[$id]}"
        continue
      fi
      r=${result[$id]:-NOTRUN}
      case $r in
        PASS) printf 'doc-test: %-22s ran, passed (%s)\n' "${where[$id]}" "${detail[$id]}" ;;
        FAIL)
          failures=$((failures + 1))
          printf '\ndoc-test: %-22s FAILED (%s). The block:\n' "${where[$id]}" "${detail[$id]}"
          sed 's/^/    | /' "$WORK/blocks/$id.body"
          printf 'its output (and that of the servers it started):\n'
          sed 's/^/    > /' "$WORK/$id.log" | cat -v | tail -n 80
          for before in "${order[@]}"; do
            ((before < id)) || break
            [ "${sandbox_of[$before]:-}" = "${sandbox_of[$id]}" ] || continue
            [ -f "$WORK/$before.log" ] || continue
            printf 'output of %s, earlier in its sandbox (and of the servers it left running):\n' \
              "${where[$before]}"
            sed 's/^/    > /' "$WORK/$before.log" | cat -v | tail -n 30
          done
          echo
          ;;
        *)
          failures=$((failures + 1))
          printf 'doc-test: %-22s NOT RUN: %s\n' "${where[$id]}" \
            "${detail[$id]:-the sandbox ended first}"
          ;;
      esac
      ;;
  esac
done
if ((failures)); then
  log "FAILED: $failures documented block(s) did not run as written (work files: $WORK)"
  trap - EXIT
  cleanup
  exit 1
fi
rm -rf "$WORK"
log "passed"
