#!/usr/bin/env bash
# Data-parallel benchmarks of BENCHMARKS.md ("Data parallelism over MPI"), run by hand as root:
#
#   bash tools/bench_mpi.sh local BUILD MODEL DATA [ROUNDS]
#       lora-train on 2 ranks × 1 thread against 1 process × 2 threads, the same 2 rows per step,
#       alternated ROUNDS times (default 3); tokens/s of steps 2–3 of each run.
#   bash tools/bench_mpi.sh link BUILD MODEL DATA
#       one rank on each of two network namespaces joined by a veth pair (tests/lib_netns.sh),
#       the link shaped by tc (netem, or tbf where the kernel lacks netem) to 1 Gbit/s, 10 Gbit/s
#       and left unshaped: bytes each rank
#       sends and seconds the gradient sum takes per step (lora-train --json: allreduce_bytes,
#       allreduce_s of steps 2–3).
#
# MODEL: e.g. build/lora-random-model -c ../shared/models/qwen2.5-0.5b/config.json -o /tmp/q05
# --dtype bf16 plus the files of ../shared/models/qwen2.5-tokenizer; DATA: pre-tokenised rows
# ({"input_ids": [...], "labels": [...]}, 512 ids each). Settings as BENCHMARKS.md's "Training".
set -u
mode=$1 B=$(cd "$2" && pwd) MODEL=$3 DATA=$4 ROUNDS=${5:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd) S=$SRC/../shared
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_mpi.sh"
TRAIN=(-m "$MODEL" --data "$DATA" --quant nf4 --quant-embed q8_0 --rank 16 --alpha 32 --force -q
    --json)

# tps FILE: tokens/s over steps 2..last of a --json log (the first step's time includes warm-up).
tps() {
    awk -F'"elapsed_s":' '/"type":"step"/ {
        n++; split($2, e, /[,}]/); el[n] = e[1]
        split($0, t, /"tokens":/); split(t[2], k, /,/); tok[n] = k[1] }
        END { s = 0; for (i = 2; i <= n; i++) s += tok[i]; printf "%.2f", s / (el[n] - el[1]) }' "$1"
}

# per_step FILE KEY: the mean of KEY over steps 2..last.
per_step() {
    awk -v key="\"$2\":" -F, '/"type":"step"/ { n++; for (i = 1; i <= NF; i++) if (index($i, key) == 1)
        { v = substr($i, length(key) + 1); sub(/}/, "", v); if (n > 1) { s += v; m++ } } }
        END { printf "%.6g", s / m }' "$1"
}

local_bench() {
    local r
    for r in $(seq 1 "$ROUNDS"); do
        mpirun -np 2 --bind-to core "$B/lora-train" "${TRAIN[@]}" --seq-len 512 --steps 3 \
            --batch 1 -t 1 -o "$T/o2" >"$T/two.json" 2>"$T/two.err" || { cat "$T/two.err"; exit 1; }
        "$B/lora-train" "${TRAIN[@]}" --seq-len 512 --steps 3 --batch 2 -t 2 -o "$T/o1" \
            >"$T/one.json" 2>"$T/one.err" || { cat "$T/one.err"; exit 1; }
        echo "round $r: 2 ranks x 1 thread $(tps "$T/two.json") tokens/s," \
            "1 process x 2 threads $(tps "$T/one.json") tokens/s" \
            "(ratio $(awk -v a="$(tps "$T/two.json")" -v b="$(tps "$T/one.json")" \
                'BEGIN { printf "%.3f", a / b }'))"
    done
}

link_bench() {
    . "$SRC/tests/lib_netns.sh"
    trap 'netns_down; rm -rf "$T"' EXIT
    netns_up
    local rate
    for rate in 1gbit 10gbit none; do
        echo "link $rate: shaped with $(limit "$rate")"
        hosts "$B/lora-train" "${TRAIN[@]}" --seq-len 128 --steps 3 --batch 1 -t 1 -o "$T/l" \
            >"$T/l.json" 2>"$T/l.err" || { cat "$T/l.err"; exit 1; }
        echo "link $rate: $(per_step "$T/l.json" allreduce_bytes) bytes sent per rank per step," \
            "$(per_step "$T/l.json" allreduce_s) s per gradient sum," \
            "step $(awk -F'"elapsed_s":' '/"type":"step"/ { split($2, e, /[,}]/); x[++n] = e[1] }
                END { printf "%.2f", (x[n] - x[1]) / (n - 1) }' "$T/l.json") s"
    done
}

case $mode in
local) local_bench ;;
link) link_bench ;;
*) echo "usage: bench_mpi.sh local|link BUILD MODEL DATA [ROUNDS]" >&2 && exit 2 ;;
esac
