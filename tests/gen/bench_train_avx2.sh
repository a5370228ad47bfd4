#!/bin/bash
# Issue 13's SmolLM2 training target measured as on an AVX2-only machine (BENCHMARKS.md "Training on
# AVX2 only"): lorakit with LK_KERNELS=avx2 (every lorakit kernel: q4, q8, attention) and
# OPENBLAS_CORETYPE=Haswell (OpenBLAS's AVX2 kernels) beside PyTorch + PEFT fp32 with
# ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, alternating in the same loop (seq 512, r 16 on
# all seven projections, 2 threads, 4-bit base Q4_0, default options). Each lorakit build given is
# run in turn inside every round (for a baseline build beside a new one); MODES=avx2,default also
# runs the builds without the AVX2 overrides (AVX-512 where the CPU has it) and PyTorch at its own
# default ISA beside them. By hand, never in CI.
# Models: /root/peers/models (SmolLM2-135M-Instruct.Q4_0.gguf and its f32 Hugging Face form, see
# bench_headline.sh). Every run's JSON and /usr/bin/time line (wall s, user s, sys s, peak KB) is
# kept in OUTDIR; a summary (tokens/s per run, wall and CPU, min/median) goes to stdout.
# Usage: bash tests/gen/bench_train_avx2.sh [ROUNDS] [OUTDIR (absolute)] [BUILD_DIR...]
R=${1:-3}; O=${2:-/tmp/bench-train-avx2}; shift 2 2>/dev/null
BUILDS=("$@"); [ ${#BUILDS[@]} -eq 0 ] && BUILDS=(build)
MODES=${MODES:-avx2}
PY=/root/peers/venv/bin/python3; M=/root/peers/models
Q40=$M/SmolLM2-135M-Instruct.Q4_0.gguf; HF=$M/smollm2-135m-instruct-f32-hf
T="/usr/bin/time -f %e_s_%U_u_%S_s_%M_KB"
mkdir -p $O
(date -u; uptime; git log -1 --oneline; grep -m1 'model name' /proc/cpuinfo) > $O/date.txt
lk() { # name build mode
    local env=()
    [ $3 = avx2 ] && env=(LK_KERNELS=avx2 OPENBLAS_CORETYPE=Haswell)
    env "${env[@]}" $T $2/lora-bench -m $Q40 --train -n 512 --steps 2 --rank 16 -t 2 --json \
        > $O/$1.json 2> $O/$1.err
}
for round in $(seq 1 $R); do
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $T $PY tests/gen/bench_torch_train.py $HF \
        --dtype fp32 --tokens 512 --rank 16 --threads 2 --steps 2 > $O/torch.$round.json 2> $O/torch.$round.err
    case ,$MODES, in *,default,*) # PyTorch at its own default ISA beside lorakit's default kernels
        $T $PY tests/gen/bench_torch_train.py $HF --dtype fp32 --tokens 512 --rank 16 --threads 2 \
            --steps 2 > $O/torchdef.$round.json 2> $O/torchdef.$round.err ;;
    esac
    for i in "${!BUILDS[@]}"; do
        for mode in ${MODES//,/ }; do lk lk$i.$mode.$round ${BUILDS[$i]} $mode; done
    done
done
echo done $(date -u) >> $O/date.txt
# summary per configuration: tokens/s (wall clock, JSON "tokens_per_s") and tokens per CPU second
# of the 2 threads (512 / "cpu_s_per_step" × 2, what 2 cores give when nothing else runs; PyTorch's
# OpenMP spin-waits count as CPU), each sorted, then min / median over the rounds
med() { tr ' ' '\n' | grep . | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
row() { # label files...
    local w=$(for f in "${@:2}"; do grep -o '"tokens_per_s": *[0-9.]*' $f | grep -o '[0-9.]*$'; done | sort -g | tr '\n' ' ')
    local c=$(for f in "${@:2}"; do grep -o '"cpu_s_per_step": *[0-9.]*' $f | grep -o '[0-9.]*$' |
        awk '{printf "%.1f\n", 1024 / $1}'; done | sort -g | tr '\n' ' ')
    echo "$1: wall tok/s $w(min $(echo $w | cut -d' ' -f1), median $(echo $w | med)) | CPU tok/s x2 $c(median $(echo $c | med))"
}
row "pytorch avx2" $O/torch.*.json
case ,$MODES, in *,default,*) row "pytorch default" $O/torchdef.*.json ;; esac
for i in "${!BUILDS[@]}"; do
    for mode in ${MODES//,/ }; do row "${BUILDS[$i]} $mode" $O/lk$i.$mode.*.json; done
done
