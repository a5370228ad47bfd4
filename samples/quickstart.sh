#!/usr/bin/env bash
# lorakit quickstart: install what is missing, build, then fine-tune a real pretrained model
# (../shared/models/stories260K-hf, Karpathy's TinyStories Llama) with LoRA on a 4-bit NF4 base:
# train on a small story style (samples/data/whale-train.jsonl), watch the loss fall, compare the
# held-out loss without and with the adapter, generate with it, inspect it, merge it and export it
# (README.md, "Your first hour", says what each output means).
# Usage (as root on Debian 12, from the repository root): bash samples/quickstart.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${LK_SHARED:-$here/../shared}
model=$shared/models/stories260K-hf
data=$here/samples/data
out=$here/build/quickstart-adapter
bash "$here/.ci/deps.sh"
bash "$here/.ci/build.sh" build >/dev/null
bin=$here/build

echo "== the base model, greedy: a story from the prompt 'Once upon a time'"
"$bin/lora-generate" -m "$model" -p "Once upon a time" --temp 0 -n 60

echo "== train a LoRA adapter (rank 8, all seven projections) on an NF4 base"
"$bin/lora-train" -m "$model" --quant nf4 --data "$data/whale-train.jsonl" \
    --eval-data "$data/whale-test.jsonl" --eval-every 20 -o "$out" --force \
    --steps 60 --seq-len 256 --batch 2 --rank 8 --lr 3e-3 --warmup 5 --schedule cosine

echo "== held-out loss of the NF4 base without the adapter, then with it (on the base it was"
echo "   trained on, which the adapter records: NF4)"
"$bin/lora-eval" -m "$model" --quant nf4 --data "$data/whale-test.jsonl"
"$bin/lora-eval" -m "$model" -a "$out" --data "$data/whale-test.jsonl"

echo "== generate with the adapter (the PEFT folder $out also loads in Hugging Face PEFT)"
"$bin/lora-generate" -m "$model" -a "$out" --temp 0 -n 80 \
    -p "Tell me a story about Bob the blue whale and a shy turtle."

echo "== what the adapter learned, per layer and module ($out/norms.svg: a heatmap)"
"$bin/lora-inspect" "$out" -m "$model" --svg "$out/norms.svg" --force >"$out/inspect.txt"
head -12 "$out/inspect.txt"

echo "== merge into the base it was trained on, check the merged model, export for llama.cpp"
"$bin/lora-merge" -m "$model" -a "$out" -o "$out-merged" --force
"$bin/lora-eval" -m "$out-merged" --data "$data/whale-test.jsonl"
"$bin/lora-export" -a "$out" -m "$model" --to gguf -o "$out.gguf" --force
