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
echo "cli_install: 1 passed, 0 failed"
