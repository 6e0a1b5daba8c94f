#!/usr/bin/env bash
# Sets everything up, builds, and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Raise the open-files soft limit for connection-heavy tests (the hard limit is the cap).
ulimit -n "$(ulimit -Hn)" || true
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --parallel "${TEST_PARALLEL:-4}" --timeout 300
