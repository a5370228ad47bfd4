#!/usr/bin/env bash
# Every tool that takes -m on a GGUF model file: a random Llama folder (stories260K's tokenizer)
# written as GGUF by lora-quantize, then lora-train, -eval, -generate, -teacher (and --teacher
# X.gguf, --gguf-lora), -inspect -m, -export, -merge (into the GGUF, types kept) and -quantize
# (re-quantising the GGUF) on it; the training-base record "gguf" and
# the tools' defaults from it; clear errors for what a GGUF base cannot do; and a few training
# steps on SmolLM2-135M-Instruct's real Q4_1 GGUF whose loss falls.
# Usage: cli_gguf_model.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
. "$(dirname "$0")/lib_cli.sh"
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

cat >"$T/cfg.json" <<'JSON'
{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":512,"max_position_embeddings":128,
 "rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}
JSON
expect 0 "random model" -- "$B/lora-random-model" -c "$T/cfg.json" -o "$T/hf" --dtype f32 -q
cp "$S/models/stories260K-hf/"{tokenizer.json,tokenizer_config.json,special_tokens_map.json} "$T/hf/"
G=$T/m.gguf
expect 0 "quantize to gguf" -- "$B/lora-quantize" -m "$T/hf" --type q8_0 --format gguf -o "$G" -q
printf '{"prompt":"Once upon a time","completion":" there was a girl."}\n{"prompt":"Lily","completion":" went to the park."}\n' >"$T/d.jsonl"

expect 0 "train on gguf" -- "$B/lora-train" -m "$G" --data "$T/d.jsonl" -o "$T/run" --steps 4 \
    --seq-len 32 --batch 2 --rank 4 --lr 1e-2 -q
expect 0 "inspect -m gguf" -- "$B/lora-inspect" -m "$G" "$T/run"
has out "trained on gguf (the GGUF file's own tensor types, int8 compute)" "record: gguf"
has out "|dW|/|W|" "base norms read from the GGUF"
expect 0 "eval on gguf" -- "$B/lora-eval" -m "$G" -a "$T/run" --text "Once upon a time there was"
has out "^$G + $T/run, base gguf (the file.s own tensor types), int8 compute: loss" "a GGUF base labelled as such"
has err "base gguf (the GGUF file's own tensor types, int8 compute): $T/run was trained on it" \
    "eval defaults to the file's own types"
expect 0 "eval on the folder" -- "$B/lora-eval" -m "$T/hf" -a "$T/run" --text "Once upon a time"
has err "warning: $T/run was trained on the base gguf" "a folder base gets a warning"
has err "give that file with -m" "the warning says what to do"
expect 0 "generate on gguf" -- "$B/lora-generate" -m "$G" -a "$T/run" -p "Once upon" -n 4 --temp 0
expect 0 "teacher from gguf" -- "$B/lora-teacher" -m "$G" --data "$T/d.jsonl" --top-k 8 -o "$T/t.tc" -q
expect 0 "gguf teacher cache" -- "$B/lora-train" -m "$G" --data "$T/d.jsonl" -o "$T/kd" --steps 2 \
    --seq-len 32 --batch 2 --objective kd --teacher-cache "$T/t.tc" -q
expect 0 "--teacher X.gguf" -- "$B/lora-train" -m "$T/hf" --data "$T/d.jsonl" -o "$T/kd2" \
    --steps 2 --seq-len 32 --batch 2 --objective kd --teacher "$G" -q
expect 0 "export to llama.cpp" -- "$B/lora-export" -m "$G" -a "$T/run" --to gguf -o "$T/run.gguf" -q
expect 0 "train --gguf-lora" -- "$B/lora-train" -m "$G" --data "$T/d.jsonl" -o "$T/run2" --steps 4 \
    --seq-len 32 --batch 2 --rank 4 --lr 1e-2 -q --gguf-lora "$T/run2.gguf"
expect 0 "--gguf-lora back to PEFT" -- "$B/lora-export" --from "$T/run2.gguf" -m "$G" --to peft \
    -o "$T/run2p" -q
if cmp -s "$T/run2/adapter_model.safetensors" "$T/run2p/adapter_model.safetensors"; then ok; else
    bad "--gguf-lora does not hold the trained adapter"; fi
expect 1 "--gguf-lora exists" -- "$B/lora-train" -m "$G" --data "$T/d.jsonl" -o "$T/run3" --steps 1 \
    --seq-len 32 --gguf-lora "$T/run2.gguf"
has err "already exists (hint: --force replaces it)" "existing --gguf-lora refused before training"
expect 1 "loftq on gguf" -- "$B/lora-train" -m "$G" --data "$T/d.jsonl" -o "$T/lq" --steps 1 \
    --seq-len 32 --init loftq -q
has err "$G: --init loftq on a GGUF model file is not supported" "loftq: clear error"
expect 1 "merge gguf into a folder" -- "$B/lora-merge" -m "$G" -a "$T/run" -o "$T/merged"
has err "a GGUF base merges into a GGUF file only" "merge a GGUF into a folder: clear error"
expect 0 "merge into gguf" -- "$B/lora-merge" -m "$G" -a "$T/run" -o "$T/merged.gguf" -v
has out "blk.1.attn_q.weight  *adapters 1  stored rel. error" "merged tensors reported"
has out "token_embd.weight  *adapters 0  stored rel. error 0$" "unmerged tensors copied"
has out "(gguf, each tensor's own type)" "types kept"
has err "merging into the GGUF file $G" "says what it merges into"
# the merged file scores as the base with the adapter attached (Q8_0 requantised: close)
expect 0 "eval merged" -- "$B/lora-eval" -m "$T/merged.gguf" --text "Once upon a time there was" --json
l1=$(sed -n 's/.*"loss":\([0-9.e+-]*\).*/\1/p' "$T/out" | head -1)
expect 0 "eval base+adapter" -- "$B/lora-eval" -m "$G" -a "$T/run" --text "Once upon a time there was" --json
l0=$(sed -n 's/.*"loss":\([0-9.e+-]*\).*/\1/p' "$T/out" | head -1)
if awk -v a="$l0" -v b="$l1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 0.01 * a) }'; then
    ok; else bad "merged GGUF loss $l1, base + adapter $l0"; fi
expect 1 "quantize gguf to a folder" -- "$B/lora-quantize" -m "$G" --type q4_0 -o "$T/q"
has err "a GGUF model file is re-quantised into a GGUF file only (hint: --format gguf" \
    "quantize a GGUF into a folder: clear error"
expect 0 "requantize gguf" -- "$B/lora-quantize" -m "$G" --type q4_k --format gguf -o "$T/rq.gguf" --json
has err "re-quantising a GGUF model file: each matrix is dequantised" "requantising warns"
has err "tensor 'blk.0.attn_q.weight' has rows of 64 values, not whole blocks of Q4_K: written Q5_0" \
    "llama-quantize's fallback named"
has out '"name":"blk.1.ffn_down.weight","shape":\[64,96\],"type":"q5_0"' "matrices requantised"
has out '"name":"token_embd.weight","shape":\[512,64\],"type":"f32"' "embeddings per --quant-embed"
expect 0 "requantize gguf q4_1" -- "$B/lora-quantize" -m "$G" --type q4_1 --quant-embed q8_0 \
    --format gguf -o "$T/rq1.gguf" -q
expect 0 "eval requantized" -- "$B/lora-eval" -m "$T/rq1.gguf" --text "Once upon a time there was"
has out "loss" "a requantised GGUF loads"

# hostile: an unknown architecture names itself and the file
python_free_patch() { # the 5 bytes of "llama" after general.architecture
    local off
    off=$(grep -abo "general.architecture" "$G" | head -1 | cut -d: -f1)
    cp "$G" "$T/bad.gguf"
    printf 'gemma' | dd of="$T/bad.gguf" bs=1 seek=$((off + 20 + 4 + 8)) conv=notrunc 2>/dev/null
}
python_free_patch
expect 1 "unknown architecture" -- "$B/lora-eval" -m "$T/bad.gguf" --ids 1,2,3
has err "$T/bad.gguf: architecture 'gemma' is not supported" "architecture named"

# the real model: a few steps on one example, loss falls
Q=$S/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$Q" ]; then
    printf '{"messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"PARIS, in capitals."}]}\n' >"$T/f.jsonl"
    expect 0 "train SmolLM2 Q4_1" -- "$B/lora-train" -m "$Q" --data "$T/f.jsonl" -o "$T/smol" \
        --steps 4 --seq-len 64 --batch 1 --rank 4 --lr 5e-3 --json -q
    first=$(grep -o '"loss":[0-9.]*' "$T/out" | head -1 | cut -d: -f2)
    last=$(grep -o '"loss":[0-9.]*' "$T/out" | tail -1 | cut -d: -f2)
    if awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 0 && b < a) }'; then ok; else
        bad "SmolLM2 loss did not fall: $first -> $last"; fi
else
    echo "skip: $Q missing"
fi

echo "cli_gguf_model: $passes passed, $fails failed"
[ "$fails" = 0 ]
