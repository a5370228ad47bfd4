#!/usr/bin/env bash
# Data-parallel lora-train and lora-teacher under mpirun on this machine (mpirun -np N
# --oversubscribe), on stories260K-hf:
#   - 2 ranks × batch 2 give the adapter of 1 process × batch 4 (and of batch 2 × grad-accum 2)
#     byte for byte (the rows and the ranks are summed in one tree), under f32 and under int8,
#     and the same bytes run to run; mpirun -np 1 gives a plain run's bytes; distillation from an
#     online teacher and from a teacher cache alike;
#   - lora-teacher on 2 ranks writes the single process's cache, byte for byte;
#   - a checkpoint written by 2 ranks resumes on 1 (and 1 on 2) and continues the same trajectory;
#   - ranks started with other flags, data or a missing file stop at the start, every rank naming
#     the first difference (or the failed rank), exit 1;
#   - --compute auto: where one rank has no room for int8, every rank runs f32 (lora-train,
#     lora-teacher);
#   - a rank killed with SIGKILL stops the job within seconds, mpirun naming the lost rank, and the
#     last checkpoint resumes to the uninterrupted run's bytes;
#   - SIGTERM / SIGINT to every rank (as scancel does) or to mpirun: the ranks stop after the same
#     step, rank 0 saves one checkpoint, the ranks exit 143 / 130, and resuming gives the
#     uninterrupted run's bytes.
# Skips (exit 77) when lorakit was built without MPI or mpirun is missing.
# Usage: cli_mpi.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_mpi.sh"
TR=$B/lora-train

# ---- equivalence and reproducibility ----
R3=("${BASE[@]}" --steps 3 --compute f32) # the exact path; int8 below
N3=("${NODATA[@]}" --steps 3 --compute f32)
expect 0 "1 process, batch 4" -- "$TR" "${R3[@]}" --batch 4 -o "$T/one"
expect 0 "1 process, batch 2 x grad-accum 2" -- "$TR" "${R3[@]}" --batch 2 --grad-accum 2 \
    -o "$T/acc"
expect 0 "2 ranks, batch 2" -- mpi 2 "$TR" "${R3[@]}" --batch 2 -o "$T/two"
expect 0 "2 ranks again" -- mpi 2 "$TR" "${R3[@]}" --batch 2 -o "$T/two2"
expect 0 "2 ranks, batch 1 x grad-accum 2" -- mpi 2 "$TR" "${R3[@]}" --batch 1 --grad-accum 2 \
    -o "$T/two_acc"
same "$T/two/adapter_model.safetensors" "$T/one/adapter_model.safetensors" \
    "2 ranks x batch 2 = 1 x batch 4"
same "$T/two/adapter_model.safetensors" "$T/acc/adapter_model.safetensors" \
    "2 ranks x batch 2 = 1 x batch 2 x grad-accum 2"
expect 0 "int8, 1 process, batch 4" -- "$TR" "${BASE[@]}" --steps 3 --compute int8 --batch 4 \
    -o "$T/one8"
expect 0 "int8, 2 ranks, batch 2" -- mpi 2 "$TR" "${BASE[@]}" --steps 3 --compute int8 --batch 2 \
    -o "$T/two8"
same "$T/two8/adapter_model.safetensors" "$T/one8/adapter_model.safetensors" \
    "int8: 2 ranks x batch 2 = 1 x batch 4"
# ranks on different kernels: rank 1 on the plain-C ones, whose int8 path keeps the row layout
# where the SIMD variants interleave the Q4_0 rows in place (q8_ilv.h); the start-up check hashes
# the rows as the file holds them, so the ranks agree on the base and train (the fp32 kernels
# around the int8 products differ in their last bits between variants, so not bit for bit)
Q8=("${BASE[@]}" --steps 3 --compute int8 --quant q4_0 --batch 2)
expect 0 "int8 q4_0, 2 ranks, rank 1 on LK_KERNELS=ref" -- mpirun_ --oversubscribe --bind-to none \
    -np 1 "$TR" "${Q8[@]}" -o "$T/q2" : -np 1 env LK_KERNELS=ref "$TR" "${Q8[@]}" -o "$T/q2"
