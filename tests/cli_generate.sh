#!/usr/bin/env bash
# Chat replies and scored answers: lora-generate --chat / --system / --interactive (the reply
# alone, the stop at the template's end-of-turn token, the conversation kept and its KV cache
# reused) and lora-eval --generate (exact match after whitespace normalisation, --match, --json,
# --eval-max), with their usage errors. The model: stories260K-hf with the Llama-2 chat template
# of tests/data/models/stories-chat, whose tokenizer names <s> its EOS: stories260K ends a story
# with <s>, so the template's end-of-turn is a token the model really emits.
# Usage: cli_generate.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
. "$(dirname "$0")/lib_cli.sh"

C=$T/chat # the model's files linked, the template's tokenizer_config.json copied
mkdir -p "$C"
for f in config.json model.safetensors tokenizer.json; do ln -s "$(cd "$M" && pwd)/$f" "$C/$f"; done
cp "$SRC/tests/data/models/stories-chat/tokenizer_config.json" "$C/"
G="$B/lora-generate"
E="$B/lora-eval"

# --chat: the reply alone, greedy, ended by <s> long before -n 200 (the plain continuation goes
# on with "<s> Once upon a time")
expect 0 "chat reply" -- "$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 200 -t 1
head -c 18 "$T/out" >"$T/first"
has first "^was a small bird\." "reply starts where the assistant turn starts"
has out 'Thank you, Lily!"$' "reply ends before the end-of-turn token"
if grep -q "INST\|Once upon\|<s>" "$T/out"; then
    echo "FAIL: chat reply holds the template or text past the end of the turn"
    fails=$((fails + 1))
else passes=$((passes + 1)); fi
cp "$T/out" "$T/reply"
expect 0 "chat reply again" -- "$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 200 -t 1
if cmp -s "$T/out" "$T/reply"; then passes=$((passes + 1)); else
    echo "FAIL: greedy chat reply differs between runs"; fails=$((fails + 1)); fi
expect 0 "chat reply capped" -- "$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 5 -t 1
has out "^was a small$" "-n caps the reply"

# -v: the rendered prompt, then the reply; --system as the template's <<SYS>> block
expect 0 "chat verbose" -- "$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 5 -v -t 1
has out "^<s>\[INST\] Tell me a story \[/INST\]was a small$" "rendered prompt with -v"
expect 0 "chat system" -- "$G" -m "$C" -p "hi" --chat --system "Be brief." --temp 0 -n 2 -v -t 1
has out "^<s>\[INST\] <<SYS>>$" "system block"
has out "^Be brief\.$" "system text"
expect 0 "chat json" -- "$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 5 --json -t 1
json version seed prompt reply
has out '"reply":"was a small"' "json reply"
has out '"prompt":"<s>\[INST\] Tell me a story \[/INST\]"' "json prompt"

# --interactive: two turns on stdin, the second rendered after the first reply, the cache reused
printf 'Tell me a story\n\nAnd then?\n' >"$T/turns"
expect 0 "interactive" -- sh -c "'$G' -m '$C' --interactive --temp 0 -n 60 --json -v -t 1 <'$T/turns'"
json prompt reply
if [ "$(grep -c '"reply"' "$T/out")" = 2 ]; then passes=$((passes + 1)); else
    echo "FAIL: interactive: expected 2 replies (the empty line is no turn)"; fails=$((fails + 1)); fi
has out '"prompt":"<s>\[INST\] Tell me a story \[/INST\] was a small bird\..*<s><s>\[INST\] And then? \[/INST\]"' "second turn after the first reply"
has err "83 of the prompt's 108 tokens already in the cache" "KV cache reused on the second turn"
expect 0 "interactive text" -- sh -c "printf 'Tell me a story\n' | '$G' -m '$C' --interactive --temp 0 -n 5 -t 1"
has out "^was a small$" "interactive reply"

# usage errors (2) and a template without a system role (1)
expect 2 "interactive with prompt" -- "$G" -m "$C" --interactive -p hi
expect 2 "system without chat" -- "$G" -m "$C" -p hi --system x
expect 2 "ignore-eos with chat" -- "$G" -m "$C" -p hi --chat --ignore-eos
expect 2 "chat-template without chat" -- "$G" -m "$C" -p hi --chat-template llama2
expect 2 "negative -n" -- "$G" -m "$C" -p hi --chat -n -1
expect 1 "system on mistral" -- "$G" -m "$C" -p hi --chat --chat-template mistral --system x -n 1
has err "no system role" "mistral system message"
printf 'Tell me a story\n' >"$T/long"
for i in $(seq 300); do printf 'a big dog ' >>"$T/long"; done
echo >>"$T/long"
expect 1 "interactive past the context" -- sh -c "'$G' -m '$C' --interactive --temp 0 -n 8 -t 1 <'$T/long'"
has err "the model's context holds 512" "context overflow message"
has out "^was a small bird$" "the turn before it answered"
expect 1 "interactive without template" -- sh -c "echo hi | '$G' -m '$M' --interactive -n 1"
has err "chat-template" "template hint"

