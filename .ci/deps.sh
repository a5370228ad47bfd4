#!/usr/bin/env bash
# Install the Debian packages lorakit needs to build and test (as root; no-op when present), or
# those named as arguments (.ci/arm.sh: the cross compiler and qemu).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libzstd-dev libcmocka-dev
      libargtable2-dev libcjson-dev libpcre2-dev libutf8proc-dev
      librsvg2-bin                        # rsvg-convert: tests/cli_ux.sh renders the SVGs to PNG
      clang libclang-rt-dev libomp-dev     # the libFuzzer build (tests/fuzz)
      openmpi-bin libopenmpi-dev iproute2) # data-parallel training; tests/cli_mpi*.sh
[ $# -eq 0 ] || pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
