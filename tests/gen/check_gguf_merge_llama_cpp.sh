#!/usr/bin/env bash
# By hand (not CI): lorakit's GGUF writers against llama.cpp on a real GGUF model.
#  1. lora-quantize re-quantising a GGUF (--type q4_k ...) writes the projection matrices byte for
#     byte as llama-quantize --allow-requantize --pure does from the same file (fallback types for
#     SmolLM2's rows of 576 included; embeddings differ by design: --quant-embed).
#  2. lora-merge into the GGUF (types kept, and --dtype q8_0): llama.cpp loads the merged file and
#     answers greedily as lorakit does with the base + adapter (an adapter trained briefly by
#     lora-train on the same GGUF); lorakit on the merged file too.
# Peers: llama.cpp of llama-cpp-python 0.3.36 (/root/peers/llama.cpp-build/bin), gguf-py 0.19.0.
# Usage: bash tests/gen/check_gguf_merge_llama_cpp.sh BUILD_DIR [GGUF] [TYPES...]
set -euo pipefail
B=$1
G=${2:-$(dirname "$0")/../../../shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf}
shift $(($# > 1 ? 2 : 1))
TYPES=${*:-q4_k q6_k}
L=/root/peers/llama.cpp-build/bin
PY=/root/peers/venv/bin/python
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0

for t in $TYPES; do
    U=$(echo "$t" | tr a-z A-Z)
    nice -n 5 "$L/llama-quantize" --allow-requantize --pure "$G" "$T/ref-$t.gguf" "$U" 2 >/dev/null 2>&1
    "$B/lora-quantize" -m "$G" --type "$t" --format gguf -o "$T/ours-$t.gguf" -q >/dev/null 2>&1
    "$PY" - "$T/ref-$t.gguf" "$T/ours-$t.gguf" "$t" <<'PYEOF' || fail=1
import sys
import numpy as np
from gguf import GGUFReader
ref, ours = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
R = {x.name: x for x in ref.tensors}
same = diff = 0
types = {}
for x in ours.tensors:
    if not x.name.startswith("blk.") or len(x.shape) != 2:
        continue
    y = R[x.name]
    types[x.tensor_type.name] = types.get(x.tensor_type.name, 0) + 1
    ok = x.tensor_type == y.tensor_type and np.array_equal(
        np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8))
    same, diff = same + ok, diff + (not ok)
print(f"{sys.argv[3]}: {same} projection matrices byte-identical to llama-quantize --pure, "
      f"{diff} differ {types}")
sys.exit(diff != 0)
PYEOF
done

Q="What is the capital of France?"
A="PARIS, in capitals, of course! Merci."
printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"%s"}]}\n' \
    "$Q" "$A" >"$T/f.jsonl"
"$B/lora-train" -m "$G" --data "$T/f.jsonl" -o "$T/run" --steps 30 --seq-len 64 --batch 1 \
    --rank 8 --lr 1e-2 -q >/dev/null
"$B/lora-merge" -m "$G" -a "$T/run" -o "$T/q8.gguf" --dtype q8_0 -q >/dev/null
echo "merge report (types kept):"
"$B/lora-merge" -m "$G" -a "$T/run" -o "$T/kept.gguf" --force --json 2>/dev/null >"$T/rep.json"
"$PY" - "$T/rep.json" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
e = sorted(t["store_rel_err"] for t in j["tensors"] if t["adapters"])
print(f"  {j['merged_tensors']} merged tensors, stored rel. error median {e[len(e) // 2]:.4g}, "
      f"max {j['max_store_rel_err']:.4g}; {j['seconds']:.2f} s, peak RSS {j['peak_rss_mib']:.0f} MiB")
PYEOF
gen() { "$B/lora-generate" "$@" --chat -p "$Q" -n 16 --temp 0 --json 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["reply"])'; }
P=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n'"$Q"$'<|im_end|>\n<|im_start|>assistant\n'
llama() { "$L/llama-completion" -m "$1" -p "$P" -n 16 --temp 0 -no-cnv -t 2 2>/dev/null |
    sed -n '/^assistant$/,$p' | tail -n +2 | sed 's/ \[end of text\]$//' | head -1; }
ours=$(gen -m "$G" -a "$T/run")
echo "lorakit base + adapter:  $ours"
for m in kept q8; do
    mine=$(gen -m "$T/$m.gguf")
    theirs=$(llama "$T/$m.gguf")
    echo "lorakit merged ($m):     $mine"
    echo "llama.cpp merged ($m):   $theirs"
    [ "$theirs" = "$ours" ] || { echo "llama.cpp on the $m merge differs"; fail=1; }
done
[ "$ours" = "$A" ] || { echo "the adapter did not learn the reply"; fail=1; }
exit $fail
