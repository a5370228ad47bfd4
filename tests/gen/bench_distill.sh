#!/usr/bin/env bash
# Distillation step speed beside SFT on the random-weight Qwen2.5-0.5B shape (BENCHMARKS.md,
# "Distillation"), and teacher-cache bytes per position. Usage (from the repository root):
#   bash tests/gen/bench_distill.sh MODEL_DIR DATA.jsonl THREADS OUT_DIR
# MODEL_DIR: build/lora-random-model -c ../shared/models/qwen2.5-0.5b/config.json -o DIR --dtype bf16
# (plus ../shared/models/qwen2.5-tokenizer/*); DATA: pre-tokenised rows of 512 ids.
set -eu
M=$1 DATA=$2 TH=$3 O=$4
B=${B:-build}
mkdir -p "$O"
COMMON=(-m "$M" --data "$DATA" --quant nf4 --quant-embed q8_0 --seq-len 512 --rank 16 --alpha 32
    --steps 3 -t "$TH" --force -q --json)
run() { # run NAME ARGS...: seconds of steps 2-3 (wall, from the JSON lines), CPU s and peak RSS
    local name=$1
    shift
    /usr/bin/time -f "%U %S %M" -o "$O/$name.time" "$B/lora-train" "${COMMON[@]}" \
        -o "$O/$name" "$@" >"$O/$name.json"
    awk -v n="$name" -v t="$(cat "$O/$name.time")" '/"type":"step"/ {
        match($0, /"elapsed_s":[0-9.e+-]+/); e[++k] = substr($0, RSTART + 12, RLENGTH - 12) }
        END { split(t, a, " "); printf "%-14s %8.1f s/step (steps 2-3)  cpu %7.1f s  rss %6.0f MiB\n",
              n, (e[k] - e[1]) / (k - 1), a[1] + a[2], a[3] / 1024 }' "$O/$name.json"
}
run sft
run kd-self --objective kd --teacher self
for k in 32 64; do
    "$B/lora-teacher" -m "$M" --data "$DATA" --top-k $k -o "$O/cache-$k.tc" -t "$TH" --force -q \
        --json >"$O/cache-$k.json"
    sed -n 's/.*"bytes_per_position":\([0-9.e+-]*\).*/cache k='$k': \1 bytes per position/p' \
        "$O/cache-$k.json"
done
run kd-cache --objective kd --teacher-cache "$O/cache-32.tc"
