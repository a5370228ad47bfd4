#!/bin/bash
# The headline re-measure after issue 13's wave 6 (BENCHMARKS.md "Headline after wave 6"): SmolLM2
# training (Q4_0 GGUF, default options, the AVX2-only emulation LK_KERNELS=avx2
# OPENBLAS_CORETYPE=Haswell, --compute f32) beside PyTorch + PEFT fp32 (as installed, and at
# ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2); the Qwen2.5-0.5B shape under --memory-limit 900M
# beside PyTorch; the Llama-3.2-3B shape under --memory-limit 3G (default compute: auto); prefill and
# decode beside llama-bench (bench_decode.sh, also with LK_KERNELS=avx2); the kernels.
# By hand on a quiet machine, never in CI. Models and peers as bench_headline.sh says; /tmp/qwen05-rand
# and /tmp/l3b from lora-random-model (configs in ../shared/models), /tmp/mem-ids.jsonl (8 rows) and
# /tmp/l3ids.jsonl (4 rows) of 512 random ids as JSONL input_ids/labels.
# Usage: bash tests/gen/bench_headline3.sh [CHECKOUT] [OUTDIR (absolute)]
C=${1:-.}; O=${2:-/tmp/bench-headline3}; mkdir -p $O; cd $C
B=build; PY=/root/peers/venv/bin/python3
M=/root/peers/models; Q40=$M/SmolLM2-135M-Instruct.Q4_0.gguf
HF=$M/smollm2-135m-instruct-f32-hf
T="/usr/bin/time -f %e_s_%U_u_%M_KB"
(date -u; uptime; git log -1 --oneline) > $O/date.txt
tr() { local n=$1; shift; $T $B/lora-bench "$@" --train -n 512 --steps 4 --rank 16 -t 2 --json > $O/$n.json 2> $O/$n.err; }
for round in 1 2 3; do
  $T $PY tests/gen/bench_torch_train.py $HF --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 4 > $O/torch.$round.json 2> $O/torch.$round.err
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $T $PY tests/gen/bench_torch_train.py $HF --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 4 > $O/torchavx2.$round.json 2> $O/torchavx2.$round.err
  tr q40.default.$round -m $Q40
  LK_KERNELS=avx2 OPENBLAS_CORETYPE=Haswell tr q40.avx2.$round -m $Q40
  tr q40.f32.$round -m $Q40 --compute f32
done
echo train-done $(date -u) >> $O/date.txt
for round in 1 2 3; do
  for q in q4_0 nf4; do
    $T $B/lora-train -m /tmp/qwen05-rand --data /tmp/mem-ids.jsonl -o /tmp/b6q --quant $q --quant-embed q8_0 --seq-len 512 --rank 16 --alpha 32 --steps 3 -t 2 --force -q --json --memory-limit 900M > $O/qwen.$q.900.$round.json 2> $O/qwen.$q.900.$round.err
  done
done
$T $PY tests/gen/bench_torch_train.py /tmp/qwen05-rand --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 1 > $O/torch.qwen.json 2> $O/torch.qwen.err
echo qwen-done $(date -u) >> $O/date.txt
$T $B/lora-train -m /tmp/l3b --data /tmp/l3ids.jsonl -o /tmp/b6l --quant nf4 --quant-embed q8_0 --seq-len 512 --rank 16 --alpha 32 --steps 2 -t 2 --force -q --json --memory-limit 3G > $O/l3b.json 2> $O/l3b.err
echo l3b-done $(date -u) >> $O/date.txt
REPEAT=2 bash tests/gen/bench_decode.sh 2 $PWD/build/lora-bench > $O/decode.txt 2> $O/decode.err
LK_KERNELS=avx2 FILES="$M/SmolLM2-135M-Instruct.Q4_0.gguf $M/SmolLM2-135M-Instruct.Q8_0.gguf" REPEAT=2 bash tests/gen/bench_decode.sh 2 $PWD/build/lora-bench > $O/decode.avx2.txt 2> $O/decode.avx2.err
echo decode-done $(date -u) >> $O/date.txt
$B/lora-bench-kernels -t 2 --reps 40 --compute f32,int8 --tokens 1,512 --types q4_0,q8_0,nf4 > $O/kern.vnni.txt 2>&1
LK_KERNELS=avx2 $B/lora-bench-kernels -t 2 --reps 40 --compute f32,int8 --tokens 1,512 --types q4_0,q8_0,nf4 > $O/kern.avx2.txt 2>&1
LK_KERNELS=avx2 $B/lora-bench-kernels -t 1 --cpu-time --reps 20 --compute f32,int8 --tokens 512 --types q4_0,q8_0,nf4 > $O/kern.avx2.t1.txt 2>&1
echo all-done $(date -u) >> $O/date.txt
