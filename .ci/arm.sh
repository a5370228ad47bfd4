#!/usr/bin/env bash
# The aarch64 kernels (quant/*_neon.c) on a machine without one: cross-compile quant/ (the
# reference, the NEON variant, dispatch) with the core files it needs and tests/cross/kernels.c
# into one aarch64 binary with Debian's cross compiler, and run it under qemu user emulation
# (qemu-aarch64 -L the cross libc: no binfmt needed): every NEON kernel against the plain-C
# reference, the int8 NEON GEMM (quant/q8_neon.c, sdot: qemu's default CPU model has dotprod) bit
# for bit against the int8 reference, and dispatch choosing NEON (the reference under
# LK_KERNELS=ref; NEON still when LK_KERNELS names a variant this build lacks). A second binary,
# tests/cross/attn.c, checks the attention kernels (src/nn/attn_ref.c) against an fp64 reference.
# About a minute on 2 cores. Installs the cross
# compiler and qemu when missing (as root); any failure, an install included, fails CI.
# Usage: bash .ci/arm.sh [BUILD_DIR]   (default build-arm)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-arm}
case "$dir" in /*) ;; *) dir="$here/$dir" ;; esac
cc=aarch64-linux-gnu-gcc
bash "$here/.ci/deps.sh" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
for tool in "$cc" qemu-aarch64; do
    command -v "$tool" >/dev/null || { echo "arm.sh: $tool not found after installing" >&2; exit 1; }
done

# The sources of the library's aarch64 build (CMakeLists.txt: quant/*.c less the x86-64 kernel
# files; *_neon.c get LK_HAVE_NEON and no extra flags), and core's status, tensor and thread pool.
srcs=()
for f in "$here"/quant/*.c; do
    case "$(basename "$f" .c)" in *_avx2 | *_avx512 | *_amx) continue ;; esac
    srcs+=("$f")
done
srcs+=("$here"/src/core/{status,tensor,pool}.c "$here/tests/cross/kernels.c")
mkdir -p "$dir"
flags=(-std=c11 -O2 -D_GNU_SOURCE -DLK_HAVE_NEON -pthread -Wall -Wextra -Wshadow
    -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-unused-parameter -Werror
    -I"$here/include" -I"$here/src" -I"$here/quant")
"$cc" "${flags[@]}" "${srcs[@]}" -lm -o "$dir/kernels"
# the attention kernels' portable variant (its generic vectors are NEON here), with nn/ops.c
unset 'srcs[${#srcs[@]}-1]'
"$cc" "${flags[@]}" "${srcs[@]}" "$here"/src/nn/{ops,attn_ref}.c "$here/tests/cross/attn.c" -lm \
    -o "$dir/attn"
file_info=$(aarch64-linux-gnu-readelf -h "$dir/kernels" | grep Machine)
echo "built $dir/kernels ($file_info)"

# qemu's default CPU model (max) has Advanced SIMD, as every AArch64 CPU does. Each run has a
# time limit (the kernels: about 25× what they take here on a quiet machine; a machine loaded 20-fold
# took more than 1200 s), so that a hang fails this step instead of using up
# CI's time.
emulate() {
    local limit=$1
    shift
    local rc=0
    timeout "$limit" qemu-aarch64 -L /usr/aarch64-linux-gnu "$@" || rc=$?
    if [ "$rc" = 124 ]; then
        echo "arm.sh: $* did not finish within ${limit}s under qemu-aarch64" >&2
    fi
    return "$rc"
}
LK_KERNELS=ref emulate 120 "$dir/kernels" --dispatch ref --dispatch-only
LK_KERNELS=avx2 emulate 120 "$dir/kernels" --dispatch neon --dispatch-only
emulate 2400 "$dir/kernels" --dispatch neon
emulate 300 "$dir/attn"
