# Shared by tests/cli_mpi*.sh and tools/bench_mpi.sh (sourced after lib_cli.sh; not a test itself):
# the skip when this build has no MPI, Open MPI's settings for tests run as root in containers,
# mpirun bounded in time, lora-train options for stories260K-hf, and dw_rel, the relative
# difference of two adapters' updates. Needs $B, $S, $SRC and $T.

ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# skip REASON: the test cannot run here (ctest counts exit 77 as skipped).
skip() {
    echo "$(basename "$0" .sh): skipped: $*"
    exit 77
}
[ "${LK_HAVE_MPI:-1}" = 1 ] || skip "lorakit was built without MPI (install libopenmpi-dev)"
command -v mpirun >/dev/null || skip "no mpirun (install openmpi-bin)"
"$B/lora-train" --help >/dev/null 2>&1 || skip "no lora-train in $B"

# CI runs as root; containers forbid the cross-process memory copy (CMA) of Open MPI's
# shared-memory transport, so it copies through a buffer instead.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
E=$SRC/samples/data/whale-test.jsonl
# --lr is the default (2e-4); --dropout on, so that the masks of each global row must match
NODATA=(-m "$M" --seq-len 128 --rank 4 --dropout 0.1 -t 1 -q)
BASE=("${NODATA[@]}" --data "$D")

# mpirun_ ARGS...: mpirun, at most 120 s. In an AddressSanitizer build, LeakSanitizer cannot
# tell Open MPI's allocations (made by components it unloads at MPI_Finalize, so their frames
# have no names) from lorakit's, so leak detection is off under mpirun; tests/test_dist.c runs the
# group's code under LeakSanitizer with an in-process transport.
mpirun_() {
    ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0" timeout -k 5 120 mpirun "$@"
}

# mpi N ARGS...: mpirun_ with N ranks on this machine (more ranks than cores).
mpi() {
    local n=$1
    shift
    mpirun_ -np "$n" --oversubscribe --bind-to none "$@"
}

# dw_rel A B: ‖ΔW_A − ΔW_B‖ / ‖ΔW_B‖ over every module of two adapters (ΔW = s·B·A, the update an
# adapter makes), from lora-inspect's per-module norms and relative differences.
dw_rel() {
    "$B/lora-inspect" "$1" "$2" --json | awk '{
        n = split($0, a, /"norm_delta":/)
        for (i = 2; i <= n; i++) { split(a[i], b, /[,}]/); nd[i - 1] = b[1] }
        m = split($0, c, /"rel_diff":/)
        for (i = 2; i <= m; i++) { split(c[i], d, /[,}]/); rd[i - 1] = d[1] }
        s = 0; w = 0
        for (i = 1; i < n; i++) { s += (rd[i] * nd[i]) ^ 2; w += nd[i] ^ 2 }
        if (n < 2 || n != m) print "nan"; else printf "%.3g\n", sqrt(s / w) }'
}

# close_to A B WHAT: the adapters agree within 1e-6 (dw_rel).
close_to() {
    local r
    r=$(dw_rel "$1" "$2")
    if awk -v r="$r" 'BEGIN { exit !(r == r + 0 && r <= 1e-6) }'; then
        ok
        echo "  $3: relative difference $r"
    else
        bad "$3: relative difference of the adapters' updates is $r, expected <= 1e-6"
    fi
}

# same A B WHAT: the files are the same bytes.
same() { cmp -s "$1" "$2" && ok || bad "$3: $1 and $2 differ"; }

# descendants PID: every process below PID (from /proc, without procps). The stat files go
# through cat, which passes over a process that ends between the glob and the read (Debian's awk,
# mawk, stops at the first file it cannot open: under load, then, no descendant was found).
descendants() {
    local c
    for c in $(cat /proc/[0-9]*/stat 2>/dev/null |
        awk -v p="$1" '{ pid = $1; sub(/.*\) /, ""); if ($2 == p) print pid }'); do
        echo "$c"
        descendants "$c"
    done
}

# rank_pid PID RANK: the pid of that rank of the job started below PID (empty when gone).
rank_pid() {
    local p
    for p in $(descendants "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" &&
            echo "$p" && return
    done
}

# mpirun_pid PID: the mpirun started below PID.
mpirun_pid() {
    local p
    for p in $(descendants "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mpirun ] && echo "$p" && return
    done
}

# ---- a run to interrupt ----
# 24 steps on 2 ranks with a checkpoint every 2 steps (progress lines off, the saving messages on).
RL=(-m "$M" --data "$D" --seq-len 64 --rank 4 --dropout 0.1 -t 1 --steps 24 --batch 1
    --save-every 2 --save-limit 0 --log-every 100)

# start_run NAME LAUNCHER...: LAUNCHER lora-train RL -o $T/NAME in the background ($job), back
# once its first checkpoint is there; stderr in $T/NAME.err.
start_run() {
    local name=$1
    shift
    "$@" "$B/lora-train" "${RL[@]}" -o "$T/$name" 2>"$T/$name.err" >/dev/null &
    job=$!
    wait_checkpoint "$name"
    sleep 0.05
}

# wait_checkpoint NAME: back once $T/NAME's first checkpoint is there (at most 30 s).
wait_checkpoint() {
    for _ in $(seq 1 3000); do
        [ -e "$T/$1/checkpoint-2/state.ckpt" ] && break
        sleep 0.01
    done
}

# resume_run NAME REF LAUNCHER...: resume $T/NAME to the end; its adapter must be REF's.
resume_run() {
    local name=$1 ref=$2
    shift 2
    expect 0 "$name: resume" -- "$@" "$B/lora-train" "${RL[@]}" -o "$T/$name" --resume "$T/$name"
    has err "resumed from" "$name: resumed from a checkpoint"
    same "$ref/adapter_model.safetensors" "$T/$name/adapter_model.safetensors" "$name: after resume"
}
