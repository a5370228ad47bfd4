#!/usr/bin/env bash
# lora-train end to end on stories260K-hf with the sample whale-style data: options and exit
# codes, --dry-run, --json lines, the PEFT output, no overwrite without --force, and recovery:
# a run killed with SIGKILL, or stopped with SIGINT (exit 130, checkpoint saved), then resumed,
# ends with an adapter byte-identical to an uninterrupted run's.
# Usage: cli_train.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
E=$SRC/samples/data/whale-test.jsonl
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() { # expect CODE WHAT -- cmd...
    local want=$1 what=$2
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok; else
        bad "$what: exit $got, expected $want"; sed 's/^/  stderr: /' "$T/err" | head -5; fi
}
has() { grep -q -- "$2" "$T/$1" && ok || { bad "$3: '$2' not in $1"; head -5 "$T/$1"; }; }

COMMON=(-m "$M" --data "$D" --seq-len 128 --batch 1 --rank 4 --lr 2e-3 --dropout 0.1 -t 1 -q)

expect 0 "help" -- "$B/lora-train" --help
has out "Usage: lora-train" "help text"
expect 0 "version" -- "$B/lora-train" --version
expect 2 "no data" -- "$B/lora-train" -m "$M" -o "$T/x"
has err "Try 'lora-train --help'" "usage hint"
expect 2 "kd objective" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --objective kd
has err "needs a teacher" "kd without a teacher"
expect 2 "steps and epochs" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --steps 2 --epochs 1
expect 2 "bad targets" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --targets q,zz
has err "unknown module 'zz'" "targets message"
expect 2 "bad rank" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --rank 0
expect 1 "missing data file" -- "$B/lora-train" -m "$M" --data "$T/none.jsonl" -o "$T/x"
has err "none.jsonl" "names the data file"

expect 0 "dry run" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --dry-run --json
"$B/jsoncheck" peak_bytes activation_bytes <"$T/out" && ok || bad "dry-run json"
[ ! -e "$T/x" ] && ok || bad "dry run wrote output"

# activation checkpointing: the dry run shows the choice (layers that keep their activations);
# with f32 compute, so that only activations share the budget (int8's transposed copies, which the
# plan trades against them, are checked in cli_compute.sh)
num() { sed -n "s/.*\"$1\":\([0-9.e+]*\).*/\1/p" "$T/out"; }
expect 0 "dry run, checkpointing off" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --dry-run \
    --json --checkpointing off --compute f32
[ "$(num layers_kept)" = 5 ] && grep -q '"checkpointing":"off"' "$T/out" && ok ||
    bad "checkpointing off keeps all 5 layers: $(cat "$T/out")"
most=$(num peak_bytes)
expect 0 "dry run, checkpointing on" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --dry-run \
    --json --checkpointing on --compute f32
[ "$(num layers_kept)" = 1 ] && ok || bad "checkpointing on keeps 1 layer: $(cat "$T/out")"
least=$(num peak_bytes)
# a limit 2.6 layers' activations above the least plan: auto keeps 3 layers, and the plan fits
limit=$(awk -v a="$least" -v b="$most" 'BEGIN { printf "%.0f", a + (b - a) / 4 * 2.6 }')
expect 0 "dry run, auto under --memory-limit" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" \
    --dry-run --json --memory-limit "$limit" --compute f32
[ "$(num layers_kept)" = 3 ] && grep -q '"checkpointing":"auto"' "$T/out" &&
    grep -q '"available_limit":"--memory-limit"' "$T/out" && grep -q '"fits":true' "$T/out" &&
    ok || bad "auto under a limit keeps 3 layers: $(cat "$T/out")"
expect 0 "dry run text" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --dry-run
has out "checkpointing auto: 5 of 5 layers keep their activations, 0 recomputed" "the choice"
expect 1 "dry run, a limit below the plan" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" \
    --dry-run --memory-limit 1M
