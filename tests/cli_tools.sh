#!/usr/bin/env bash
# End-to-end checks of the command-line tools: exit codes (0 ok, 1 runtime failure, 2 usage),
# --help/--version, --json output that parses, errors that name the file.
# Usage: cli_tools.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
. "$(dirname "$0")/lib_cli.sh"

for tool in lora-eval lora-generate lora-random-model lora-bench; do
    expect 0 "$tool --help" -- "$B/$tool" --help
    has out "Usage: $tool" "$tool --help"
    expect 0 "$tool --version" -- "$B/$tool" --version
    has out "lorakit" "$tool --version"
    expect 2 "$tool bad option" -- "$B/$tool" --no-such-option
    has err "Try '$tool --help'" "$tool usage error"
done

# lora-eval: ids, json, errors
expect 0 "eval ids" -- "$B/lora-eval" -m "$M" --ids 1,403,407,261,378,432
has out "perplexity" "eval output"
expect 0 "eval json" -- "$B/lora-eval" -m "$M" --ids 1,403,407,261,378,432 --json -t 1
json version seed loss perplexity tokens
expect 1 "eval missing model" -- "$B/lora-eval" -m "$T/nope" --ids 1,2
has err "$T/nope/config.json" "missing model names the file"
expect 1 "eval id out of range" -- "$B/lora-eval" -m "$M" --ids 1,9999
has err "outside the vocabulary" "id range message"
expect 2 "eval bad ids" -- "$B/lora-eval" -m "$M" --ids 1,x
expect 2 "eval bad seed" -- "$B/lora-eval" -m "$M" --ids 1,2 --seed -3

# lora-eval on text: the sample's perplexity is Hugging Face's (transformers 4.46.3 gives loss
# 1.822315 over the same 1882 predictions with 512-token windows)
expect 0 "eval data text" -- "$B/lora-eval" -m "$M" --data "$S/data/tinystories/tinystories_sample.txt" --ctx 512 --json
json loss perplexity tokens
has out '"loss":1.8223' "tinystories loss"
has out '"tokens":1882' "tinystories token count"
expect 0 "eval text" -- "$B/lora-eval" -m "$M" --text "Once upon a time, there was a little girl named Lily."
printf '%s\n' '{"prompt":"Once upon a time,","completion":" there was a little girl."}' \
    '{"text":"Lily saw a big red ball."}' >"$T/d.jsonl"
expect 0 "eval jsonl" -- "$B/lora-eval" -m "$M" --data "$T/d.jsonl" --json
json loss examples
has out '"examples":2' "jsonl examples"
expect 2 "eval two inputs" -- "$B/lora-eval" -m "$M" --text a --ids 1,2
expect 1 "eval missing data" -- "$B/lora-eval" -m "$M" --data "$T/none.txt"
has err "none.txt" "missing data names the file"

# lora-generate: Karpathy's documented greedy story opening
expect 0 "generate text" -- "$B/lora-generate" -m "$M" -p "Once upon a time" --temp 0 -n 20
has out "Once upon a time, there was a little girl named Lily" "greedy text"
expect 0 "generate text json" -- "$B/lora-generate" -m "$M" -p "Lily and Tom" --temp 0 -n 5 --json
json text ids prompt_ids
expect 1 "generate chat without template" -- "$B/lora-generate" -m "$M" -p "Hi" --chat -n 2
has err "chat-template" "chat hint"
expect 0 "generate chat alpaca" -- "$B/lora-generate" -m "$M" -p "Tell a story" --chat --chat-template alpaca -n 5 --temp 0
expect 0 "generate greedy" -- "$B/lora-generate" -m "$M" --ids 1 --temp 0 -n 12 --json
json version seed ids prompt_ids
has out '"ids":\[403,407,261,378,432,383,286,261,376,298,315,421\]' "greedy tokens"
expect 0 "generate sampled" -- "$B/lora-generate" -m "$M" --ids 1 --temp 0.9 --top-p 0.9 -n 20 --seed 7 --json
cp "$T/out" "$T/s1"
expect 0 "generate sampled again" -- "$B/lora-generate" -m "$M" --ids 1 --temp 0.9 --top-p 0.9 -n 20 --seed 7 --json
if cmp -s "$T/out" "$T/s1"; then passes=$((passes + 1)); else echo "FAIL: same seed, different sample"; fails=$((fails + 1)); fi

# lora-random-model: writes a loadable folder, refuses to overwrite
expect 0 "random model" -- "$B/lora-random-model" -c "$SRC/tests/data/models/qwen2-tiny/config.json" -o "$T/rand" --dtype f32 --json
json version seed out
expect 0 "eval random model" -- "$B/lora-eval" -m "$T/rand" --ids 1,2,3,4
expect 1 "random model exists" -- "$B/lora-random-model" -c "$SRC/tests/data/models/qwen2-tiny" -o "$T/rand"
has err "already exists" "no overwrite"
expect 2 "random model dtype" -- "$B/lora-random-model" -c "$SRC/tests/data/models/qwen2-tiny" -o "$T/r2" --dtype f8
ls "$T" | grep -q tmp && { echo "FAIL: temporary left behind"; fails=$((fails + 1)); }

# lora-bench
expect 0 "bench" -- "$B/lora-bench" -m "$M" --tokens 16 --repeat 1 --decode 2 --json
json prefill_tokens_per_s decode_tokens_per_s peak_rss_mib

echo "cli_tools: $passes passed, $fails failed"
[ "$fails" = 0 ]