[ -s "$T/q2/adapter_model.safetensors" ] && ! grep -q "disagree" "$T/err" && ok ||
    bad "ranks on other kernels: the run did not train"
same "$T/two/adapter_model.safetensors" "$T/two2/adapter_model.safetensors" "2 ranks run to run"
same "$T/two/checkpoint-3/state.ckpt" "$T/two2/checkpoint-3/state.ckpt" "2 ranks' state"
same "$T/two/adapter_model.safetensors" "$T/two_acc/adapter_model.safetensors" \
    "2 ranks: batch 2 = batch 1 x grad-accum 2"
expect 0 "mpirun -np 1" -- mpi 1 "$TR" "${R3[@]}" --batch 4 -o "$T/np1"
same "$T/one/adapter_model.safetensors" "$T/np1/adapter_model.safetensors" "-np 1 = no mpirun"
[ ! -e "$T/two/checkpoint-3.partial" ] && [ -s "$T/two/loss.svg" ] && ok || bad "rank 0's output"

# --json: one line per step from rank 0 only, with what the gradient sum cost
expect 0 "2 ranks --json" -- mpi 2 "$TR" "${R3[@]}" --batch 2 -o "$T/js" --json \
    --eval-data "$E" --eval-every 3
[ "$(grep -c '"type":"step"' "$T/out")" = 3 ] && ok || bad "--json: 3 step lines from rank 0"
grep '"type":"step"' "$T/out" | "$B/jsoncheck" ranks allreduce_bytes allreduce_s && ok ||
    bad "--json: ranks, allreduce_bytes, allreduce_s"
[ "$(grep -c '"type":"eval"' "$T/out")" = 1 ] && ok || bad "--json: one eval line"

# ---- distillation: an online teacher per rank; a teacher cache written by 2 ranks ----
KD=(--objective kd --kd-temp 2 --kd-weight 0.5)
expect 0 "kd, 1 process" -- "$TR" "${R3[@]}" "${KD[@]}" --teacher self --batch 4 -o "$T/kd1"
expect 0 "kd, 2 ranks" -- mpi 2 "$TR" "${R3[@]}" "${KD[@]}" --teacher self --batch 2 -o "$T/kd2"
same "$T/kd2/adapter_model.safetensors" "$T/kd1/adapter_model.safetensors" \
    "online teacher: 2 ranks = 1"
TEACH=(-m "$M" --data "$D" --seq-len 128 --top-k 8 --kd-temp 2 -t 1 -q)
expect 0 "teacher cache, 1 process" -- "$B/lora-teacher" "${TEACH[@]}" -o "$T/c1.lktc"
expect 0 "teacher cache, 2 ranks" -- mpi 2 "$B/lora-teacher" "${TEACH[@]}" -o "$T/c2.lktc"
same "$T/c1.lktc" "$T/c2.lktc" "the cache of 2 ranks"
expect 0 "teacher cache, 3 ranks" -- mpi 3 "$B/lora-teacher" "${TEACH[@]}" -o "$T/c3.lktc"
same "$T/c1.lktc" "$T/c3.lktc" "the cache of 3 ranks"
expect 0 "kd cache, 1 process" -- "$TR" "${R3[@]}" "${KD[@]}" --teacher-cache "$T/c1.lktc" \
    --batch 4 -o "$T/kc1"
expect 0 "kd cache, 2 ranks" -- mpi 2 "$TR" "${R3[@]}" "${KD[@]}" --teacher-cache "$T/c2.lktc" \
    --batch 2 -o "$T/kc2"
same "$T/kc2/adapter_model.safetensors" "$T/kc1/adapter_model.safetensors" \
    "teacher cache: 2 ranks = 1"

# ---- resume across rank counts (the checkpoint's data cursor is global) ----
R6=("${BASE[@]}" --steps 6 --save-every 3 --save-limit 0)
expect 0 "2 ranks, 6 steps" -- mpi 2 "$TR" "${R6[@]}" --batch 1 -o "$T/r2"
expect 0 "1 process, 6 steps" -- "$TR" "${R6[@]}" --batch 2 -o "$T/r1"
expect 0 "2 ranks' checkpoint on 1" -- "$TR" "${R6[@]}" --batch 2 --resume "$T/r2/checkpoint-3" \
    -o "$T/r21"
