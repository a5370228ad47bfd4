#!/usr/bin/env bash
# --compute f32|int8|auto through the tools (issue 13 item 2): a bad name is a usage error in every
# tool that runs the model; auto (the default) picks int8 when its plan fits --memory-limit and f32
# when it does not, and --dry-run / --json say why, an explicit mode wins over the limit; --dry-run shows the transposed int8 copies and --json counts them; a run
# records its compute mode in the adapter and loss.svg, and the other tools default to it (and say
# so); a resume under another mode fails naming both, and under auto takes the checkpoint's mode
# (or fails naming it and why); a distillation teacher's auto and lora-teacher's see
# --memory-limit; an f32 base under int8 says that nothing runs on int8; lora-eval's label names
# the mode; int8 and f32 losses agree closely.
# Usage: cli_compute.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd) S=$(cd "$2" && pwd) SRC=$(cd "$3" && pwd)
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
IDS=1,403,407,261,378,432,295,260,349,440,287,351
. "$(dirname "$0")/lib_cli.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
TR=(--data "$D" --seq-len 128 --batch 1 --lr 3e-3 -t 1 --rank 4 --quant q4_0)
jnum() { grep -o "\"$1\":[-0-9.e+]*" "$T/out" | tail -1 | cut -d: -f2; } # a number of --json
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d < t && -d < t) }'; }

bad_compute() { # bad_compute TOOL ARGS...: exit 2 naming the option and the choices
    local tool=$1
    shift
    expect 2 "$tool --compute i8" -- "$B/$tool" -m "$M" --compute i8 "$@"
    has err "compute 'i8': expected f32, int8 or auto" "$tool names the option and the choices"
}
bad_compute lora-train --data "$D" -o "$T/x"
bad_compute lora-eval --ids 1,2
bad_compute lora-generate --ids 1,2
bad_compute lora-teacher --data "$D" --top-k 4 -o "$T/x.cache"
bad_compute lora-bench
bad_compute lora-merge -a "$T/none" -o "$T/x"

# --compute auto on an NF4 base: int8 without a limit; f32 when int8's least plan (NF4's codebook
# corrections, its copies' buffer) does not fit a limit one byte above f32's least plan
TRN=(--data "$D" --seq-len 128 --batch 1 --lr 3e-3 -t 1 --rank 4 --quant nf4)
expect 0 "dry run, default compute" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" --dry-run --json
has out '"compute":"int8",.*"compute_reason":"auto: int8, int8.s least training plan' "auto: int8"
expect 0 "f32's least plan" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" --dry-run --json \
    --compute f32 --checkpointing on
LIM=$(($(jnum peak_bytes) + 1))
expect 0 "auto under a limit int8 does not fit" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" \
    --dry-run --json --memory-limit $LIM
has out '"compute":"f32",.*"compute_reason":"auto: f32, int8.s [a-z ]*(.*) do[a-z ]* not fit the' \
    "auto: f32, and why"
expect 0 "the same, as text" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" --dry-run \
    --memory-limit $LIM
has out "^  compute        f32 (auto: f32, int8's" "the plan's compute line"
expect 1 "explicit int8 under that limit" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" \
    --dry-run --json --memory-limit $LIM --compute int8
has out '"compute":"int8",.*"compute_reason":"given"' "an explicit mode wins"
has err "warning: the plan needs .* or --compute f32" "and the plan warns it does not fit"
expect 0 "an explicit f32 without a limit" -- "$B/lora-train" -m "$M" "${TRN[@]}" -o "$T/d" \
    --dry-run --json --compute f32
has out '"compute":"f32",.*"compute_reason":"given"' "explicit f32"

for tool in lora-eval lora-generate; do # the inference tools take auto too: int8 here
    expect 0 "$tool --compute auto" -- "$B/$tool" -m "$M" --quant q4_0 --compute auto --ids $IDS
    has err "compute int8: 1 of 36 matrices run in fp32" "$tool: auto ran int8"
done

expect 0 "dry run with int8" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 -o "$T/d" \
    --dry-run
has out "int8 copies .* MiB (--compute int8: transposed Q8_0 copies of 35 matrices" "plan line"
expect 0 "dry run --json" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 -o "$T/d" \
    --dry-run --json
has out '"compute":"int8","int8_matrices":35,"int8_copy_bytes":[1-9]' "plan JSON"
expect 0 "dry run f32: no copies" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute f32 -o "$T/d" \
    --dry-run --json
has out '"int8_copy_bytes":0' "f32 plans no copies"
# a --memory-limit one byte below the plan keeps fewer layers' copies (built before each layer's
# backward instead) and trains the very same adapter
expect 0 "dry run --json" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 -o "$T/d" \
    --dry-run --json
