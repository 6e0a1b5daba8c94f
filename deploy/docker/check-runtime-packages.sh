#!/usr/bin/env bash
# Checks the runtime stage of deploy/docker/Dockerfile against the built binaries (Docker does
# not run here, so this is how CI keeps the image honest):
#  - every shared library the binaries load comes from a package in RUNTIME_PACKAGES, from a
#    dependency of one, or from the slim base image;
#  - every package in RUNTIME_PACKAGES ships a library the binaries load (nothing extra).
# Usage: check-runtime-packages.sh BINARY...
set -euo pipefail
dockerfile="$(cd "$(dirname "$0")" && pwd)/Dockerfile"
(($#)) || { echo "usage: $0 BINARY..." >&2; exit 2; }

listed=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' "$dockerfile")
[ -n "$listed" ] || { echo "FAIL: no ARG RUNTIME_PACKAGES=\"...\" line in $dockerfile" >&2; exit 1; }
# What debian:bookworm-slim has before any install (libstdc++6 and zlib1g come with apt and dpkg).
base="libc6 libgcc-s1 libstdc++6 zlib1g gcc-12-base"

# Every library the binaries load, and the Debian package that ships it. One dpkg -S for all (it
# is slow per call); under merged /usr a library is registered as /lib/... or /usr/lib/..., so ask
# for both spellings, and fall back to its file name.
for bin in "$@"; do
  [ -x "$bin" ] || { echo "FAIL: $bin is not an executable" >&2; exit 1; }
done
mapfile -t libs < <(for bin in "$@"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u)
declare -A owner=()
while IFS= read -r line; do
  owner[${line#*: }]=${line%%: *}
done < <({ for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  printf '%s\n' "$lib" "$real" "${real#/usr}" "/usr${lib#/usr}"
done | sort -u | xargs dpkg -S 2>/dev/null || true; } | grep -v '^diversion' | sed 's/:[a-z0-9]*: /: /')

declare -A needed=()   # package -> one library of it that a binary loads
for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  pkg=${owner[$lib]:-${owner[$real]:-${owner[${real#/usr}]:-${owner[/usr${lib#/usr}]:-}}}}
  [ -n "$pkg" ] || pkg=$(dpkg -S "*/$(basename "$real")" 2>/dev/null | head -n 1 | cut -d: -f1)
  [ -n "$pkg" ] || { echo "FAIL: no Debian package ships $lib" >&2; exit 1; }
  needed[$pkg]=$lib
done

# shellcheck disable=SC2086
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances $listed | grep -v '^ ' | sort -u)

failed=0
for pkg in "${!needed[@]}"; do
  if ! grep -qxF "$pkg" <<<"$closure"$'\n'"${base// /$'\n'}"; then
    echo "FAIL: ${needed[$pkg]} comes from $pkg: add it to RUNTIME_PACKAGES in $dockerfile"
    failed=1
  fi
done
for pkg in $listed; do
  if [ -z "${needed[$pkg]:-}" ]; then
    echo "FAIL: RUNTIME_PACKAGES lists $pkg, which no binary loads: drop it from $dockerfile"
    failed=1
  fi
done
((failed == 0)) || exit 1
echo "ok: RUNTIME_PACKAGES ($listed) covers the ${#needed[@]} packages that $(basename -a "$@" | paste -sd' ') load"
