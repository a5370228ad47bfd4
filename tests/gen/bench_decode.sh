#!/usr/bin/env bash
# Decode (and prefill) of SmolLM2-135M-Instruct GGUF files: lora-bench builds given on the command
# line (e.g. the branch's start and its head) and llama.cpp's llama-bench (pp512, tg32 from an
# empty cache and tg32 at depth 512), alternating in one loop, ROUNDS times; one JSON line per run
# on stdout (lorakit) or llama-bench's JSON lines (peer). By hand, never in CI.
# Usage: bench_decode.sh ROUNDS LORA_BENCH... (LK_KERNELS passes through; REPEAT: the prefill
# repetitions, default 3).
# Files: ../shared's Q4_1 and /root/peers/models' Q4_0, Q8_0, F32 (FILES overrides).
set -u
ROUNDS=$1
shift
S=$(cd "$(dirname "$0")/../../../shared" && pwd)
P=/root/peers/models
FILES=${FILES:-"$P/SmolLM2-135M-Instruct.Q4_0.gguf $S/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf $P/SmolLM2-135M-Instruct.Q8_0.gguf $P/SmolLM2-135M-Instruct.F32.gguf"}
LB=/root/peers/llama.cpp-build/bin/llama-bench
for r in $(seq "$ROUNDS"); do
    for f in $FILES; do
        for b in "$@"; do
            for c in f32 int8; do
                echo "# round $r $(basename "$f") $b --compute $c load $(cut -d' ' -f1 /proc/loadavg)"
                "$b" -m "$f" --compute $c -n 512 --repeat "${REPEAT:-3}" --decode 32 -t 2 --json -q
            done
        done
        echo "# round $r $(basename "$f") llama-bench load $(cut -d' ' -f1 /proc/loadavg)"
        "$LB" -m "$f" -p 512 -n 32 -t 2 -r 3 -o jsonl 2>/dev/null
        # tg32 after 512 tokens in the cache: what lora-bench's --decode after -n 512 measures
        "$LB" -m "$f" -p 0 -n 32 -d 512 -t 2 -r 3 -o jsonl 2>/dev/null
    done
done