LIM=$(($(jnum peak_bytes) - 1))
expect 0 "dry run under a limit" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 -o "$T/d" \
    --dry-run --memory-limit $LIM
has out "kept: [0-4] of 5 layers', the others' built before their backward" "fewer copies kept"
expect 0 "train with every copy" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 --steps 3 \
    -o "$T/all"
expect 0 "train under the limit" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 --steps 3 \
    --memory-limit $LIM -o "$T/lim"
cmp -s "$T/all/adapter_model.safetensors" "$T/lim/adapter_model.safetensors" && ok=1 || ok=0
[ "$ok" = 1 ] && passes=$((passes + 1)) || { echo "FAIL: copies built per layer changed the adapter"; fails=$((fails + 1)); }

expect 0 "train with int8" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 --steps 4 \
    --save-every 2 -o "$T/a"
has err "q4_0 (embeddings f32, int8 compute)\|base q4_0, int8 compute\|int8 compute" "run says int8"
has err "lm_head (the tied embeddings) (f32) (--quant-embed q8_0 puts it on int8 too)" \
    "the one matrix left in fp32 is named"
head -c 4096 "$T/a/adapter_model.safetensors" >"$T/header"
has header '"lorakit.base_compute":"int8"' "compute mode recorded in the adapter"
has a/loss.svg "int8 compute" "loss.svg's settings line"
expect 0 "eval defaults to the adapter's compute" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS \
    --json
has err "q4_0 (embeddings f32, int8 compute): $T/a was trained on it" "eval says which base"
L8=$(jnum loss)
expect 0 "eval with --compute f32" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS --json \
    --compute f32
has err "base q4_0 (embeddings f32, f32 compute), as --compute asks" "the flag is said"
close "$(jnum loss)" "$L8" 0.05 && ok=1 || ok=0
[ "$ok" = 1 ] && passes=$((passes + 1)) || { echo "FAIL: int8 $L8 vs f32 $(jnum loss)"; fails=$((fails + 1)); }
expect 0 "eval label" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS
has out ", base q4_0, int8 compute: loss" "the label names the compute mode"

expect 1 "resume with another compute mode" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute f32 \
    --steps 6 -o "$T/a" --resume "$T/a"
has err "checkpoint was made with --compute int8, this run has --compute f32" "mismatch named"
expect 0 "resume with the same" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute int8 --steps 6 \
    -o "$T/a" --resume "$T/a"
# --resume under auto (the default) continues in the checkpoint's mode: an f32 run stays f32 where
# auto would take int8; an int8 run whose least plan does not fit a limit fails naming int8 and why
expect 0 "train with f32" -- "$B/lora-train" -m "$M" "${TR[@]}" --compute f32 --steps 4 \
    --save-every 2 -o "$T/f"
expect 0 "resume it under auto: dry run" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 6 -o "$T/f" \
    --resume "$T/f" --dry-run --json
has out '"compute":"f32",.*"compute_reason":"checkpoint: f32, the mode of the run resumed"' \
    "auto takes the checkpoint's f32"
expect 0 "resume it under auto" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 6 -o "$T/f" \
    --resume "$T/f"
has err "resumed from $T/f/checkpoint-4/state.ckpt at step 4" "the f32 run continues"
expect 0 "resume an int8 run under auto: dry run" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 8 \
    -o "$T/a" --resume "$T/a" --dry-run
has out "^  compute        int8 (checkpoint: int8, the mode of the run resumed; its least" \
    "auto takes the checkpoint's int8"
expect 1 "resume an int8 run under a limit int8 does not fit" -- "$B/lora-train" -m "$M" \
    "${TR[@]}" --steps 8 -o "$T/a" --resume "$T/a" --memory-limit 1M
has err "error: --compute auto: the run resumed was trained with --compute int8, which needs its \
least training plan (.*), more than the 1.0 MiB available (--memory-limit)" "int8 and why are named"
expect 1 "its weights do not fit either" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 8 \
    -o "$T/a" --resume "$T/a" --memory-limit 10K
has err "trained with --compute int8, which needs its weights (.*), more than the 0.0 MiB available" \
    "at load"
expect 1 "no checkpoint to take the mode of" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 8 \
    -o "$T/a" --resume "$T/none"
has err "$T/none: no state.ckpt and no checkpoint-N folder with one" "the resume's own error"

# a distillation teacher's auto decides within --memory-limit less the student's weights: int8
# without a limit, f32 under a limit one byte below both models' int8 weights
KD=(--objective kd --teacher "$M" --teacher-quant nf4)
expect 0 "teacher, no limit" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --json
has out '"teacher_compute":"int8","teacher_compute_reason":"auto: int8, its weights (.*) fit the' \
    "the teacher's auto: int8"
