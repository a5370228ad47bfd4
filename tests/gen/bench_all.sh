#!/usr/bin/env bash
# Runs the forward and training benchmarks of BENCHMARKS.md side by side with the PyTorch peers,
# on random-weight models of real shapes. By hand, on a quiet machine, after a Release build:
#   bash tests/gen/bench_all.sh [THREADS]     (results: one JSON line each, in /tmp/lk-bench/)
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
B=$here/build
S=$here/../shared
t=${1:-2}
o=/tmp/lk-bench
mkdir -p "$o"
q05=$o/qwen2.5-0.5b-rand
l3b=$o/llama-3.2-3b-rand
[ -d "$q05" ] || "$B/lora-random-model" -c "$S/models/qwen2.5-0.5b/config.json" -o "$q05" --dtype bf16
py=/usr/bin/python3
run() { echo "+ $*" >&2; "$@"; }

# forward, 512 tokens
run "$B/lora-bench" -m "$q05" --tokens 512 --decode 16 -t "$t" --json | tee "$o/fwd-f32.json"
run "$B/lora-bench" -m "$q05" --quant nf4 --tokens 512 --decode 16 -t "$t" --json | tee "$o/fwd-nf4.json"
run "$py" "$here/tests/gen/bench_torch_forward.py" "$q05" --dtype fp32 --tokens 512 --threads "$t" | tee "$o/fwd-torch-fp32.json"
run "$py" "$here/tests/gen/bench_torch_forward.py" "$q05" --dtype bf16 --tokens 512 --threads "$t" | tee "$o/fwd-torch-bf16.json"

# LoRA training step: seq 512, batch 1, r 16 on all seven modules
for q in nf4 none; do
    run "$B/lora-bench" -m "$q05" --train --quant "$q" --tokens 512 --rank 16 --steps 2 -t "$t" \
        --tokenizer "$S/models/qwen2.5-tokenizer" --json | tee "$o/train-$q.json"
done
for d in fp32 bf16; do
    run "$py" "$here/tests/gen/bench_torch_train.py" "$q05" --dtype "$d" --tokens 512 --rank 16 \
        --threads "$t" --steps 2 | tee "$o/train-torch-$d.json"
done

# Llama-3.2-3B shape: peak RSS and seconds per step (NF4 base)
if [ "${LK_BENCH_3B:-1}" = 1 ]; then
    [ -d "$l3b" ] || "$B/lora-random-model" -c "$S/models/llama-3.2-3b-instruct/config.json" -o "$l3b" --dtype bf16
    run "$B/lora-bench" -m "$l3b" --train --quant nf4 --tokens 512 --rank 16 --steps 1 -t "$t" \
        --tokenizer "$S/models/llama-3.2-3b-instruct" --json | tee "$o/train-3b-nf4.json"
fi