close_to "$T/r21" "$T/r2" "resumed on 1 vs the 2-rank run"
expect 0 "1 process' checkpoint on 2 ranks" -- mpi 2 "$TR" "${R6[@]}" --batch 1 \
    --resume "$T/r1/checkpoint-3" -o "$T/r12"
close_to "$T/r12" "$T/r1" "resumed on 2 vs the 1-process run"
expect 0 "2 ranks' checkpoint on 2" -- mpi 2 "$TR" "${R6[@]}" --batch 1 \
    --resume "$T/r2/checkpoint-3" -o "$T/r22"
same "$T/r22/adapter_model.safetensors" "$T/r2/adapter_model.safetensors" "resumed on 2 ranks"
expect 1 "a global batch other than the checkpoint's" -- mpi 2 "$TR" "${R6[@]}" --batch 2 \
    --resume "$T/r2/checkpoint-3" -o "$T/r2x"
has err "rows per step = ranks x --batch x --grad-accum" "names the global batch"

# ---- start-up checks: every rank names the first difference ----
expect 1 "ranks with another --lr" -- mpirun_ --oversubscribe \
    -np 1 "$TR" "${R3[@]}" -o "$T/m1" --lr 1e-3 : -np 1 "$TR" "${R3[@]}" -o "$T/m1" --lr 2e-3
[ "$(grep -c 'the ranks disagree on --lr: rank 0 has 0.00100000005, rank 1 has 0.00200000009' \
    "$T/err")" = 2 ] && ok || { bad "both ranks name --lr"; head -5 "$T/err"; }
[ ! -e "$T/m1/adapter_model.safetensors" ] && ok || bad "a mismatch wrote an adapter"
expect 1 "ranks with other data" -- mpirun_ --oversubscribe \
    -np 1 "$TR" "${R3[@]}" -o "$T/m2" : -np 1 "$TR" "${N3[@]}" -o "$T/m2" --data "$E"
[ "$(grep -c 'the ranks disagree on data: rank 0 has 400 examples' "$T/err")" = 2 ] && ok ||
    { bad "both ranks name the data"; head -5 "$T/err"; }
expect 1 "a rank without its data file" -- mpirun_ --oversubscribe \
    -np 1 "$TR" "${R3[@]}" -o "$T/m3" : -np 1 "$TR" "${N3[@]}" -o "$T/m3" --data "$T/none.jsonl"
has err "lora-train\[rank 1\]: error: .*none.jsonl" "rank 1 names its missing file"
has err "lora-train: error: rank 1: .*none.jsonl" "rank 0 names rank 1's failure"

# ---- --compute auto alike on every rank: where one rank's host has no room for int8 (here a
# tighter --memory-limit on rank 1, which the ranks do not compare; its plan's warning only) every
# rank runs f32, where the start-up check would otherwise stop them on --compute ----
AU=("${BASE[@]}" --quant nf4 --steps 2 --batch 1)
expect 0 "auto, rank 1 without room for int8" -- mpirun_ --oversubscribe \
    -np 1 "$TR" "${AU[@]}" -o "$T/au" : -np 1 "$TR" "${AU[@]}" -o "$T/au" --memory-limit 1M
head -c 4096 "$T/au/adapter_model.safetensors" | grep -q '"lorakit.base_compute":"f32"' && ok ||
    bad "the run of both ranks computed f32"
TA=(-m "$M" --quant nf4 --data "$SRC/tests/data/teacher/data.jsonl" --top-k 4 -t 1 -o "$T/au.lktc")
expect 0 "lora-teacher, auto, rank 1 without room for int8" -- mpirun_ --oversubscribe \
    -np 1 "$B/lora-teacher" "${TA[@]}" --json : -np 1 "$B/lora-teacher" "${TA[@]}" \
    --memory-limit 100K
grep -q '"compute":"f32","compute_reason":"auto: f32, as rank 1 runs it' "$T/out" && ok ||
    { bad "lora-teacher's rank 0 takes rank 1's f32"; head -3 "$T/out"; }

