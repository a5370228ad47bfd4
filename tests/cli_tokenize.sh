#!/usr/bin/env bash
# cli_tokenize.sh — end-to-end checks of lora-tokenize: ids for known text, --json, --decode,
# --ids, --chat, a folder with only tokenizer files, a GGUF file's tokenizer, usage errors (exit 2)
# and bad folders or files (exit 1).
# Usage: bash tests/cli_tokenize.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
build=$1 shared=$2 src=$3
tool="$build/lora-tokenize"
qwen="$shared/models/qwen2.5-tokenizer"
fails=0
check() { # check NAME EXPECTED_RC CMD... ; output in $out
    local name=$1 want=$2
    shift 2
    out=$("$@" 2>/tmp/cli_tok_err.$$)
    local rc=$?
    if [ "$rc" != "$want" ]; then
        echo "FAIL $name: exit $rc, expected $want; stderr: $(cat /tmp/cli_tok_err.$$)"
        fails=$((fails + 1))
        return 1
    fi
    echo "ok   $name"
}
expect() { # expect NAME WANT ; compares $out
    if [ "$out" != "$2" ]; then
        echo "FAIL $1: got '$out', expected '$2'"
        fails=$((fails + 1))
    fi
}

check help 0 "$tool" --help
echo "$out" | grep -q -- '--chat-template' || { echo "FAIL help text"; fails=$((fails + 1)); }
check version 0 "$tool" --version
check no-args 2 "$tool"
check two-sources 2 "$tool" -m "$qwen" --text a --ids 1
check bad-ids 2 "$tool" -m "$qwen" --ids 1,x
check bad-template 2 "$tool" -m "$qwen" --text a --chat-template vicuna
if [ ! -f "$qwen/tokenizer.json" ]; then
    echo "SKIP: $qwen missing"
    exit 0
fi
# qwen2.5-tokenizer holds only tokenizer files (no config.json, no weights)
check text 0 "$tool" -m "$qwen" --text "Hello world" && expect text-ids "9707 1879"
check json 0 "$tool" -m "$qwen" --text "Hello world" --json
expect json '{"version":"'"$("$tool" --version | awk '{print $3}')"'","seed":42,"n_tokens":2,"ids":[9707,1879]}'
if command -v python3 >/dev/null; then
    check json-decode 0 "$tool" -m "$qwen" --text $'tab\there "quoted" \\ 你好' --decode --json
    echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["decoded"] == "tab\there \"quoted\" \\ 你好", d' ||
        { echo "FAIL json-decode: $out"; fails=$((fails + 1)); }
fi
check decode 0 "$tool" -m "$qwen" --text "round trip" --decode
grep -q "round trip ok" /tmp/cli_tok_err.$$ || { echo "FAIL decode: no round trip ok"; fails=$((fails + 1)); }
check ids 0 "$tool" -m "$qwen" --ids 9707,1879 && expect ids-text $'9707 1879\nHello world'
printf 'file\ninput' > /tmp/cli_tok_in.$$
check file 0 "$tool" -m "$qwen" --file /tmp/cli_tok_in.$$ && expect file-ids "1192 198 1355"
# ids from HF tokenizers 0.23.3 for the ChatML text
check chat 0 "$tool" -m "$qwen" --text "Hi" --chat --decode
expect chat $'151644 8948 198 2610 525 1207 16948 11 3465 553 54364 14817 13 1446 525 264 10950 17847 13 151645 198 151644 872 198 13048 151645 198 151644 77091 198\n<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant'
llama2="$shared/models/llama2-tokenizer"
check bos 0 "$tool" -m "$llama2" --text "Hello world" && expect bos-ids "1 15043 3186"
check no-special 0 "$tool" -m "$llama2" --text "Hello world" --no-special && expect ns "15043 3186"
check no-template 1 "$tool" -m "$llama2" --text "Hi" --chat
grep -q -- "--chat-template" /tmp/cli_tok_err.$$ || { echo "FAIL no-template hint"; fails=$((fails + 1)); }
# "<s>" is a normalized token in Llama-2's tokenizer.json, so "[" gets no "▁" (HF agrees)
check chat-named 0 "$tool" -m "$llama2" --text "Hi" --chat-template llama2 && expect chat-named "1 29961 25580 29962 6324 518 29914 25580 29962"
# a GGUF file's own tokenizer: ids as llama.cpp's llama-tokenize gives them, and the chat template
# from its metadata (ids of transformers' apply_chat_template on the same GGUF)
smol="$shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$smol" ]; then
    check gguf 0 "$tool" -m "$smol" --text "Hello world<|im_start|> 123" --decode &&
        expect gguf-ids $'19556 905 1 216 33 34 35\nHello world<|im_start|> 123'
    check gguf-chat 0 "$tool" -m "$smol" --text "What is the capital of France?" --chat
    expect gguf-chat "1 9690 198 2683 359 253 5356 5646 11173 3365 3511 308 34519 28 7018 411 407 19712 8182 2 198 1 4093 198 1780 314 260 3575 282 4649 47 2 198 1 520 9531 198"
