#!/usr/bin/env bash
# SIGKILL soak of lora-train (stories260K-hf, a checkpoint after every step): runs are killed with
# SIGKILL after seeded random delays spread over a whole run, so that many kills land inside a
# checkpoint or final-adapter write. After every kill: each checkpoint-N in the output folder is
# complete (adapter files + state.ckpt) and loads (a resume from it runs), an
# adapter_model.safetensors at the top has its config and loads, loss.svg is whole, and nothing
# else is there but the temporaries a killed write leaves (which the next run sweeps). The next
# run resumes from the newest checkpoint; each series of killed runs ends with a run that finishes,
# and its adapter must be byte-identical to an uninterrupted run's. Last, a damaged newest
# checkpoint is reported and the one before it used.
# Usage: cli_fault_kill.sh BUILD_DIR SHARED_DIR SOURCE_DIR
# Env: LK_FAULT_KILLS (default 24; at least 20 unless set), LK_FAULT_SEED (default 8).
set -u
B=$1 S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_fault.sh"
want=${LK_FAULT_KILLS:-24}
seed=${LK_FAULT_SEED:-8}
RANDOM=$seed

t0=$(ms)
expect 0 "uninterrupted reference run" -- "$B/lora-train" "${RUN[@]}" --save-limit 3 -o "$T/ref"
span=$(($(ms) - t0 + 40)) # a whole run, start-up to exit, in ms

kills=0 hits=0 series=0 attempts=0
while [ $kills -lt "$want" ] && [ $attempts -lt $((want * 4)) ]; do
    series=$((series + 1))
    out=$T/s$series
    done_=0
    while [ $done_ = 0 ] && [ $attempts -lt $((want * 4)) ]; do
        attempts=$((attempts + 1))
        args=("${RUN[@]}" --save-limit 3 -o "$out")
        [ "$(newest "$out")" -gt 0 ] && args+=(--resume "$out") # else a fresh start
        "$B/lora-train" "${args[@]}" >/dev/null 2>"$T/run.err" &
        pid=$!
        if [ $kills -ge "$want" ]; then # enough: let this series finish
            how="never"
        elif [ $((attempts % 2)) = 0 ]; then # start-up, resume and the first steps
            delay=$(((RANDOM * 32768 + RANDOM) % (span / 4)))
            how="after $delay ms"
        else # just after checkpoint-K appears: the next step's save (or the prune) is under way
            k=$(($(newest "$out") + 1 + RANDOM % 3))
            for _ in $(seq 1 2000); do
                [ -e "$out/checkpoint-$k" ] || [ -e "$out/adapter_model.safetensors" ] && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.005
            done
            delay=$((RANDOM % 25))
            how="$delay ms after checkpoint-$k"
        fi
        [ "$how" = never ] || sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
        [ "$how" = never ] || kill -KILL "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null # no "Killed" line from the shell
        code=$?
        if [ $code = 137 ]; then
            kills=$((kills + 1))
            check_out "$out"
            [ $leftover -gt 0 ] && hits=$((hits + 1))
        elif [ $code = 0 ]; then
            done_=1
        else
            bad "series $series: lora-train exit $code (killed $how)"
            sed 's/^/  stderr: /' "$T/run.err" | head -5
            done_=1
        fi
    done
    check_out "$out"
    cmp -s "$T/ref/adapter_model.safetensors" "$out/adapter_model.safetensors" && ok ||
        bad "series $series: adapter after kills and resumes differs from the uninterrupted run"
    cmp -s "$T/ref/adapter_config.json" "$out/adapter_config.json" && ok ||
        bad "series $series: adapter config differs"
    [ -z "$(ls -A "$out" | grep -E 'tmp|partial|old|^\.adapter-final')" ] && ok ||
        bad "series $series: temporaries left after the run finished"
done
[ $kills -ge "$want" ] && ok || bad "only $kills kills in $attempts runs (wanted $want)"
echo "cli_fault_kill: seed $seed: $kills SIGKILLs over $series series ($attempts runs; delays" \
    "0..$((span / 4)) ms, or 0..24 ms after a checkpoint); $hits kills left a write unfinished"

# A damaged newest checkpoint (bit flip, then truncation) is reported, never loaded: the run
# resumes from the one before it and still ends bit-identical.
expect 0 "run keeping every checkpoint" -- "$B/lora-train" "${RUN[@]}" -o "$T/all" --save-limit 0
for how in flip truncate; do
    rm -rf "$T/dmg"
    mkdir "$T/dmg"
    for n in 4 5 6; do cp -r "$T/all/checkpoint-$n" "$T/dmg/"; done
    f=$T/dmg/checkpoint-6/state.ckpt
    size=$(stat -c %s "$f")
    if [ $how = flip ]; then
        printf '\x55' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
    else
        truncate -s $((size / 2)) "$f"
    fi
    expect 0 "resume past a damaged checkpoint ($how)" -- "$B/lora-train" "${RUN[@]}" \
        -o "$T/dmg" --resume "$T/dmg"
    has err "checkpoint-6/state.ckpt" "the damaged checkpoint is named ($how)"
    has err "resumed from .*checkpoint-5/state.ckpt at step 5" "resumed from the one before ($how)"
    cmp -s "$T/ref/adapter_model.safetensors" "$T/dmg/adapter_model.safetensors" && ok ||
        bad "resumed past a damaged checkpoint ($how): adapter differs"
done

echo "cli_fault_kill: $passes passed, $fails failed"
[ "$fails" = 0 ]
