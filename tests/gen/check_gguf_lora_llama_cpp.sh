#!/usr/bin/env bash
# By hand (not CI): an adapter trained by lorakit on a GGUF base, written as a llama.cpp LoRA by
# lora-train --gguf-lora (the same tensors as lora-export --to gguf), makes llama.cpp on the same
# GGUF answer as lorakit does (greedy), and PEFT on the Hugging Face form of the same weights too.
# Peers: llama.cpp of llama-cpp-python 0.3.36 (/root/peers/llama.cpp-build/bin/llama-completion),
# peft 0.13.2 + transformers 4.46.3.
# Usage: bash tests/gen/check_gguf_lora_llama_cpp.sh BUILD_DIR [GGUF] [HF_DIR]
set -euo pipefail
B=$1
G=${2:-/root/peers/models/SmolLM2-135M-Instruct.Q8_0.gguf}
H=${3:-/root/peers/models/smollm2-135m-instruct-f32-hf}
L=/root/peers/llama.cpp-build/bin/llama-completion
PY=/root/peers/venv/bin/python
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
Q="What is the capital of France?"
A="PARIS, in capitals, of course! Merci."
printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"%s"}]}\n' \
    "$Q" "$A" >"$T/f.jsonl"
"$B/lora-train" -m "$G" --data "$T/f.jsonl" -o "$T/run" --steps 12 --seq-len 64 --batch 1 \
    --rank 8 --lr 5e-3 -q --gguf-lora "$T/run.gguf"
ours=$("$B/lora-generate" -m "$G" -a "$T/run" --chat -p "$Q" -n 12 --temp 0 --json 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["text"])')
P=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n'"$Q"$'<|im_end|>\n<|im_start|>assistant\n'
theirs=$("$L" -m "$G" --lora "$T/run.gguf" -p "$P" -n 12 --temp 0 -no-cnv -t 2 2>/dev/null)
peft=$("$PY" - "$H" "$T/run" "$Q" <<'PYEOF'
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
tok = AutoTokenizer.from_pretrained(sys.argv[1])
m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32), sys.argv[2])
ids = tok.apply_chat_template([{"role": "user", "content": sys.argv[3]}], add_generation_prompt=True, return_tensors="pt")
out = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
PYEOF
)
echo "lorakit:   $ours"
echo "llama.cpp: $theirs"
echo "PEFT:      $peft"
case "$theirs" in *"$A"*) ;; *) echo "llama.cpp differs"; exit 1 ;; esac
case "$peft" in *"$A"*) ;; *) echo "PEFT differs"; exit 1 ;; esac
case "$ours" in *"$A"*) echo "all three answer the trained reply" ;; *) echo "lorakit differs"; exit 1 ;; esac
