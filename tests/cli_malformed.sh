#!/usr/bin/env bash
# Hostile files through the tools a user would run on them: every case of
# tests/data/malformed/MANIFEST.tsv (made by tests/gen/gen_malformed.py) must end with its exit
# code, and on failure with one message on stderr that names the file (the case's name) and the
# problem (the manifest's text), with no sanitizer report (the suite runs again under ASan+UBSan).
# Then what no file can make lorakit do: read a path an adapter or index names, or a file larger
# than a format allows.
# Usage: cli_malformed.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$SRC/tests/data/malformed
STORIES=$S/models/stories260K-hf
DATA=$SRC/tests/data/tok/ds/text.jsonl
. "$(dirname "$0")/lib_cli.sh"
hasf() { # hasf FILE TEXT DESCRIPTION: like has, for a fixed string
    if grep -q -F -- "$2" "$T/$1"; then passes=$((passes + 1)); else
        echo "FAIL: $3: '$2' not in $1"; sed 's/^/  /' "$T/$1" | head -5; fails=$((fails + 1)); fi
}

n=0
while IFS= read -r line; do
    case $line in '#'* | '') continue ;; esac
    name=$(cut -f1 <<<"$line") code=$(cut -f2 <<<"$line") msg=$(cut -f3 <<<"$line")
    cmd=$(cut -f4 <<<"$line")
    C=$M/$name
    rm -rf "$T/run"
    eval "set -- $cmd"
    tool=$1
    shift
    expect "$code" "$name: $tool" -- "$B/$tool" "$@"
    [ -n "$msg" ] && hasf err "$msg" "$name: the problem"
    [ "$code" != 0 ] && hasf err "$M/$name" "$name: the message names the file"
    if grep -q -E 'Sanitizer|runtime error:' "$T/err"; then
        echo "FAIL: $name: sanitizer report"
        fails=$((fails + 1))
    fi
    n=$((n + 1))
done <"$M/MANIFEST.tsv"
[ "$n" -ge 60 ] || { echo "FAIL: only $n manifest cases ran"; fails=$((fails + 1)); }

# A file over a format's size limit is refused before it is read (config.json: 1 MiB).
mkdir -p "$T/huge"
{ printf '{"pad": "'; head -c 1100000 /dev/zero | tr '\0' x; printf '"}'; } >"$T/huge/config.json"
expect 1 "huge config.json" -- "$B/lora-eval" -m "$T/huge" --ids 1,2
hasf err "huge/config.json: file is 1100011 bytes, more than the 1048576 allowed" "size limit"

# base_model_name_or_path is shown, never opened: no -m, no base norms, and no tool takes the
# base from it (lora-eval still needs -m).
expect 0 "base path not followed" -- "$B/lora-inspect" "$M/adapter-base-path"
hasf out "base model ../../models/qwen2-tiny" "base path shown as text"
if grep -q -F '|dW|/|W|' "$T/out"; then
    echo "FAIL: lora-inspect used the base named inside the adapter"
    fails=$((fails + 1))
fi
expect 0 "absolute base path not followed" -- "$B/lora-inspect" "$M/adapter-base-abs-path"
expect 2 "lora-eval needs -m" -- "$B/lora-eval" -a "$M/adapter-ok" --ids 1,2

# Symlinked files inside a model folder are followed (Hugging Face cache snapshots are links
# into ../../blobs); names read from files are not (index-* above).
mkdir -p "$T/snap"
ln -s "$M/model-ok/model.safetensors" "$T/snap/model.safetensors"
ln -s "$M/model-ok/config.json" "$T/snap/config.json"
expect 0 "symlinked model files" -- "$B/lora-eval" -m "$T/snap" --ids 1,2,3

# Side files copied into an output (lora-merge, lora-quantize copy tokenizer files and the like)
# may not bring in a file from elsewhere through a symlink; a Hugging Face cache snapshot, whose
# files are links into ../../blobs, is fine.
mkdir -p "$T/leak"
cp "$M/model-ok/config.json" "$M/model-ok/model.safetensors" "$T/leak/"
echo "private key" >"$T/secret"
ln -s "$T/secret" "$T/leak/notes.txt"
expect 1 "symlink out of the folder" -- "$B/lora-quantize" -m "$T/leak" --type nf4 -o "$T/q1" -q
hasf err "leak/notes.txt: a symlink to $T/secret, outside the model folder" "link refused"
[ -e "$T/q1" ] && { echo "FAIL: output left behind"; fails=$((fails + 1)); }
hub=$T/hub/models--org--micro
mkdir -p "$hub/blobs" "$hub/snapshots/abc"
for f in config.json model.safetensors; do
    cp "$M/model-ok/$f" "$hub/blobs/$f.blob"
    ln -s "../../blobs/$f.blob" "$hub/snapshots/abc/$f"
done
echo '{"note": 1}' >"$hub/blobs/gen.blob"
ln -s ../../blobs/gen.blob "$hub/snapshots/abc/generation_config.json"
expect 0 "HF cache snapshot" -- "$B/lora-quantize" -m "$hub/snapshots/abc" --type nf4 -o "$T/q2" -q
cmp -s "$hub/blobs/gen.blob" "$T/q2/generation_config.json" && passes=$((passes + 1)) ||
    { echo "FAIL: side file of a cache snapshot not copied"; fails=$((fails + 1)); }

echo "cli_malformed: $passes passed, $fails failed ($n manifest cases)"
[ "$fails" -eq 0 ]