# lora-eval --generate: the greedy reply as the reference scores 1/1, with its whitespace
# changed too; another reference 0/1; --match on the reply
"$G" -m "$C" -p "Tell me a story" --chat --temp 0 -n 200 --json -t 1 >"$T/one.json"
reply=$(sed -n 's/.*"reply":\(".*"\)}$/\1/p' "$T/one.json")
q='{"role":"user","content":"Tell me a story"}'
printf '{"messages":[%s,{"role":"assistant","content":%s}]}\n' "$q" "$reply" >"$T/same.jsonl"
spaced=$(printf '%s' "$reply" | sed 's/^"/"  /; s/\. /.   /g; s/\\n/ \\t /g')
printf '{"messages":[%s,{"role":"assistant","content":%s}]}\n' "$q" "$spaced" >"$T/spaced.jsonl"
printf '{"messages":[%s,{"role":"assistant","content":"was a small bird."}]}\n' "$q" >"$T/other.jsonl"
expect 0 "eval generate exact" -- "$E" -m "$C" --data "$T/same.jsonl" --generate -n 200 -t 1
has out "accuracy 1/1 (100.0%)" "reference = greedy reply scores 1/1"
expect 0 "eval generate whitespace" -- "$E" -m "$C" --data "$T/spaced.jsonl" --generate -n 200 -t 1
has out "accuracy 1/1" "whitespace runs and ends do not count"
expect 0 "eval generate other" -- "$E" -m "$C" --data "$T/other.jsonl" --generate -n 200 -t 1
has out "accuracy 0/1 (0.0%)" "another reference scores 0/1"
expect 0 "eval generate match" -- "$E" -m "$C" --data "$T/other.jsonl" --generate --match 'Thank you, L[a-z]+!' -n 200 -t 1
has out "accuracy 1/1" "--match on the reply"
expect 0 "eval generate no match" -- "$E" -m "$C" --data "$T/same.jsonl" --generate --match '^Once' -n 200 -t 1
has out "accuracy 0/1" "--match that fails"
expect 0 "eval generate verbose" -- "$E" -m "$C" --data "$T/other.jsonl" --generate -v -n 200 -t 1
has out "^--- example 1 (line 1): wrong$" "verdict per example"
has out "^reference: was a small bird\.$" "reference per example"
has out "^<s>\[INST\] Tell me a story \[/INST\]$" "prompt per example"
cat "$T/same.jsonl" "$T/other.jsonl" "$T/other.jsonl" >"$T/three.jsonl"
expect 0 "eval generate json" -- "$E" -m "$C" --data "$T/three.jsonl" --generate --json -n 200 -t 1
json version model examples correct accuracy match max_new_tokens results
has out '"examples":3,"correct":1,' "json counts"
has out '"match":null' "json: exact match"
has out '"results":\[{"line":1,"prompt":"<s>\[INST\] Tell me a story \[/INST\]","reply":"was a small bird\.' "json per example"
has out '"reference":"was a small bird\.","correct":false' "json reference and verdict"
expect 0 "eval generate sample" -- "$E" -m "$C" --data "$T/three.jsonl" --generate --eval-max 2 -n 4 --json -t 1
has out '"examples":2,' "--eval-max answers that many"
has out '"max_new_tokens":4,' "-n in json"
has out '"reply_tokens":4' "-n caps the reply"

# their errors: usage (2), an example with nothing to compare (1, its line)
expect 2 "eval bad pattern" -- "$E" -m "$C" --data "$T/same.jsonl" --generate --match '('
has err "\-\-match: '(' is not a valid pattern" "pattern error"
expect 2 "eval generate without data" -- "$E" -m "$C" --text hi --generate
expect 2 "eval match without generate" -- "$E" -m "$C" --data "$T/same.jsonl" --match x
expect 2 "eval generate with teacher" -- "$E" -m "$C" --data "$T/same.jsonl" --generate --teacher self
expect 2 "eval bad eval-max" -- "$E" -m "$C" --data "$T/same.jsonl" --generate --eval-max 0
printf '{"text":"Once upon a time"}\n' >"$T/text.jsonl"
cat "$T/same.jsonl" "$T/text.jsonl" >"$T/mixed.jsonl"
expect 1 "eval generate no reply" -- "$E" -m "$C" --data "$T/mixed.jsonl" --generate -n 2 -t 1
has err "line 2: no prompt before the reply" "example without a prompt"

echo "cli_generate: $passes passed, $fails failed"
[ "$fails" = 0 ]
