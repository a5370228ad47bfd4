#!/usr/bin/env bash
# lora-quantize end to end: exit codes (0 ok, 1 runtime failure, 2 usage), --json parses, and the
# quantised folder loads in lora-eval with exactly the perplexity of `lora-eval --quant TYPE` on
# the original (the same rows, mapped instead of quantised at load).
# Usage: cli_quantize.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
D=$S/data/tinystories/tinystories_sample.txt
. "$(dirname "$0")/lib_cli.sh"
loss() { grep -o '"loss":[0-9.e+-]*' "$T/out"; }

Q=$B/lora-quantize
expect 0 "help" -- "$Q" --help
has out "Usage: lora-quantize" "help text"
expect 0 "version" -- "$Q" --version
expect 2 "bad option" -- "$Q" --no-such-option
has err "Try 'lora-quantize --help'" "usage hint"
expect 2 "no type" -- "$Q" -m "$M" -o "$T/x"
expect 2 "bad type" -- "$Q" -m "$M" --type q5_1 -o "$T/x"
expect 2 "bad format" -- "$Q" -m "$M" --type nf4 --format onnx -o "$T/x"
expect 2 "gguf nf4" -- "$Q" -m "$M" --type nf4 --format gguf -o "$T/x.gguf"
expect 2 "bnb q4_0" -- "$Q" -m "$M" --type q4_0 --format hf-bnb -o "$T/x"
expect 2 "double quant lorakit" -- "$Q" -m "$M" --type nf4 --double-quant -o "$T/x"
expect 2 "bad embed" -- "$Q" -m "$M" --type nf4 --quant-embed q4_0 -o "$T/x"
expect 1 "missing model" -- "$Q" -m "$T/nope" --type nf4 -o "$T/x"
has err "$T/nope/config.json" "missing model names the file"
[ ! -e "$T/x" ] && passes=$((passes + 1)) || { echo "FAIL: output left behind"; fails=$((fails + 1)); }

for ty in nf4 q4_0 iq4_nl q8_0; do
    expect 0 "quantize $ty" -- "$Q" -m "$M" --type "$ty" -o "$T/$ty" -t 2
    has out "model.layers.4.mlp.down_proj.weight" "$ty table"
    has out "total: RMSE" "$ty summary"
    expect 0 "eval $ty folder" -- "$B/lora-eval" -m "$T/$ty" --data "$D" --ctx 512 --json -t 2
    a=$(loss)
    expect 0 "eval --quant $ty" -- "$B/lora-eval" -m "$M" --quant "$ty" --data "$D" --ctx 512 --json -t 2
    b=$(loss)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then passes=$((passes + 1)); else
        echo "FAIL: $ty: quantised folder $a vs --quant $b"; fails=$((fails + 1)); fi
done
expect 0 "json" -- "$Q" -m "$M" --type q4_0 --quant-embed q8_0 -o "$T/j" --json
json version seed rmse max_abs_err bits_per_weight tensors format
has out '"bits_per_weight":5.02325' "q4_0 down_proj bits per weight (172 padded to 192)"
has out '"name":"model.embed_tokens.weight","shape":\[512,64\],"type":"q8_0"' "q8_0 embeddings"
expect 1 "exists" -- "$Q" -m "$M" --type nf4 -o "$T/nf4"
has err "exists" "no overwrite without --force"
expect 0 "force" -- "$Q" -m "$M" --type nf4 -o "$T/nf4" --force -q
expect 0 "generate from quantised folder" -- "$B/lora-generate" -m "$T/q8_0" -p "Once upon a time" --temp 0 -n 8
has out "Once upon a time" "generate output"
expect 1 "requantise refused" -- "$Q" -m "$T/nf4" --type q4_0 -o "$T/y"
has err "already quantised" "quantised input message"

# GGUF: stories260K's down_proj rows of 172 are not whole blocks of 32: F16, as llama-quantize
# does, with a warning naming each such tensor; the file loads and scores like its parts
expect 0 "gguf 172" -- "$Q" -m "$M" --type q4_0 --format gguf -o "$T/s.gguf" --json
has err "tensor 'model.layers.4.mlp.down_proj.weight' has rows of 172 values, not whole blocks of Q4_0 as llama.cpp needs: written F16" "gguf F16 fallback named"
has out '"name":"model.layers.0.mlp.down_proj.weight","shape":\[64,172\],"type":"f16"' "down_proj reported F16"
has out '"name":"model.layers.0.mlp.up_proj.weight","shape":\[172,64\],"type":"q4_0"' "up_proj still q4_0"
[ "$(grep -c "written F16" "$T/err")" = 5 ] && passes=$((passes + 1)) ||
    { echo "FAIL: one warning per down_proj expected"; fails=$((fails + 1)); }
expect 0 "gguf 172 loads" -- "$B/lora-eval" -m "$T/s.gguf" --data "$D" --ctx 512 --json -q
json loss perplexity

# bitsandbytes layout, with and without double quantisation, loads back
expect 0 "hf-bnb" -- "$Q" -m "$M" --type nf4 --format hf-bnb -o "$T/bnb" --json
json version tensors
has out '"bits_per_weight":4.5' "nf4 bits per weight"
expect 0 "hf-bnb dq" -- "$Q" -m "$M" --type nf4 --format hf-bnb --double-quant -o "$T/bnbdq"
has out "4.125 bits/weight" "double quant bits per weight"
grep -q '"quant_method":[[:space:]]*"bitsandbytes"' "$T/bnb/config.json" && passes=$((passes + 1)) ||
    { echo "FAIL: bnb config"; fails=$((fails + 1)); }
expect 0 "eval hf-bnb" -- "$B/lora-eval" -m "$T/bnbdq" --data "$D" --ctx 512 --json -q
json loss perplexity
expect 0 "eval bnb fixture" -- "$B/lora-eval" -m "$SRC/tests/data/bnb/stories260K-nf4-dq" --data "$D" --ctx 512 --json -q
a=$(loss)
expect 0 "eval our hf-bnb dq" -- "$B/lora-eval" -m "$T/bnbdq" --data "$D" --ctx 512 --json -q
b=$(loss)
if [ -n "$a" ] && [ "${a:0:12}" = "${b:0:12}" ]; then passes=$((passes + 1)); else
    echo "FAIL: bnb fixture $a vs ours $b (4 digits)"; fails=$((fails + 1)); fi

echo "cli_quantize: $passes passed, $fails failed"
[ "$fails" = 0 ]