LIM=$(($(jnum base_bytes) - 1))
expect 1 "teacher under a limit" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --json --memory-limit $LIM
has out '"teacher_compute":"f32","teacher_compute_reason":"auto: f32, int8.s weights (.*) do not fit the [0-9.]* MiB left of the [0-9.]* MiB available (--memory-limit) beside the' \
    "the teacher's auto sees the limit"
expect 1 "the same, as text" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --memory-limit $LIM
has out "^  teacher        f32 (auto: f32, int8's weights" "the plan's teacher line"
# the student comes first: one byte below the least plan with both on int8 (the plan an explicit
# int8 shows under a 1K limit), the teacher gives way to f32 and the student keeps int8; a resumed
# int8 student that cannot fit even so fails naming its plan, the teacher's share and the limit
expect 1 "both int8's least plan" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --json --compute int8 --memory-limit 1K
LIM=$(($(jnum peak_bytes) - 1))
expect 0 "the teacher gives way" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --json --memory-limit $LIM
has out '"compute":"int8",.*"compute_reason":"auto: int8, int8.s least training plan (.*; the teacher.s share [0-9.]* MiB, on f32) fits the [0-9.]* MiB available (--memory-limit) with the teacher on f32 (on int8: [0-9.]* MiB)","teacher_compute":"f32","teacher_compute_reason":"auto: f32, giving way to the model trained: its int8 least training plan' \
    "the student keeps int8, the teacher gives way"
expect 0 "the same, as text" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" \
    --dry-run --memory-limit $LIM
has out "^  compute        int8 (auto: int8, " "the plan's compute line: int8"
has out "^  teacher        f32 (auto: f32, giving way to the model trained" "the teacher line"
has err "lora-train: --compute auto: f32, giving way to the model trained" "a note says so"
expect 1 "nothing fits" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" -o "$T/d" --dry-run \
    --memory-limit 1M
has err "warning: the plan needs [0-9]* MiB ([0-9.]* MiB of it the teacher's weights, on [a-z0-9]*), more than the 1 MiB available (--memory-limit)" \
    "the plan that fits nowhere names the teacher's part and the limit"
expect 0 "a distillation run with int8" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" \
    --compute int8 --steps 2 --save-every 1 -o "$T/kd"
expect 1 "resumed under a limit nothing fits" -- "$B/lora-train" -m "$M" "${TRN[@]}" "${KD[@]}" \
    --steps 3 -o "$T/kd" --resume "$T/kd" --memory-limit 1M
has err "error: --compute auto: the run resumed was trained with --compute int8, which needs its \
least training plan (.*; the teacher's share [0-9.]* MiB, on f32), more than the 1.0 MiB available \
(--memory-limit)" "the plan, the teacher's share and the limit named"
G=$S/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$G" ]; then # a Q4_1 teacher: its int8 costs only its forward's buffers, and gives way
    GK=(--data "$D" --seq-len 128 --batch 1 -t 2 --rank 4 --objective kd --teacher "$G")
    expect 1 "SmolLM2: both int8's least plan" -- "$B/lora-train" -m "$G" "${GK[@]}" -o "$T/d" \
        --dry-run --json --compute int8 --memory-limit 1K
    LIM=$(($(jnum peak_bytes) - 1))
    expect 0 "SmolLM2: the teacher gives way" -- "$B/lora-train" -m "$G" "${GK[@]}" -o "$T/d" \
        --dry-run --json --memory-limit $LIM
    has out '"compute":"int8",.*"teacher_compute":"f32","teacher_compute_reason":"auto: f32, giving way' \
        "SmolLM2: the student keeps int8"
fi
TD=$SRC/tests/data/teacher/data.jsonl
expect 0 "lora-teacher, no limit" -- "$B/lora-teacher" -m "$M" --quant nf4 --data "$TD" --top-k 4 \
    -o "$T/t1.tc" --json -t 1
has out '"compute":"int8","compute_reason":"auto: int8, its weights' "lora-teacher's auto: int8"
expect 0 "lora-teacher under a limit" -- "$B/lora-teacher" -m "$M" --quant nf4 --data "$TD" \
    --top-k 4 -o "$T/t2.tc" --json -t 1 --memory-limit 100K
has out '"compute":"f32","compute_reason":"auto: f32, int8.s weights (.*) do not fit the 0.1 MiB available (--memory-limit)"' \
    "lora-teacher's auto sees --memory-limit"
