#!/usr/bin/env bash
# SIGINT and SIGTERM to lora-train: each saves a checkpoint of the step it stopped at and exits
# 130 / 143 — also when the signal arrives during an evaluation, or during a checkpoint write (the
# state is saved once, not twice), and when a second signal follows while the last checkpoint is
# being saved (that one stops the run at once; whatever is at a final name is still complete).
# Every interrupted run is resumed to the end and must give the uninterrupted run's adapter, byte
# for byte. Signals go at seeded random moments.
# Usage: cli_fault_signal.sh BUILD_DIR SHARED_DIR SOURCE_DIR   (env: LK_FAULT_SEED, default 5)
set -u
B=$1 S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_fault.sh"
seed=${LK_FAULT_SEED:-5}
RANDOM=$seed
E=$SRC/samples/data/whale-test.jsonl
RUNV=()
for a in "${RUN[@]}"; do [ "$a" = -q ] || RUNV+=("$a"); done # with the messages about saving

t0=$(ms)
expect 0 "uninterrupted reference run" -- "$B/lora-train" "${RUN[@]}" -o "$T/ref"
span=$(($(ms) - t0 + 40))

# stop NAME SIGNAL EXPECTED_CODE [lora-train options...]: start a run, wait for its first
# checkpoint, send SIGNAL after a seeded delay (a second signal 0-15 ms later when SECOND is set),
# check the exit code, that the step it stopped at is saved once, and that all in the folder is
# complete; then resume it to the end and compare with the reference.
stop() {
    local name=$1 sig=$2 want=$3 out=$T/$1
    shift 3
    "$B/lora-train" "${RUNV[@]}" -o "$out" ${FIRST[@]+"${FIRST[@]}"} "$@" >/dev/null \
        2>"$T/$name.err" &
    local pid=$! code delay
    for _ in $(seq 1 2000); do
        [ -e "$out/checkpoint-1" ] && break
        sleep 0.005
    done
    delay=$((RANDOM % (span / 2 + 1)))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    kill -"$sig" "$pid" 2>/dev/null
    if [ -n "${SECOND:-}" ]; then
        sleep "$(printf '0.%03d' $((RANDOM % 16)))"
        kill -"$SECOND" "$pid" 2>/dev/null
    fi
    { wait "$pid"; } 2>/dev/null
    code=$?
    local step
    step=$(grep -o 'interrupted at step [0-9]*' "$T/$name.err" | grep -o '[0-9]*$')
    if [ "$code" = 0 ]; then
        echo "note: $name: the run ended before the signal (delay $delay ms)"
    elif [ -n "${SECOND:-}" ] && [ "$code" = "$SECOND_CODE" ]; then
        ok # stopped by the second signal: nothing to check but the folder
    elif [ "$code" != "$want" ]; then
        bad "$name: exit $code, expected $want"
        sed 's/^/  stderr: /' "$T/$name.err" | tail -3
    elif [ -z "$step" ]; then
        bad "$name: no 'interrupted at step N' message"
    else
        ok
        [ -s "$out/checkpoint-$step/state.ckpt" ] && ok || bad "$name: no checkpoint-$step"
        local saves again
        saves=$(grep -c "checkpoint saved to .*/checkpoint-$step\$" "$T/$name.err")
        again=$(grep -c "checkpoint-$step is up to date" "$T/$name.err")
        [ "$saves" = 1 ] && [ "$again" -le 1 ] && ok ||
            bad "$name: checkpoint-$step saved $saves times (up to date $again times)"
    fi
    check_out "$out"
    if [ "$code" != 0 ]; then
        expect 0 "$name: resume" -- "$B/lora-train" "${RUN[@]}" -o "$out" --resume "$out" "$@"
        has err "resumed from" "$name: resumed from a checkpoint"
    fi
    check_out "$out"
    cmp -s "$T/ref/adapter_model.safetensors" "$out/adapter_model.safetensors" && ok ||
        bad "$name: adapter after the interruption and resume differs from the uninterrupted run"
}

for i in 1 2; do stop "int$i" INT 130; done
for i in 1 2; do stop "term$i" TERM 143; done
# an evaluation after every step (the resumed run evaluates nothing, which must not matter):
# about 90% of the time goes to evaluating
FIRST=(--eval-data "$E" --eval-every 1)
for i in 1 2 3; do stop "eval$i" INT 130; done
grep -q "eval at step" "$T/eval1.err" && ok || bad "the evaluation runs did not evaluate"
unset FIRST
# a save after every step, keeping one: signals land inside checkpoint writes and prunes
for i in 1 2 3 4; do stop "save$i" INT 130 --save-limit 1; done
# a second SIGINT or SIGTERM while the last checkpoint is being written
SECOND=INT SECOND_CODE=130
for i in 1 2; do stop "twice$i" INT 130; done
SECOND=TERM SECOND_CODE=143
for i in 1 2; do stop "intterm$i" INT 130; done
unset SECOND

echo "cli_fault_signal: $passes passed, $fails failed"
[ "$fails" = 0 ]