# ---- faults ----
REF=$T/ref
expect 0 "uninterrupted 2-rank run" -- mpi 2 "$TR" "${RL[@]}" -o "$REF"
# start NAME: the 2-rank run in the background ($job, ranks $p0 $p1), held (SIGSTOP) as soon as
# its first checkpoint is there, so that a fast machine cannot finish it before the test acts.
start() {
    local name=$1
    mpi 2 "$TR" "${RL[@]}" -o "$T/$name" 2>"$T/$name.err" >/dev/null &
    job=$! p0="" p1=""
    for _ in $(seq 1 3000); do
        [ -n "$p0" ] || p0=$(rank_pid "$job" 0)
        [ -n "$p1" ] || p1=$(rank_pid "$job" 1)
        [ -n "$p0" ] && [ -n "$p1" ] && break
        sleep 0.01
    done
    wait_checkpoint "$name"
    kill -STOP "$p0" "$p1"
}
finish() { resume_run "$1" "$REF" mpi 2; }

# a rank killed: the job ends within seconds, mpirun names the lost rank, checkpoints intact
for victim in 1 0; do
    start "kill$victim"
    kill -KILL "$(rank_pid "$job" $victim)"
    kill -CONT "$p0" "$p1" 2>/dev/null
    t0=$(date +%s)
    wait "$job"
    code=$? secs=$(($(date +%s) - t0))
    [ "$code" != 0 ] && [ "$secs" -le 10 ] && ok ||
        bad "rank $victim killed: mpirun exit $code after $secs s (expected nonzero, <= 10 s)"
    grep -q "process rank $victim with PID .* exited on signal 9" "$T/kill$victim.err" && ok ||
        { bad "rank $victim killed: not named"; tail -5 "$T/kill$victim.err"; }
    finish "kill$victim"
done

# stop NAME SIGNAL CODE WHO: SIGNAL to the ranks (WHO "ranks", each at its own moment, as scancel
# does), to rank 1 alone ("rank1"), or to mpirun ("mpirun", which passes SIGTERM on to the ranks
# and itself exits 1); the ranks stop after the same step, exit CODE, rank 0 saves that step once.
stop() {
    local name=$1 sig=$2 want=$3 who=$4
    start "$name"
    case $who in
    ranks) kill -"$sig" "$p1" && kill -CONT "$p1" && sleep 0.03 && kill -"$sig" "$p0" ;;
    rank1) kill -"$sig" "$p1" ;;
    mpirun) kill -"$sig" "$(mpirun_pid "$job")" ;; # it resumes them and passes it on 1 s later
    esac
    kill -CONT "$p0" "$p1" 2>/dev/null
    wait "$job"
    local code=$? step saves
    [ "$code" = "$want" ] && ok || { bad "$name: mpirun exit $code, expected $want"; }
    step=$(grep -o 'interrupted at step [0-9]*' "$T/$name.err" | grep -o '[0-9]*$')
    saves=$(grep -c "checkpoint saved to .*/checkpoint-${step:-x}\$" "$T/$name.err")
    [ -n "$step" ] && [ "$saves" = 1 ] && [ -s "$T/$name/checkpoint-$step/state.ckpt" ] && ok ||
        { bad "$name: step ${step:-?} saved $saves times"; tail -5 "$T/$name.err"; }
    [ "$(grep -c ' error: ' "$T/$name.err")" = 0 ] && ok || bad "$name: an error was reported"
    [ "$(grep -c 'interrupted at step' "$T/$name.err")" = 1 ] && ok ||
        bad "$name: rank 0 alone reports the interruption"
    resume_run "$name" "$ref" mpi 2
}
ref=$REF
stop term TERM 143 ranks
stop int INT 130 ranks
stop term1 TERM 143 rank1
# mpirun passes SIGTERM on a second after it gets it: a run long enough to be going on then
RL=("${RL[@]/#24/400}")
ref=$T/ref400
mpi 2 "$B/lora-train" "${RL[@]}" -o "$ref" 2>/dev/null >/dev/null || bad "the 400-step reference run"
stop mpirun TERM 1 mpirun

echo "cli_mpi: $passes passed, $fails failed"
[ "$fails" = 0 ]