fi
check gguf-missing 1 "$tool" -m /nonexistent/model.gguf --text a
grep -q "/nonexistent/model.gguf" /tmp/cli_tok_err.$$ || { echo "FAIL gguf-missing message"; fails=$((fails + 1)); }
check bench 0 "$tool" -m "$qwen" --file /tmp/cli_tok_in.$$ --bench 3 --json
# --data: a dataset as training loads it
ds="$src/tests/data/tok/ds"
check data 0 "$tool" -m "$qwen" --data "$ds/messages.jsonl" --show 1 -q
echo "$out" | grep -q '^examples 4 (bad 0)' || { echo "FAIL data summary: $out"; fails=$((fails + 1)); }
echo "$out" | grep -q '^\[\[Hello! How can I help?<|im_end|>\]\]$' ||
    { echo "FAIL data show: $out"; fails=$((fails + 1)); }
check data-bad 0 "$tool" -m "$qwen" --data "$ds/bad.jsonl" --json -q
if command -v python3 >/dev/null; then
    echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["examples"] == 2 and d["bad"] == 10 and d["bad_examples"][0]["line"] == 2, d' ||
        { echo "FAIL data-bad json: $out"; fails=$((fails + 1)); }
fi
check data-strict 1 "$tool" -m "$qwen" --data "$ds/bad.jsonl" --strict
grep -q "line 2: invalid JSON" /tmp/cli_tok_err.$$ || { echo "FAIL strict message"; fails=$((fails + 1)); }
check data-fields 0 "$tool" -m "$qwen" --data "$ds/fields.jsonl" --fields prompt=question,completion=answer -q
check data-no-fields 1 "$tool" -m "$qwen" --data "$ds/fields.jsonl"
grep -q -- "--fields" /tmp/cli_tok_err.$$ || { echo "FAIL no-fields hint"; fails=$((fails + 1)); }
check data-no-template 1 "$tool" -m "$llama2" --data "$ds/messages.jsonl"
check data-named-template 0 "$tool" -m "$llama2" --data "$ds/alpaca.jsonl" --chat-template alpaca -q
check seed-without-data 2 "$tool" -m "$qwen" --text a --seed 3
check bad-seq-len 2 "$tool" -m "$qwen" --data "$ds/text.jsonl" --seq-len 0
# bad folders: exit 1 with the file named
check missing 1 "$tool" -m /nonexistent --text a
grep -q "tokenizer.json" /tmp/cli_tok_err.$$ || { echo "FAIL missing: message"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}' > "$tmp/tokenizer.json"
check corrupt 1 "$tool" -m "$tmp" --text a
grep -q "merges\[0\]" /tmp/cli_tok_err.$$ || { echo "FAIL corrupt: $(cat /tmp/cli_tok_err.$$)"; fails=$((fails + 1)); }
rm -rf "$tmp" /tmp/cli_tok_err.$$ /tmp/cli_tok_in.$$
echo "$fails failures"
[ "$fails" = 0 ]
