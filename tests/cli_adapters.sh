#!/usr/bin/env bash
# End-to-end checks of lora-merge, lora-export, lora-inspect, lora-random-adapter and the -a
# option of lora-eval/lora-generate: exit codes (0 ok, 1 runtime failure, 2 usage), --json that
# parses, outputs not overwritten without --force, nothing temporary left behind, and the merged
# model giving the same loss as base + adapter.
# Usage: cli_adapters.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
AD=$SRC/tests/data/adapters
TINY=$SRC/tests/data/models
. "$(dirname "$0")/lib_cli.sh"
IDS=1,403,407,261,378,432,383,286,261,376,298,315,421
ok() { # ok DESCRIPTION -- test...
    local what=$1
    shift 2
    if "$@"; then passes=$((passes + 1)); else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
loss() { sed -n 's/.*"loss":\([-0-9.e]*\).*/\1/p' "$T/out"; }

for tool in lora-merge lora-export lora-inspect lora-random-adapter; do
    expect 0 "$tool --help" -- "$B/$tool" --help
    has out "Usage: $tool" "$tool --help"
    expect 0 "$tool --version" -- "$B/$tool" --version
    expect 2 "$tool bad option" -- "$B/$tool" --no-such-option
    has err "Try '$tool --help'" "$tool usage error"
done

# lora-merge: weighted HF merge, same loss as base + adapters attached
expect 0 "merge hf" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora:0.7" -a "$AD/stories-lora-b:0.3" -o "$T/merged" --dtype f32 --json
json version seed adapters out format dtype merged_tensors max_store_rel_err seconds peak_rss_mib tensors
expect 0 "eval merged" -- "$B/lora-eval" -m "$T/merged" --ids $IDS --json
l1=$(loss)
expect 0 "eval attached" -- "$B/lora-eval" -m "$M" -a "$AD/stories-lora:0.7" -a "$AD/stories-lora-b:0.3" --ids $IDS --json
l2=$(loss)
ok "merged loss $l1 = attached loss $l2" -- awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }'
expect 0 "eval base" -- "$B/lora-eval" -m "$M" --ids $IDS --json
l0=$(loss)
ok "adapters change the loss ($l0 vs $l2)" -- awk -v a="$l0" -v b="$l2" 'BEGIN { exit !(a != b) }'
expect 1 "merge exists" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/merged"
has err "already exists" "no overwrite without --force"
expect 0 "merge force" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/merged" --force -q
expect 0 "merge gguf" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora.gguf" -o "$T/m.gguf" --dtype f16
has out "gguf" "gguf summary"
expect 1 "merge wrong base" -- "$B/lora-merge" -m "$TINY/llama3-tiny" -a "$AD/stories-lora" -o "$T/x"
has err "wrong base model" "shape hint"
expect 1 "merge q4_0 into a folder" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/x" --dtype q4_0
has err "FILE.gguf" "quantised folder message"
expect 0 "merge q8_0 gguf" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/q8.gguf" --dtype q8_0
expect 0 "merge q4_0 gguf (FFN 172 rows stay F16, as llama.cpp does)" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/q4.gguf" --dtype q4_0
expect 0 "merge onto the NF4 training base" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/bq" --base-quant nf4
# --eval-data: merging onto the dequantised base keeps the loss of base + adapter
expect 0 "merge with eval" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/bq2" --base-quant nf4 \
    --compute f32 --eval-data "$S/data/tinystories/tinystories_sample.txt" --json
grep '"type":"eval"' "$T/out" | "$B/jsoncheck" loss_base_plus_adapters loss_merged loss_change &&
    passes=$((passes + 1)) || { echo "FAIL: merge eval json"; fails=$((fails + 1)); }
grep -q '"loss_change":-\?[0-9.]*e-0[5-9]\|"loss_change":0[,}]' "$T/out" && passes=$((passes + 1)) ||
    { echo "FAIL: merged loss differs from base + adapter"; grep eval "$T/out"; fails=$((fails + 1)); }
expect 2 "eval-data with gguf" -- "$B/lora-merge" -m "$M" -a "$AD/stories-lora" -o "$T/e.gguf" --eval-data "$S/data/tinystories/tinystories_sample.txt"
expect 1 "merge dora attach refused by eval" -- "$B/lora-eval" -m "$TINY/qwen2-tiny" -a "$AD/qwen2-dora" --ids 1,2,3
has err "merge" "DoRA hint"
expect 0 "merge dora" -- "$B/lora-merge" -m "$TINY/qwen2-tiny" -a "$AD/qwen2-dora" -o "$T/dora" --json
expect 1 "missing adapter" -- "$B/lora-merge" -m "$M" -a "$T/none" -o "$T/x"
has err "$T/none" "names the path"