expect 2 "lora-teacher, a bad limit" -- "$B/lora-teacher" -m "$M" --data "$TD" --top-k 4 \
    -o "$T/t3.tc" --memory-limit 1x
has err "memory-limit '1x': expected a size" "the limit's error"
# the inference tools take --memory-limit for auto's choice too; lora-eval's model decides within
# what its --teacher, loaded first, leaves
NOFIT="compute auto: f32, int8's weights (.*) do not fit the 0.1 MiB available (--memory-limit)"
for tool in lora-eval lora-generate; do
    expect 0 "$tool --memory-limit" -- "$B/$tool" -m "$M" --quant nf4 --ids $IDS --memory-limit 100K
    has err "$NOFIT" "$tool's auto sees --memory-limit"
done
# lora-bench too: the forward's auto at load, and with --train the trainer's least plan (its
# weights fit 1 MiB, its plan with the 16 MiB runtime does not); --json says which and why
BN=(-m "$M" --quant nf4 --tokens 16 --repeat 1 --decode 2 --json -t 1)
expect 0 "lora-bench, no limit" -- "$B/lora-bench" "${BN[@]}"
has out '"compute":"int8","compute_reason":"auto: int8, its weights (.*) fit the' "bench: int8"
expect 0 "lora-bench --memory-limit" -- "$B/lora-bench" "${BN[@]}" --memory-limit 100K
has out '"compute":"f32","compute_reason":"auto: f32, int8.s weights (.*) do not fit the 0.1 MiB available (--memory-limit)"' \
    "lora-bench's auto sees --memory-limit"
expect 0 "lora-bench --train --memory-limit" -- "$B/lora-bench" "${BN[@]}" --train --rank 4 \
    --steps 1 --memory-limit 1M
has out '"compute":"f32","compute_reason":"auto: f32, int8.s least training plan (.*) does not fit the 1.0 MiB available (--memory-limit)"' \
    "lora-bench --train: the trainer's plan within the limit"
expect 0 "lora-bench --train, a limit int8 fits" -- "$B/lora-bench" "${BN[@]}" --train --rank 4 \
    --steps 1 --memory-limit 64M
has out '"compute":"int8","compute_reason":"auto: int8, int8.s least training plan (.*) fits the 64.0 MiB available (--memory-limit)"' \
    "lora-bench --train: int8 within a limit it fits"
expect 0 "lora-bench --memory-limit --compute int8" -- "$B/lora-bench" "${BN[@]}" \
    --memory-limit 100K --compute int8
has out '"compute":"int8","compute_reason":"given"' "lora-bench: an explicit mode wins"
expect 2 "lora-bench, a bad limit" -- "$B/lora-bench" -m "$M" --memory-limit 1x
has err "lora-bench: --memory-limit '1x': expected a size" "lora-bench: the limit's error"
expect 0 "lora-merge --eval-data --memory-limit" -- "$B/lora-merge" -m "$M" -a "$T/a" -o "$T/mg" \
    --eval-data "$TD" --memory-limit 100K
has err "$NOFIT" "lora-merge's auto sees --memory-limit"
expect 0 "lora-eval beside a teacher" -- "$B/lora-eval" -m "$M" --quant nf4 --ids $IDS \
    --teacher "$M" --teacher-quant nf4 --memory-limit 500K
has err "auto: f32, int8's weights (.*) do not fit the 0.1 MiB left of the 0.5 MiB available \
(--memory-limit) beside the 0.4 MiB" "the model's auto leaves the teacher's weights out"

expect 0 "an f32 base under int8" -- "$B/lora-eval" -m "$M" --quant none --compute int8 --ids $IDS
has err "no matrix of this base has an int8 path" "the note says nothing runs on int8"

G=$S/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$G" ]; then # every Q4_1 matrix and the Q8_0 tied head on int8
    expect 0 "SmolLM2 GGUF, f32" -- "$B/lora-eval" -m "$G" --ids $IDS --json -t 2
    LF=$(jnum loss)
    expect 0 "SmolLM2 GGUF, int8" -- "$B/lora-eval" -m "$G" --ids $IDS --json -t 2 --compute int8
    hasnot_fp32() { ! grep -q "run in fp32" "$T/err"; }
    hasnot_fp32 && passes=$((passes + 1)) || { echo "FAIL: a SmolLM2 matrix left in fp32"; fails=$((fails + 1)); }
    close "$(jnum loss)" "$LF" 0.05 && passes=$((passes + 1)) ||
        { echo "FAIL: SmolLM2 int8 $(jnum loss) vs f32 $LF"; fails=$((fails + 1)); }
fi

echo "cli_compute: $passes passed, $fails failed"
[ "$fails" = 0 ]
