#!/usr/bin/env bash
# lorakit quickstart: install what is missing, build, then use a real pretrained model
# (../shared/models/stories260K-hf, Karpathy's TinyStories Llama): generate a story and measure
# the model's perplexity on a sample of TinyStories text.
# Usage (as root on Debian 12, from the repository root): bash samples/quickstart.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${LK_SHARED:-$here/../shared}
model=$shared/models/stories260K-hf
bash "$here/.ci/deps.sh"
bash "$here/.ci/build.sh" build >/dev/null
bin=$here/build

echo "== a story from $model (greedy decoding)"
"$bin/lora-generate" -m "$model" -p "Once upon a time" --temp 0 -n 80

echo "== the same prompt, sampled (temperature 0.8, top-p 0.95, seed 7)"
"$bin/lora-generate" -m "$model" -p "Once upon a time" --temp 0.8 --top-p 0.95 --seed 7 -n 80

echo "== perplexity on $shared/data/tinystories/tinystories_sample.txt"
"$bin/lora-eval" -m "$model" --data "$shared/data/tinystories/tinystories_sample.txt"
