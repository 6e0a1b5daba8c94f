#!/usr/bin/env bash
# Sets everything up, then runs pushd in the foreground on the embedded in-memory default.
# Extra arguments are passed to pushd (e.g. --ws_listen=127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${BUILD_DIR:-build}/services/pushd" "$@"
