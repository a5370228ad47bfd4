#!/usr/bin/env bash
# Inputs a new user brings that the other tests do not: each check is a defect found by walking
# the tools with the peers' files (LLaMA-Factory's demo data, llama.cpp GGUFs) and hostile inputs,
# and failed before its fix. Usage: cli_qa.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd) S=$(cd "$2" && pwd) SRC=$(cd "$3" && pwd)
M=$S/models/stories260K-hf
SMOL=$S/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
D=$SRC/samples/data/whale-train.jsonl
. "$(dirname "$0")/lib_cli.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# preference (DPO) records: SFT read their prompt alone and dropped the chosen reply, silently
cat >"$T/dpo.json" <<'J'
[{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
  {"from": "human", "value": "Who are you?"}],
  "chosen": {"from": "gpt", "value": "A whale."}, "rejected": {"from": "gpt", "value": "No."}}]
J
expect 1 "preference records are refused" -- "$B/lora-tokenize" -m "$M" --data "$T/dpo.json"
has err 'element 1: a preference record ("chosen" and "rejected"' "preference message"
expect 1 "lora-train refuses preference records" -- "$B/lora-train" -m "$M" --data "$T/dpo.json" \
    -o "$T/dpo" --steps 1 -t 1
[ ! -e "$T/dpo" ] && passes=$((passes + 1)) || { echo "FAIL: dpo run wrote $T/dpo"; fails=$((fails + 1)); }
echo '{"prompt": "Hi", "chosen": " there", "rejected": " no"}' >"$T/trl.jsonl"
expect 0 "--fields completion=chosen takes TRL's string replies" -- "$B/lora-tokenize" -m "$M" \
    --data "$T/trl.jsonl" --fields completion=chosen -q

# positions past the model's context (stories260K: 512): said, not silent
expect 0 "train past the context" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 600 --steps 1 \
    --rank 2 -o "$T/long" -t 1
has err "warning: --seq-len 600 is longer than the model's context of 512 tokens" "seq-len warning"
expect 0 "train within the context" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 512 \
    --steps 1 --rank 2 -o "$T/short" -t 1
! grep -q "model's context" "$T/err" && passes=$((passes + 1)) || { echo "FAIL: seq-len 512 warned"; fails=$((fails + 1)); }
expect 0 "generate past the context" -- "$B/lora-generate" -m "$M" -p "Once" -n 520 --temp 0 -t 1
has err "run past the model's context of 512 tokens" "generate context warning"
expect 0 "eval --ctx past the context" -- "$B/lora-eval" -m "$M" --text "Once upon a time" \
    --ctx 1000 -t 1
has err "warning: --ctx 1000 is longer than the model's context of 512" "eval --ctx warning"

# an empty prompt with a tokenizer that adds no BOS printed nothing and exited 0
if [ -f "$SMOL" ]; then
    expect 1 "empty prompt, no BOS" -- "$B/lora-generate" -m "$SMOL" -p "" -n 4 -t 1
    has err "the prompt encodes to no token" "empty prompt message"
fi
expect 0 "empty prompt, a BOS to start from" -- "$B/lora-generate" -m "$M" -p "" -n 4 --temp 0 -t 1

# a GGUF whose rows are not whole blocks has F16 matrices among its Q4_1 ones (llama-quantize's
# fallback); the default --quant (nf4) takes those at load, and the adapter recorded the first
# layer's type, q4_1, which no tool could rebuild: lora-eval on the very file it trained on failed
expect 0 "a Q4_1 GGUF of stories260K" -- "$B/lora-quantize" -m "$M" --type q4_1 --format gguf \
    -o "$T/a.gguf" -q
cp "$T/a.gguf" "$T/b.gguf"
expect 0 "train on a.gguf" -- "$B/lora-train" -m "$T/a.gguf" --data "$D" --seq-len 64 --steps 1 \
    --rank 2 -o "$T/ga" -t 1 -q
expect 0 "eval on the file it trained on" -- "$B/lora-eval" -m "$T/a.gguf" -a "$T/ga" \
    --text "Once upon" -t 1
has err "base nf4 (embeddings gguf, int8 compute): .*ga was trained on it" "mixed GGUF record"
# an adapter trained on one GGUF file, run on another: "was trained on it" was said of any GGUF
expect 0 "train on a.gguf's own types" -- "$B/lora-train" -m "$T/a.gguf" --quant none \
    --data "$D" --seq-len 64 --steps 1 --rank 2 -o "$T/gn" -t 1 -q
expect 0 "eval on a.gguf" -- "$B/lora-eval" -m "$T/a.gguf" -a "$T/gn" --text "Once upon" -t 1
has err "gn was trained on it" "same GGUF: trained on it"
expect 0 "eval on b.gguf" -- "$B/lora-eval" -m "$T/b.gguf" -a "$T/gn" --text "Once upon" -t 1
has err "warning: .*gn was trained on the GGUF file .*/a.gguf, not .*/b.gguf" "another GGUF: warned"

# lora-quantize printed its table's header on stdout before failing on an existing output
mkdir -p "$T/exists"
expect 1 "quantize into an existing folder" -- "$B/lora-quantize" -m "$M" --type q4_0 -o "$T/exists"
[ ! -s "$T/out" ] && passes=$((passes + 1)) || { echo "FAIL: quantize failure wrote stdout: $(head -2 "$T/out")"; fails=$((fails + 1)); }

