#!/usr/bin/env bash
# Configure and build lorakit into ${1:-build} (extra cmake arguments after it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}; shift || true
cmake -S "$here" -B "$here/$dir" -DCMAKE_BUILD_TYPE=Release -DLK_WERROR=ON "$@" >/dev/null
cmake --build "$here/$dir" -j"$(nproc)"
