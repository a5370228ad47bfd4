#!/usr/bin/env bash
# Write errors and full disks. `ulimit -f` makes every write past the limit fail with EFBIG (the
# tools ignore SIGXFSZ, which would otherwise kill them): lora-train while saving a checkpoint and
# while saving the final adapter, and every tool that writes files (lora-merge to a folder and to
# GGUF, lora-quantize, lora-export, lora-random-model, lora-random-adapter, lora-inspect --svg).
# Expected each time: exit 1, an error naming the output and the cause, nothing at the output's
# name, no temporary left, and for lora-train the previous checkpoint intact (it loads, and a
# resume from it ends bit-identical to an uninterrupted run). Where this user may mount a small
# tmpfs (root), the same with a real full disk (ENOSPC); elsewhere that part is skipped, visibly.
# Usage: cli_fault_disk.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd) S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
. "$SRC/tests/lib_fault.sh"
trap 'umount "$T/mnt" 2>/dev/null; rm -rf "$T"' EXIT

expect 0 "uninterrupted run keeping every checkpoint" -- "$B/lora-train" "${RUN[@]}" \
    --save-limit 0 -o "$T/ref"

# only(DIR, NAMES...): DIR holds exactly these entries (no temporaries, nothing partial)
only() {
    local d=$1 got
    shift
    got=$(ls -A "$d" | sort | tr '\n' ' ')
    want=$([ $# = 0 ] || printf '%s\n' "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] && ok || bad "$d holds '$got', expected '$want'"
}

# failed_save DIR N CAUSE RESUME_OUT: checkpoint-N of DIR could not be written: the error names
# it and the cause, nothing is at its name, the rest of DIR loads; a resume from DIR into
# RESUME_OUT starts at checkpoint N-1 and ends bit-identical to the uninterrupted run.
failed_save() {
    local d=$1 n=$2 cause=$3 to=$4
    has err "checkpoint .*checkpoint-$n not saved" "checkpoint-$n: the failed save is named"
    has err "$cause" "checkpoint-$n: the cause is given"
    [ ! -e "$d/checkpoint-$n" ] && ok || bad "something at $d/checkpoint-$n"
    check_out "$d"
    expect 0 "resume after the failed checkpoint-$n" -- "$B/lora-train" "${RUN[@]}" -o "$to" \
        --resume "$d"
    has err "resumed from .*checkpoint-$((n - 1))/state.ckpt at step $((n - 1))" \
        "resumed from the checkpoint before checkpoint-$n"
    cmp -s "$T/ref/adapter_model.safetensors" "$to/adapter_model.safetensors" && ok ||
        bad "resumed after failed checkpoint-$n: adapter differs from the uninterrupted run"
}

# --- lora-train: a checkpoint write fails (state.ckpt is ~260 KB, the limit 100 KB) ----------
mkdir "$T/c"
cp -r "$T/ref"/checkpoint-{3,4} "$T/c/"
expect 1 "checkpoint past ulimit -f" -- bash -c 'ulimit -f 100; exec "$@"' - \
    "$B/lora-train" "${RUN[@]}" -o "$T/c" --resume "$T/c"
only "$T/c" checkpoint-3 checkpoint-4 loss.svg
failed_save "$T/c" 5 "File too large" "$T/c"

# --- lora-train: the final adapter's write fails (100 KB of weights, the limit 50 KB) --------
mkdir "$T/f"
cp -r "$T/ref/checkpoint-24" "$T/f/"
expect 1 "final adapter past ulimit -f" -- bash -c 'ulimit -f 50; exec "$@"' - \
    "$B/lora-train" "${RUN[@]}" -o "$T/f" --resume "$T/f"
has err "adapter not saved to .*File too large" "the failed adapter save is named"
only "$T/f" checkpoint-24
check_out "$T/f"
expect 0 "finish after the failed adapter save" -- "$B/lora-train" "${RUN[@]}" -o "$T/f" \
    --resume "$T/f"
cmp -s "$T/ref/adapter_model.safetensors" "$T/f/adapter_model.safetensors" && ok ||
    bad "final adapter after a failed save differs from the uninterrupted run"

# --- every other tool that writes: past ulimit -f, exit 1 and nothing left -------------------
# limited LIMIT_KB NAME OUT -- cmd...: run with the limit in an empty folder; OUT must not appear
limited() {
    local kb=$1 name=$2 out=$3 dir=$T/w/$2
    shift 4
    mkdir -p "$dir"
    expect 1 "$name past ulimit -f $kb" -- bash -c "cd '$dir' && ulimit -f $kb && exec \"\$@\"" - \
        "$@"
    has err "$out" "$name: the error names $out"
    has err "File too large" "$name: the error gives the cause"
    only "$dir"
}
A=$T/ref/checkpoint-24
mkdir -p "$T/w"
expect 0 "a GGUF LoRA to import" -- "$B/lora-export" -a "$A" -m "$M" --to gguf -o "$T/w/ok.gguf"
limited 100 merge-folder merged -- "$B/lora-merge" -m "$M" -a "$A" -o merged
limited 100 merge-gguf merged.gguf -- "$B/lora-merge" -m "$M" -a "$A" -o merged.gguf
limited 20 quantize q4 -- "$B/lora-quantize" -m "$M" --type q4_0 -o q4
limited 20 export-gguf lora.gguf -- "$B/lora-export" -a "$A" -m "$M" --to gguf -o lora.gguf
limited 20 export-peft peft -- "$B/lora-export" --from "$T/w/ok.gguf" -m "$M" --to peft -o peft
limited 100 random-model rnd -- "$B/lora-random-model" -c "$M/config.json" -o rnd
limited 20 random-adapter radp -- "$B/lora-random-adapter" -m "$M" -o radp --rank 4
limited 4 inspect-svg map.svg -- "$B/lora-inspect" "$A" --svg map.svg --top 1
# results on stdout that do not reach their file are an error too, not a silent truncation
expect 1 "stdout past ulimit -f" -- bash -c 'ulimit -f 2; exec "$@"' - "$B/lora-inspect" "$A"
has err "writing the results to standard output failed" "the stdout failure is reported"

# --- a full disk: a 900 KB tmpfs holds two checkpoints, not a third --------------------------
mkdir "$T/mnt"
if mount -t tmpfs -o size=900k tmpfs "$T/mnt" 2>/dev/null; then
    expect 1 "training onto a full disk" -- "$B/lora-train" "${RUN[@]}" -o "$T/mnt/o"
    only "$T/mnt/o" checkpoint-1 checkpoint-2 loss.svg
    failed_save "$T/mnt/o" 3 "No space left on device" "$T/d"
    rm -rf "$T/mnt/o"
    expect 1 "merge onto a full disk" -- "$B/lora-merge" -m "$M" -a "$A" -o "$T/mnt/merged"
    has err "No space left on device" "merge: the cause is given"
    only "$T/mnt"
    umount "$T/mnt"
else
    echo "SKIP: full-disk (tmpfs) part: this user may not mount a tmpfs; the ulimit -f part ran"
fi

echo "cli_fault_disk: $passes passed, $fails failed"
[ "$fails" = 0 ]
