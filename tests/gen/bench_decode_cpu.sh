#!/usr/bin/env bash
# CPU time per decoded token, for a shared machine where wall-clock tokens/s mean little: the
# task-clock (perf stat) of --decode 80 minus that of --decode 16, over 64, for lora-bench builds
# (f32 and int8 compute) and llama.cpp's llama-bench (-n 80 minus -n 16 at the same depth), one
# line each. By hand, never in CI. Usage: FILES="A.gguf ..." BINS="build/lora-bench ..."
# [T=threads, default 1] [N=prefill tokens before decoding, default 1] bench_decode_cpu.sh
set -u
T=${T:-1}
N=${N:-1}
LB=/root/peers/llama.cpp-build/bin/llama-bench
ct() { perf stat -e task-clock -x, "$@" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
per_token() { echo "($2 - $1) / 64" | bc -l | cut -c1-6; }
for f in $FILES; do
    for b in $BINS; do
        for c in f32 int8; do
            a=$(ct "$b" -m "$f" --compute $c -n "$N" --repeat 1 --decode 16 -t "$T" -q)
            z=$(ct "$b" -m "$f" --compute $c -n "$N" --repeat 1 --decode 80 -t "$T" -q)
            echo "$(basename "$f") $b $c $(per_token "$a" "$z") CPU ms/token" \
                "(load $(cut -d' ' -f1 /proc/loadavg))"
        done
    done
    a=$(ct "$LB" -m "$f" -p 0 -n 16 -d $((N - 1)) -r 1 -t "$T")
    z=$(ct "$LB" -m "$f" -p 0 -n 80 -d $((N - 1)) -r 1 -t "$T")
    echo "$(basename "$f") llama.cpp - $(per_token "$a" "$z") CPU ms/token" \
        "(load $(cut -d' ' -f1 /proc/loadavg))"
done
