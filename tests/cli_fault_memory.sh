#!/usr/bin/env bash
# Memory: lora-train --dry-run compares its plan with the memory this process can have (the
# smallest of MemAvailable, the cgroup's memory.max and ulimit -v) and warns, exit 1, when the plan
# does not fit; a real run gives the same warning. Under an address-space limit (`ulimit -v`),
# allocations that fail are reported (exit 1, a message saying what could not be allocated), never
# a crash: lora-train's training buffers and activations, lora-generate's KV cache and token
# buffer. The ulimit -v part is skipped under AddressSanitizer, which needs terabytes of address
# space; OpenBLAS is held to one thread there because its buffers (128 MiB a thread) are not
# covered by our checks (it retries forever when its own allocation fails: OpenBLAS issue 5289).
# Usage: cli_fault_memory.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd) S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
C=(-m "$M" --data "$D" -t 1 -q)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# --- the plan against the machine ---------------------------------------------------------------
expect 0 "a plan that fits" -- "$B/lora-train" "${C[@]}" --seq-len 64 -o "$T/x" --dry-run --json
"$B/jsoncheck" peak_bytes available_bytes available_limit fits <"$T/out" &&
    grep -q '"fits":true' "$T/out" && ok || bad "fitting plan JSON: $(cat "$T/out")"
# 100 million rows of 4096 tokens: terabytes of activations
expect 1 "a plan beyond this machine" -- "$B/lora-train" "${C[@]}" --seq-len 4096 \
    --batch 100000000 -o "$T/x" --dry-run --json
has err "warning: the plan needs [0-9]* MiB, more than the [0-9]* MiB available" "plan warning"
grep -q '"fits":false' "$T/out" && ok || bad "a plan beyond the machine: $(cat "$T/out")"
[ ! -e "$T/x" ] && ok || bad "a dry run wrote $T/x"

if grep -q '^LK_SANITIZE:BOOL=ON' "$B/CMakeCache.txt" 2>/dev/null; then
    echo "SKIP: ulimit -v part (an AddressSanitizer build needs unlimited address space)"
else
    # lim KB WHAT CODE -- cmd...: under ulimit -v KB (a hang, e.g. in OpenBLAS, fails after 120 s)
    lim() {
        local kb=$1
        shift
        expect "$2" "$1" -- bash -c "ulimit -v $kb && exec timeout 120 \"\$@\"" - "${@:4}"
        ! grep -q -i "sanitizer\|segmentation\|internal error" "$T/err" && ok || bad "$1: crashed"
    }
    # a 1.2 GiB plan against 780 MiB of address space
    lim 800000 "dry run under ulimit -v" 1 -- "$B/lora-train" "${C[@]}" --seq-len 131072 \
        -o "$T/x" --dry-run
    has err "the address-space limit (ulimit -v)" "the deciding limit is named"
    lim 800000 "activations beyond ulimit -v" 1 -- "$B/lora-train" "${C[@]}" --seq-len 131072 \
        -o "$T/v1" --steps 1
    has err "warning: the plan needs" "a real run warns first"
    has err "cannot allocate training buffers for 131072 tokens" "activations: reported"
    [ ! -e "$T/v1/adapter_model.safetensors" ] && ok ||
        bad "an adapter was written after an allocation failure"
    lim 800000 "trainer buffers beyond ulimit -v" 1 -- "$B/lora-train" "${C[@]}" --seq-len 512 \
        --batch 1000000 -o "$T/v2" --steps 1
    has err "out of memory for the trainer's buffers" "trainer buffers: reported"
    lim 800000 "KV cache beyond ulimit -v" 1 -- "$B/lora-generate" -m "$M" -p "Once" \
        -n 100000000 --temp 0 -t 1
    has err "cannot allocate a session of 100000002 tokens" "KV cache: reported"
    lim 800000 "token buffer beyond ulimit -v" 1 -- "$B/lora-generate" -m "$M" -p "Once" \
        -n 2000000000 --temp 0 -t 1
    has err "out of memory for 2000000002 tokens" "token buffer: reported"
fi

echo "cli_fault_memory: $passes passed, $fails failed"
[ "$fails" = 0 ]
