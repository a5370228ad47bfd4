#!/bin/bash
# The headline benchmarks of BENCHMARKS.md (issues 13 and 14): SmolLM2-135M-Instruct training
# (GGUF files in place and its f32 form, --compute f32 and int8) beside PyTorch + PEFT fp32, the
# forward beside llama-bench, load times, the Qwen2.5-0.5B shape. Run by hand on a quiet machine.
# Peers and models as /root/peers/NOTES.md describes (venv, llama.cpp build, SmolLM2 GGUF types).
# The Qwen2.5-0.5B shape: build/lora-random-model -c ../shared/models/qwen2.5-0.5b/config.json
#     -o /tmp/qwen05-rand --dtype bf16
# Usage: bash tests/gen/bench_headline.sh [CHECKOUT] [OUTDIR (absolute)]
C=${1:-.}; O=${2:-/tmp/bench-headline}; mkdir -p $O; cd $C
B=build; PY=/root/peers/venv/bin/python3
Q41=../shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
M=/root/peers/models; Q40=$M/SmolLM2-135M-Instruct.Q4_0.gguf; QKM=$M/SmolLM2-135M-Instruct.Q4_K_M.gguf
Q80=$M/SmolLM2-135M-Instruct.Q8_0.gguf; F32G=$M/SmolLM2-135M-Instruct.F32.gguf
HF=$M/smollm2-135m-instruct-f32-hf
T="/usr/bin/time -f %e_s_%M_KB"
date -u > $O/date.txt; uptime >> $O/date.txt; git log -1 --oneline >> $O/date.txt
tr() { # name, args...
  local n=$1; shift
  $T $B/lora-bench "$@" --train -n 512 --steps 2 --rank 16 -t 2 --json > $O/$n.json 2> $O/$n.err
}
for round in 1 2; do
  $T $PY tests/gen/bench_torch_train.py $HF --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 2 > $O/torch.$round.json 2> $O/torch.$round.err
  for cm in f32 int8; do
    tr q41.$cm.$round -m $Q41 --compute $cm
    tr q40.$cm.$round -m $Q40 --compute $cm
    tr qkm.$cm.$round -m $QKM --compute $cm
    tr hfq40.$cm.$round -m $HF --quant q4_0 --quant-embed q8_0 --compute $cm
    tr hfnf4.$cm.$round -m $HF --quant nf4 --compute $cm
  done
  tr hff32.$round -m $HF --quant none
done
echo train-done >> $O/date.txt; date -u >> $O/date.txt
# forward: lorakit prefill 512 / decode 32 vs llama-bench pp512 / tg32
for f in q40:$Q40 q80:$Q80 f32:$F32G q41:$Q41; do n=${f%%:*}; g=${f#*:}
  for cm in f32 int8; do $B/lora-bench -m $g --compute $cm -n 512 --repeat 3 --decode 32 -t 2 --json > $O/fwd.$n.$cm.json 2> $O/fwd.$n.$cm.err; done
  /root/peers/llama.cpp-build/bin/llama-bench -m $g -p 512 -n 32 -t 2 -r 3 -o json > $O/lcpp.$n.json 2> $O/lcpp.$n.err
done
echo fwd-done >> $O/date.txt; date -u >> $O/date.txt
# load times
for m in q41:$Q41 q40:$Q40 qkm:$QKM hf:$HF; do n=${m%%:*}; f=${m#*:}
  for r in 1 2 3; do /usr/bin/time -f "$n %e s %M KB" $B/lora-eval -m $f --ids 1,2 -t 2 -q >/dev/null 2>> $O/load.txt; done
done
# Qwen2.5-0.5B shape (random), NF4 + Q8_0 embeddings, vs PyTorch fp32
for cm in f32 int8; do tr qwen.$cm -m /tmp/qwen05-rand --quant nf4 --quant-embed q8_0 --compute $cm; done
$T $PY tests/gen/bench_torch_train.py /tmp/qwen05-rand --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 1 > $O/torch.qwen.json 2> $O/torch.qwen.err
echo qwen-done >> $O/date.txt; date -u >> $O/date.txt
