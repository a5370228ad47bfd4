#!/usr/bin/env bash
# lorakit quickstart: install what is missing, build, then teach a real instruct model a new
# identity with LoRA on its 4-bit base. SmolLM2-135M-Instruct (the llama.cpp GGUF in ../shared,
# Q4_1) believes it is "SmolLM by Hugging Face"; after training on LLaMA-Factory's identity set
# with the name Pico and the author Lorakit Labs filled in (samples/data/identity-train.jsonl, 12
# chats, from samples/make_identity_data.py) it answers four held-out questions it never saw as
# Pico. Shown: its answers before and after (lora-generate --chat) and a measured score before and
# after (lora-eval --generate: the share of held-out replies that name Pico). A few minutes on 2
# cores once built (README.md, "Your first hour", explains the outputs).
# Usage (as root on Debian 12, from the repository root): bash samples/quickstart.sh
# LK_QUICKSTART_MODEL=DIR runs it on a Hugging Face folder of the model instead (quantised to Q4_0
# at load), e.g. the f32 form of SmolLM2-135M-Instruct.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${LK_SHARED:-$here/../shared}
model=${LK_QUICKSTART_MODEL:-$shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf}
data=$here/samples/data
out=$here/build/quickstart-adapter
threads=${LK_THREADS:-2}
bash "$here/.ci/deps.sh"
bash "$here/.ci/build.sh" build >/dev/null
bin=$here/build
base=(-m "$model" -t "$threads") # a GGUF file is used as its tensors lie; a folder is quantised
[ -d "$model" ] && base+=(--quant q4_0)
questions=("Who are you?" "What is your name?")
score=(--data "$data/identity-test.jsonl" --generate --match '\bPico\b' -n 24)

echo "== before: the base model answers two of the held-out questions (greedy, chat template)"
for q in "${questions[@]}"; do
    echo "> $q"
    "$bin/lora-generate" "${base[@]}" --chat -p "$q" --temp 0 -n 24 -q
done
echo "== before: how many of the 4 held-out replies name Pico"
"$bin/lora-eval" "${base[@]}" "${score[@]}" -q

echo "== train a LoRA adapter (rank 8, all seven projections) on the 4-bit base: 18 steps of"
echo "   256 tokens (6 passes over the 12 chats), learning rate 3e-3 falling on a cosine"
"$bin/lora-train" "${base[@]}" --data "$data/identity-train.jsonl" -o "$out" --force \
    --steps 18 --seq-len 256 --rank 8 --lr 3e-3 --schedule cosine

echo "== after: the same questions, the adapter applied (on the base it was trained on)"
for q in "${questions[@]}"; do
    echo "> $q"
    "$bin/lora-generate" "${base[@]}" -a "$out" --chat -p "$q" --temp 0 -n 24 -q
done
echo "== after: the score on the held-out questions (-v shows each prompt, reply and reference)"
"$bin/lora-eval" "${base[@]}" -a "$out" "${score[@]}" -q
echo "== a conversation with the adapter: two turns on stdin (lora-generate --interactive)"
printf 'Hi! Who made you?\nAnd what should I call you?\n' |
    "$bin/lora-generate" "${base[@]}" -a "$out" --interactive --temp 0 -n 24 -q