has out "checkpointing auto: 1 of 5 layers keep" "the least plan under a small limit"
has err "the plan needs [0-9]* MiB, more than the 1 MiB available (--memory-limit)" "named limit"
expect 2 "bad --checkpointing" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --checkpointing maybe
has err "--checkpointing 'maybe': expected auto, on or off" "checkpointing message"
expect 2 "bad --memory-limit" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --memory-limit 3X
has err "--memory-limit '3X'" "memory-limit message"
expect 2 "both checkpointing flags" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" \
    --checkpointing on --no-checkpointing

# a short run with --json, evaluation and checkpoints
expect 0 "train" -- "$B/lora-train" "${COMMON[@]}" -o "$T/a" --steps 6 --save-every 2 \
    --eval-data "$E" --eval-every 3 --json
"$B/jsoncheck" <"$T/out" && ok || bad "train output is not JSON lines"
grep '"type":"step"' "$T/out" | "$B/jsoncheck" version seed step loss lr tokens_per_s && ok ||
    bad "step lines"
grep -q '"type":"eval"' "$T/out" && ok || bad "eval lines"
grep -q '"type":"done"' "$T/out" && ok || bad "done line"
for f in adapter_config.json adapter_model.safetensors loss.svg checkpoint-6/state.ckpt \
    checkpoint-6/adapter_model.safetensors; do
    [ -s "$T/a/$f" ] && ok || bad "missing $f"
done
[ ! -e "$T/a/checkpoint-2" ] && ok || bad "old checkpoints are pruned (save-limit 2)"
grep -q '"peft_type"' "$T/a/adapter_config.json" && ok || bad "PEFT config"
ls -a "$T/a" | grep -q tmp && bad "temporary left behind" || ok
expect 1 "no overwrite" -- "$B/lora-train" "${COMMON[@]}" -o "$T/a" --steps 2
has err "already holds an adapter" "overwrite message"

# uninterrupted reference: 12 steps
expect 0 "reference run" -- "$B/lora-train" "${COMMON[@]}" -o "$T/ref" --steps 12
# SIGKILL after the first checkpoint, then resume
"$B/lora-train" "${COMMON[@]}" -o "$T/k" --steps 12 --save-every 2 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    ls "$T"/k/checkpoint-*/state.ckpt >/dev/null 2>&1 && break
    sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
expect 0 "resume after SIGKILL" -- "$B/lora-train" "${COMMON[@]}" -o "$T/k" --steps 12 --resume "$T/k"
cmp -s "$T/ref/adapter_model.safetensors" "$T/k/adapter_model.safetensors" && ok ||
    bad "resumed after SIGKILL: adapter differs from the uninterrupted run"
# SIGINT: exit 130 with a checkpoint, then resume
"$B/lora-train" "${COMMON[@]}" -o "$T/i" --steps 12 >"$T/iout" 2>"$T/ierr" &
pid=$!
for _ in $(seq 1 600); do
    [ -d "$T/i" ] && break
    sleep 0.02
done
# the run folder exists: stopped there, the signal is delivered before the run can finish
kill -STOP "$pid"
kill -INT "$pid"
kill -CONT "$pid"
wait "$pid"
code=$?
[ "$code" = 130 ] && ok || { bad "SIGINT exit $code, expected 130"; cat "$T/ierr" | head -5; }
ls "$T"/i/checkpoint-*/state.ckpt >/dev/null 2>&1 && ok || bad "no checkpoint after SIGINT"
expect 0 "resume after SIGINT" -- "$B/lora-train" "${COMMON[@]}" -o "$T/i" --steps 12 --resume "$T/i"
cmp -s "$T/ref/adapter_model.safetensors" "$T/i/adapter_model.safetensors" && ok ||
    bad "resumed after SIGINT: adapter differs from the uninterrupted run"

echo "cli_train: $passes passed, $fails failed"
[ "$fails" = 0 ]
