#!/bin/bash
# The headline re-measure after issue 13's last wave (BENCHMARKS.md "Headline after issue 13's last
# wave"): SmolLM2 training (GGUF Q4_0/Q4_1 in place, f32 form quantised at load; f32 and int8
# compute, the default, LK_KERNELS=avx2) beside PyTorch + PEFT fp32; the Qwen2.5-0.5B shape under
# --memory-limit beside PyTorch; prefill/decode beside llama-bench (bench_decode.sh); the kernels.
# By hand on a quiet machine, never in CI. Models and peers as bench_headline.sh says; IDS: 8 rows of
# 512 random ids below 151936 (JSONL input_ids/labels) for the Qwen runs.
# Usage: bash tests/gen/bench_headline2.sh [CHECKOUT] [OUTDIR (absolute)]
C=${1:-.}; O=${2:-/tmp/bench-headline2}; mkdir -p $O; cd $C
B=build; PY=/root/peers/venv/bin/python3
Q41=../shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
M=/root/peers/models; Q40=$M/SmolLM2-135M-Instruct.Q4_0.gguf
HF=$M/smollm2-135m-instruct-f32-hf
T="/usr/bin/time -f %e_s_%M_KB"
(date -u; uptime; git log -1 --oneline) > $O/date.txt
tr() { local n=$1; shift; $T $B/lora-bench "$@" --train -n 512 --steps 2 --rank 16 -t 2 --json > $O/$n.json 2> $O/$n.err; }
for round in 1 2; do
  $T $PY tests/gen/bench_torch_train.py $HF --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 2 > $O/torch.$round.json 2> $O/torch.$round.err
  for cm in f32 int8; do
    tr q40.$cm.$round -m $Q40 --compute $cm
    tr q41.$cm.$round -m $Q41 --compute $cm
    tr hfq40.$cm.$round -m $HF --quant q4_0 --quant-embed q8_0 --compute $cm
  done
  LK_KERNELS=avx2 tr q40.avx2int8.$round -m $Q40 --compute int8
  tr q40.default.$round -m $Q40
done
echo train-done $(date -u) >> $O/date.txt
# Qwen2.5-0.5B shape (lora-random-model, /tmp/qwen05-rand) under --memory-limit (lora-train, 3 steps)
for round in 1 2; do
  for q in nf4 q4_0; do for lim in 880M 900M; do
    $T $B/lora-train -m /tmp/qwen05-rand --data ${IDS:-/tmp/qwen-ids.jsonl} -o /tmp/b5q --quant $q --quant-embed q8_0 --seq-len 512 --rank 16 --alpha 32 --steps 3 -t 2 --force -q --json --memory-limit $lim > $O/qwen.$q.$lim.$round.json 2> $O/qwen.$q.$lim.$round.err
  done; done
done
$T $PY tests/gen/bench_torch_train.py /tmp/qwen05-rand --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 1 > $O/torch.qwen.json 2> $O/torch.qwen.err
echo qwen-done $(date -u) >> $O/date.txt
# decode/prefill beside llama-bench
REPEAT=2 bash tests/gen/bench_decode.sh 1 $PWD/build/lora-bench > $O/decode.txt 2> $O/decode.err
echo decode-done $(date -u) >> $O/date.txt
# kernels, 2 threads wall clock, T=1 and 512
$B/lora-bench-kernels -t 2 --compute f32,int8 --tokens 1,512 --types q4_0,q8_0,nf4 > $O/kern.vnni.txt 2>&1
LK_KERNELS=avx2 $B/lora-bench-kernels -t 2 --compute f32,int8 --tokens 1,512 --types q4_0,q8_0,nf4 > $O/kern.avx2.txt 2>&1
echo all-done $(date -u) >> $O/date.txt
