#!/usr/bin/env bash
# Option checks of every tool that fills a library params struct: a wrong value is a usage error
# (exit 2) whose message is the library's, printed as is after the tool's name, with the --help
# hint; nothing is loaded or written first. The messages name the option by its flag and value.
# Usage: cli_params.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
D=$SRC/tests/data/teacher/data.jsonl
. "$(dirname "$0")/lib_cli.sh"

# usage TOOL MESSAGE -- ARGS...: exit 2, stderr exactly "TOOL: MESSAGE" and the hint, no stdout
usage() {
    local tool=$1 msg=$2
    shift 3
    expect 2 "$tool $*" -- "$B/$tool" "$@"
    if [ "$(cat "$T/err")" = "$tool: $msg"$'\n'"Try '$tool --help'." ] && [ ! -s "$T/out" ]; then
        passes=$((passes + 1))
    else
        echo "FAIL: $tool $*: stderr"
        sed 's/^/  got:  /' "$T/err"
        echo "  want: $tool: $msg"
        fails=$((fails + 1))
    fi
}

TR=(-m "$T/no-model" --data "$T/no-data.jsonl" -o "$T/out-dir")
usage lora-train "--rank must be at least 1, got 0" -- "${TR[@]}" --rank 0
usage lora-train "--alpha must be above 0, got -2 (leave --alpha out for the default: alpha = rank, a scale of 1)" -- \
    "${TR[@]}" --alpha -2
usage lora-train "--dropout must be in [0, 1), got 1" -- "${TR[@]}" --dropout 1
usage lora-train "--lr must be a finite value above 0, got -1" -- "${TR[@]}" --lr -1
usage lora-train "--batch must be at least 1, got 0" -- "${TR[@]}" --batch 0
usage lora-train "--seq-len must be at least 2, got 1" -- "${TR[@]}" --seq-len 1
usage lora-train "--save-limit must be at least 0 (0: keep every checkpoint), got -1" \
    -- "${TR[@]}" --save-limit -1
usage lora-train "--optimizer 'adam': expected adamw or sgd" -- "${TR[@]}" --optimizer adam
usage lora-train "--fields: 'prompt' is not KEY=COLUMN with KEY one of text, prompt, completion, messages, conversations, instruction, input, output, input_ids, labels, tools" \
    -- "${TR[@]}" --fields prompt
usage lora-train "--schedule 'step': expected cosine, linear or constant" -- "${TR[@]}" \
    --schedule step
usage lora-train "--quant 'f16': expected none (f32), nf4, q4_0, iq4_nl or q8_0" -- "${TR[@]}" \
    --quant f16
usage lora-train "--targets: unknown module 'zz' (use q,k,v,o,gate,up,down, their *_proj names, or all)" \
    -- "${TR[@]}" --targets q,zz
usage lora-train "--kd-temp must be in (0, 100], got 0" -- "${TR[@]}" \
    --objective kd --teacher-cache "$T/x.tc" --kd-temp 0
usage lora-train "--jsd-beta must be in [0, 1], got 2" -- "${TR[@]}" \
    --objective jsd --teacher-cache "$T/x.tc" --jsd-beta 2
[ ! -e "$T/out-dir" ] && passes=$((passes + 1)) || { echo "FAIL: lora-train made its folder"; fails=$((fails + 1)); }

GE=(-m "$T/no-model" --ids 1,2)
usage lora-generate "--temp must be a finite value >= 0 (0: greedy), got -1" -- \
    "${GE[@]}" --temp -1
usage lora-generate "--top-p must be in (0, 1], got 0" -- "${GE[@]}" --top-p 0
usage lora-generate "--top-k must be at least 0 (0: all), got -5" -- "${GE[@]}" \
    --top-k -5

TE=(-m "$M" --data "$D" -o "$T/x.tc")
usage lora-teacher "--top-k must be at least 1, got 0" -- "${TE[@]}" --top-k 0
usage lora-teacher "--top-k must be between 1 and 511 (below the vocabulary of 512 ids), got 512" \
    -- "${TE[@]}" --top-k 512
usage lora-teacher "--vocab must be between 2 and 512 (the model's vocab_size), got 513" -- \
    "${TE[@]}" --top-k 8 --vocab 513
usage lora-teacher "--kd-temp must be above 0 (at most 1e6), got 0" -- \
    "${TE[@]}" --top-k 8 --kd-temp 0
usage lora-teacher "--seq-len must be at least 2, got 1" -- "${TE[@]}" --top-k 8 \
    --seq-len 1

QU=(-m "$T/no-model" -o "$T/q")
usage lora-quantize "--type 'f16': expected nf4, q4_0, iq4_nl, q8_0, or for --format gguf q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs" -- "${QU[@]}" --type f16
usage lora-quantize "--format 'onnx': expected lorakit, gguf or hf-bnb" -- "${QU[@]}" --type nf4 \
    --format onnx
usage lora-quantize "--quant-embed 'q4_0': expected f32 or q8_0" -- "${QU[@]}" --type nf4 \
    --quant-embed q4_0
usage lora-quantize "--double-quant applies to --format hf-bnb only" -- "${QU[@]}" --type nf4 \
    --double-quant

ME=(-m "$T/no-model" -a "$T/no-adapter" -o "$T/m")
usage lora-merge "--dtype 'f8': expected f32, f16, bf16, q8_0, q4_0, iq4_nl, nf4, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k or iq4_xs" -- "${ME[@]}" \
    --dtype f8
usage lora-merge "--base-quant 'nf5': expected nf4, q4_0, iq4_nl or q8_0" -- "${ME[@]}" \
    --base-quant nf5

RA=(-m "$T/no-model" -o "$T/r")
usage lora-random-adapter "--rank must be at least 1, got 0" -- "${RA[@]}" --rank 0
usage lora-random-adapter "--std-b must be a finite value >= 0, got -1" -- \
    "${RA[@]}" --std-b -1

usage lora-tokenize "--seq-len must be at least 1, got 0" -- -m "$M" --data "$D" \
    --seq-len 0
usage lora-eval "--quant-embed 'q4_0': expected f32 or q8_0" -- -m "$T/no-model" --ids 1,2 \
    --quant-embed q4_0

echo "cli_params: $passes passed, $fails failed"
[ "$fails" = 0 ]
