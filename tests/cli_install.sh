#!/usr/bin/env bash
# cmake --install into a temporary prefix, then build samples/greedy.c against the installed
# headers and library through pkg-config alone, and run it.
# Usage: cli_install.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -eu
B=$1 S=$2 SRC=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$B" --prefix "$T/prefix" >/dev/null
for f in bin/lora-eval bin/lora-generate include/lorakit/lorakit.h; do
    [ -e "$T/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
pc=$(find "$T/prefix" -name lorakit.pc)
export PKG_CONFIG_PATH=$(dirname "$pc")
# the sanitizer flags of an ASan build must also reach this link
extra=$(grep -q 'LK_SANITIZE:BOOL=ON' "$B/CMakeCache.txt" && echo "-fsanitize=address,undefined" || true)
cc -std=c11 $extra "$SRC/samples/greedy.c" -o "$T/greedy" $(pkg-config --cflags --libs --static lorakit)
out=$("$T/greedy" "$S/models/stories260K-hf" 5)
[ "$out" = "403 407 261 378 432" ] || { echo "FAIL: installed sample printed '$out'"; exit 1; }
# liblorakit_mpi through lorakit-mpi.pc: a process no launcher started is a group of one
cat >"$T/group.c" <<'EOF2'
#include <stdio.h>
#include "lorakit/lorakit.h"
int main(void)
{
    lk_dist *d;
    if (lk_dist_open(&d) != LK_OK)
        return 1;
    printf("%d %d\n", lk_dist_rank(d), lk_dist_size(d));
    lk_dist_close(d);
    return 0;
}
EOF2
cc -std=c11 $extra "$T/group.c" -o "$T/group" $(pkg-config --cflags --libs --static lorakit-mpi)
out=$(env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_SIZE -u PMI_RANK "$T/group")
[ "$out" = "0 1" ] || { echo "FAIL: installed lorakit-mpi printed '$out'"; exit 1; }
echo "cli_install: 2 passed, 0 failed"
