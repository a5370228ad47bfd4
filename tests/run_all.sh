#!/usr/bin/env bash
# Install what is missing, build (warnings are errors) and run every test.
# Usage: bash tests/run_all.sh [BUILD_DIR [extra cmake args...]]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}; shift || true
bash "$here/.ci/deps.sh"
bash "$here/.ci/build.sh" "$dir" "$@"
cd "$here/$dir"
ctest --output-on-failure -j"$(nproc)"