# lora-export both ways, bit-exact GGUF round trip
expect 0 "export gguf" -- "$B/lora-export" -a "$AD/llama3-rslora" -m "$TINY/llama3-tiny" --to gguf -o "$T/a.gguf" --json
json version in out to dtype modules params
expect 0 "export peft" -- "$B/lora-export" --from "$T/a.gguf" -m "$TINY/llama3-tiny" --to peft -o "$T/peft"
expect 0 "export gguf again" -- "$B/lora-export" -a "$T/peft" -m "$TINY/llama3-tiny" --to gguf -o "$T/b.gguf"
ok "GGUF -> PEFT -> GGUF bit-exact" -- cmp -s "$T/a.gguf" "$T/b.gguf"
expect 1 "export dora" -- "$B/lora-export" -a "$AD/qwen2-dora" -m "$TINY/qwen2-tiny" --to gguf -o "$T/d.gguf"
has err "merge" "DoRA export hint"
expect 1 "export exists" -- "$B/lora-export" -a "$AD/llama3-rslora" -m "$TINY/llama3-tiny" --to gguf -o "$T/a.gguf"
expect 2 "export bad format" -- "$B/lora-export" -a "$AD/llama3-rslora" -m "$TINY/llama3-tiny" --to onnx -o "$T/z"
expect 2 "export two inputs" -- "$B/lora-export" -a "$AD/llama3-rslora" --from "$T/a.gguf" -m "$TINY/llama3-tiny" --to peft -o "$T/z"

# lora-inspect: summary, diff, svg
expect 0 "inspect" -- "$B/lora-inspect" "$AD/llama3-rslora" -m "$TINY/llama3-tiny"
has out "|dW|/|W|" "relative norm column"
has out "all factors finite" "NaN scan"
expect 0 "inspect json" -- "$B/lora-inspect" "$AD/stories-lora" --json
json version seed adapter modules nonfinite_modules
expect 0 "inspect diff" -- "$B/lora-inspect" "$AD/stories-lora" "$AD/stories-lora-b" --json --svg "$T/h.svg"
json version adapter adapter2 diff differ_most
ok "svg written" -- grep -q "<svg" "$T/h.svg"
expect 1 "svg exists" -- "$B/lora-inspect" "$AD/stories-lora" --svg "$T/h.svg"
expect 0 "self diff" -- "$B/lora-inspect" "$AD/qwen2-lora" "$AD/qwen2-lora"
has out " 1.0000    0.0000    1.0000" "self diff is cosine 1, difference 0"
expect 2 "inspect stat needs two" -- "$B/lora-inspect" "$AD/stories-lora" --stat cosine
expect 2 "gguf vs peft needs -m" -- "$B/lora-inspect" "$AD/stories-lora.gguf" "$AD/stories-lora"
expect 0 "gguf vs peft with -m" -- "$B/lora-inspect" "$AD/stories-lora.gguf" "$AD/stories-lora" -m "$M" --json

# lora-random-adapter + generate with an adapter
expect 0 "random adapter" -- "$B/lora-random-adapter" -m "$TINY/mistral-tiny" -o "$T/rnd" --rank 4 --json
json version seed out modules params
expect 0 "generate with adapter" -- "$B/lora-generate" -m "$TINY/mistral-tiny" -a "$T/rnd:0.5" --ids 1,2 -n 4 --temp 0 --json
json ids
expect 0 "random adapter again" -- "$B/lora-random-adapter" -m "$TINY/mistral-tiny" -o "$T/rnd2" --rank 4
ok "same seed, same adapter" -- cmp -s "$T/rnd/adapter_model.safetensors" "$T/rnd2/adapter_model.safetensors"
expect 2 "random adapter bad targets" -- "$B/lora-random-adapter" -m "$TINY/mistral-tiny" -o "$T/r2" --targets q,x

ls "$T" | grep -q tmp && { echo "FAIL: temporary left behind"; fails=$((fails + 1)); }
echo "cli_adapters: $passes passed, $fails failed"
[ "$fails" = 0 ]