# a plain-text corpus given to lora-train: every line "invalid JSON", and no word of what to do
printf 'Once upon a time there was a whale.\nIt was blue.\n' >"$T/stories.txt"
expect 1 "plain text as training data" -- "$B/lora-train" -m "$M" --data "$T/stories.txt" \
    -o "$T/txt" --steps 1 -t 1
has err 'plain text goes one {"text": ...} object per document' "plain-text hint"

# lora-merge into a bitsandbytes NF4 (or lora-quantize) folder: the U8 weights were copied with
# the adapter left out ("merged into 0 tensors", exit 0), or read as floats into a GGUF of garbage
expect 0 "a bitsandbytes NF4 folder" -- "$B/lora-quantize" -m "$M" --type nf4 --format hf-bnb \
    -o "$T/bnb" -q
expect 0 "train on it" -- "$B/lora-train" -m "$T/bnb" --data "$D" --seq-len 64 --steps 1 \
    --rank 2 -o "$T/qa" -t 1 -q
expect 1 "merge into the NF4 folder" -- "$B/lora-merge" -m "$T/bnb" -a "$T/qa" -o "$T/merged" -t 1
has err "is stored as U8 (a quantised layout" "merge into U8: message"
expect 1 "merge the NF4 folder into a GGUF" -- "$B/lora-merge" -m "$T/bnb" -a "$T/qa" \
    -o "$T/merged.gguf" -t 1
has err "is stored as U8 (a quantised layout" "merge U8 to GGUF: message"
[ ! -e "$T/merged" ] && [ ! -e "$T/merged.gguf" ] && passes=$((passes + 1)) ||
    { echo "FAIL: a refused merge left output"; fails=$((fails + 1)); }
expect 0 "the float base merges" -- "$B/lora-merge" -m "$M" -a "$T/qa" -o "$T/merged" -t 1 -q

# --teacher self with --quant none: teacher and student the same weights, the KL zero at every
# step; the run "trained" (loss 0.0000) and wrote an adapter equal to its start
expect 2 "--teacher self on an unquantised student" -- "$B/lora-train" -m "$M" --data "$D" \
    --objective kd --teacher self --quant none --seq-len 64 --steps 1 -o "$T/kdself" -t 1
has err "the distillation term is zero and trains nothing" "teacher self message"
expect 0 "--teacher self on an NF4 student" -- "$B/lora-train" -m "$M" --data "$D" \
    --objective kd --teacher self --seq-len 64 --steps 1 --rank 2 -o "$T/kdnf4" -t 1 -q

# an empty option value: argtable said 'option "" requires an argument', naming no option
expect 2 "--text ''" -- "$B/lora-eval" -m "$M" --text ""
has err "lora-eval: --text was given an empty value" "empty value names the option"
expect 2 "--system=" -- "$B/lora-generate" -m "$M" --chat -p hi --system=
has err "lora-generate: --system was given an empty value" "empty --opt= names the option"

# --gguf-lora where no file can be made: the run trained, wrote its adapter, then failed (exit 1)
echo x >"$T/afile"
expect 1 "--gguf-lora under a file" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 64 \
    --steps 1 --rank 2 -o "$T/gl" --gguf-lora "$T/afile/sub/a.gguf" -t 1
has err "is not a writable folder" "--gguf-lora checked first"
[ ! -e "$T/gl" ] && passes=$((passes + 1)) || { echo "FAIL: --gguf-lora failure left $T/gl"; fails=$((fails + 1)); }

# -m naming a file of a Hugging Face folder read as a GGUF ("bad magic", no word of the folder);
# --data naming a folder: "read failed", no reason
expect 1 "-m config.json" -- "$B/lora-eval" -m "$M/config.json" --text hi
has err "given by its folder, not by a file in it" "-m file hint"
expect 1 "--data a folder" -- "$B/lora-eval" -m "$M" --data "$T"
has err "read failed: Is a directory" "--data folder reason"

# --resume with another --data: the checkpoint's data cursor was applied to the new data, silently
E=$SRC/samples/data/whale-test.jsonl
expect 0 "a run to resume" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 64 --rank 2 \
    --steps 2 -o "$T/rr" -t 1 -q
expect 1 "resume on other data" -- "$B/lora-train" -m "$M" --data "$E" --seq-len 64 --rank 2 \
    --steps 4 -o "$T/rr" --resume "$T/rr" -t 1
has err "checkpoint was made on other data (400 examples" "resume data message"
expect 0 "resume on its data" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 64 --rank 2 \
    --steps 4 -o "$T/rr" --resume "$T/rr" -t 1 -q

# --init-adapter a GGUF LoRA: "needs one rank and alpha (got r 2, alpha 2)", which looked fine
expect 0 "a GGUF LoRA" -- "$B/lora-export" -a "$T/rr" -m "$M" --to gguf -o "$T/rr.gguf" -q
expect 1 "--init-adapter a GGUF LoRA" -- "$B/lora-train" -m "$M" --data "$D" --seq-len 64 \
    --steps 1 -o "$T/ig" --init-adapter "$T/rr.gguf" -t 1
has err "against the adapter's r 2, alpha 0) (hint: a GGUF LoRA keeps its scales in B" "GGUF init hint"

echo "$passes passed, $fails failures"
[ "$fails" = 0 ]
