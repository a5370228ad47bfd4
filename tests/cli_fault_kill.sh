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
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
STEPS=24
BASE=(-m "$M" --data "$D" --seq-len 64 --rank 4 --lr 2e-3 --dropout 0.1 -t 1 -q)
RUN=("${BASE[@]}" --steps $STEPS --save-every 1)
want=${LK_FAULT_KILLS:-24}
seed=${LK_FAULT_SEED:-8}
RANDOM=$seed
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
ms() { echo $(($(date +%s%N) / 1000000)); }

t0=$(ms)
expect 0 "uninterrupted reference run" -- "$B/lora-train" "${RUN[@]}" --save-limit 3 -o "$T/ref"
span=$(($(ms) - t0 + 40)) # a whole run, start-up to exit, in ms

# check_out DIR: everything at a final name is complete and loads. Sets $leftover to the number
# of temporaries seen (evidence that the kill hit a write).
declare -A loaded
check_out() {
    local d=$1 e n
    leftover=0
    [ -d "$d" ] || return 0
    for e in $(ls -A "$d"); do
        case $e in
        checkpoint-*.partial* | checkpoint-*.tmp.* | checkpoint-*.old.* | .adapter-final* | \
            loss.svg.tmp.*)
            leftover=$((leftover + 1)) ;;
        checkpoint-*)
            n=${e#checkpoint-}
            for f in adapter_config.json adapter_model.safetensors state.ckpt; do
                [ -s "$d/$e/$f" ] || bad "$d/$e: no $f in a checkpoint at its final name"
            done
            # a checkpoint folder never changes once at its name: load each one once
            key="$d/$e:$(stat -c %i "$d/$e" "$d/$e"/* 2>/dev/null | tr '\n' .)"
            [ -n "${loaded[$key]:-}" ] && continue
            loaded[$key]=1
            "$B/lora-inspect" "$d/$e" >/dev/null 2>"$T/ierr" ||
                bad "$d/$e: adapter does not load: $(head -1 "$T/ierr")"
            rm -rf "$T/probe"
            "$B/lora-train" "${BASE[@]}" --steps "$n" --resume "$d/$e" -o "$T/probe" \
                >/dev/null 2>"$T/perr" || bad "$d/$e: state does not load: $(head -1 "$T/perr")"
            ;;
        adapter_model.safetensors)
            [ -s "$d/adapter_config.json" ] || bad "$d: adapter_model.safetensors without its config"
            "$B/lora-inspect" "$d" >/dev/null 2>"$T/ierr" ||
                bad "$d: final adapter does not load: $(head -1 "$T/ierr")"
            ;;
        adapter_config.json) ;; # alone: the final adapter is being moved in (no weights yet)
        loss.svg) tail -c 7 "$d/loss.svg" | grep -q '</svg>' || bad "$d/loss.svg is truncated" ;;
        *) bad "$d: unexpected entry $e" ;;
        esac
    done
}

newest() { # newest DIR: the highest N of DIR/checkpoint-N, 0 if none
    local n=0 e
    for e in "$1"/checkpoint-*; do
        e=${e##*/checkpoint-}
        case $e in *[!0-9]* | '') ;; *) [ "$e" -gt $n ] && n=$e ;; esac
    done
    echo $n
}

kills=0 hits=0 series=0 attempts=0
while [ $kills -lt "$want" ] && [ $attempts -lt $((want * 4)) ]; do
    series=$((series + 1))
    out=$T/s$series
    done_=0
    while [ $done_ = 0 ] && [ $attempts -lt $((want * 4)) ]; do
        attempts=$((attempts + 1))
        args=("${RUN[@]}" --save-limit 3 -o "$out")
        ls -d "$out"/checkpoint-* >/dev/null 2>&1 && args+=(--resume "$out")
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
