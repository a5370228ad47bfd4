# Shared by the tests/cli_fault_*.sh scripts (sourced after lib_cli.sh; not a test itself):
# lora-train options for stories260K-hf with a checkpoint after every step, and check_out, which
# verifies that everything at a final name in an output folder is complete and loads.
# Needs $B, $S, $SRC and $T.
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
STEPS=24
BASE=(-m "$M" --data "$D" --seq-len 64 --rank 4 --lr 2e-3 --dropout 0.1 -t 1 -q)
RUN=("${BASE[@]}" --steps $STEPS --save-every 1)
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
ms() { echo $(($(date +%s%N) / 1000000)); }
newest() { # newest DIR: the highest N of DIR/checkpoint-N, 0 if none
    local n=0 e
    for e in "$1"/checkpoint-*; do
        e=${e##*/checkpoint-}
        case $e in *[!0-9]* | '') ;; *) [ "$e" -gt $n ] && n=$e ;; esac
    done
    echo $n
}

# check_out DIR: each checkpoint-N is complete (adapter files + state.ckpt), its adapter loads
# (lora-inspect) and its state loads (a run resumed from it finishes); an
# adapter_model.safetensors at the top has its config and loads; loss.svg is whole; anything else
# is a temporary of an unfinished write (counted in $leftover; the next run sweeps them).
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
