#!/usr/bin/env bash
# lora-teacher end to end on stories260K-hf: exit codes (0 ok, 1 runtime failure, 2 usage, 130
# interrupted), the summary and --json, no file left behind by a failed or interrupted run, the
# same bytes with 1 and 2 threads, lora-train's data options. The cached values themselves are
# checked against transformers in tests/test_tcache.c (same library path).
# Usage: cli_teacher.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
D=$SRC/tests/data/teacher/data.jsonl
G=$S/data/gsm8k/test.jsonl
. "$(dirname "$0")/lib_cli.sh"
L=$B/lora-teacher
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
none_left() { # no output and no temporary next to it
    if ls "$T" | grep -q "^$1"; then bad "$2: left $(ls "$T" | grep "^$1")"; else ok; fi
}

expect 0 "help" -- "$L" --help
has out "Usage: lora-teacher" "help text"
expect 0 "version" -- "$L" --version
expect 2 "bad option" -- "$L" --no-such-option
has err "Try 'lora-teacher --help'" "usage hint"
expect 2 "no top-k" -- "$L" -m "$M" --data "$D" -o "$T/x.tc"
expect 2 "top-k 0" -- "$L" -m "$M" --data "$D" --top-k 0 -o "$T/x.tc"
expect 2 "top-k = vocab" -- "$L" -m "$M" --data "$D" --top-k 512 -o "$T/x.tc"
has err "must be between 1 and 511" "top-k range names the vocabulary"
expect 2 "top-k over --vocab" -- "$L" -m "$M" --data "$D" --top-k 100 --vocab 100 -o "$T/x.tc"
expect 2 "vocab too big" -- "$L" -m "$M" --data "$D" --top-k 8 --vocab 513 -o "$T/x.tc"
expect 2 "temperature 0" -- "$L" -m "$M" --data "$D" --top-k 8 --kd-temp 0 -o "$T/x.tc"
expect 2 "seq-len 1" -- "$L" -m "$M" --data "$D" --top-k 8 --seq-len 1 -o "$T/x.tc"
expect 2 "bad chat template" -- "$L" -m "$M" --data "$D" --top-k 8 --chat-template nope -o "$T/x.tc"
has err "chatml" "chat template names the known ones"
expect 2 "bad quant" -- "$L" -m "$M" --data "$D" --top-k 8 --quant q5 -o "$T/x.tc"
expect 1 "missing model" -- "$L" -m "$T/nope" --data "$D" --top-k 8 -o "$T/x.tc"
has err "$T/nope/config.json" "missing model names the file"
expect 1 "missing data" -- "$L" -m "$M" --data "$T/nope.jsonl" --top-k 8 -o "$T/x.tc"
has err "$T/nope.jsonl" "missing data names the file"
: >"$T/blk" # a file where the output's folder would have to be
expect 1 "unwritable output" -- "$L" -m "$M" --data "$D" --top-k 8 -o "$T/blk/x.tc"
has err "$T/blk: not a folder (it would hold $T/blk/x.tc)" "unwritable output names the file"
expect 0 "output in folders still to be made" -- "$L" -m "$M" --data "$D" --top-k 8 \
    -o "$T/new/dir/x.tc"
[ -s "$T/new/dir/x.tc" ] && ok || bad "the cache in new folders was not written"
expect 1 "gsm8k without --fields" -- "$L" -m "$M" --data "$G" --top-k 8 -o "$T/x.tc"
has err "no known fields" "unusable data explained"
none_left x.tc "failed runs"

expect 0 "run" -- "$L" -m "$M" --data "$D" --top-k 8 --kd-temp 2 -o "$T/a.tc" -t 1
has out "7 examples, 323 tokens, 264 positions (top-8 at temperature 2 over 512 ids)" "summary"
has out "bytes/position" "summary size"
expect 1 "exists" -- "$L" -m "$M" --data "$D" --top-k 8 --kd-temp 2 -o "$T/a.tc"
has err "already exists" "no overwrite without --force"
expect 0 "json" -- "$L" -m "$M" --data "$D" --top-k 8 --kd-temp 2 -o "$T/b.tc" -t 2 --json -q
json version seed examples tokens positions bytes bytes_per_position seconds top_k temperature
has out '"examples":7,"tokens":323,"positions":264,"forward_tokens":297' "json counts"
size=$(stat -c %s "$T/b.tc")
has out "\"bytes\":$size," "json bytes = file size"
if cmp -s "$T/a.tc" "$T/b.tc"; then ok; else bad "1 and 2 threads wrote different caches"; fi
expect 0 "force, k 1, --vocab" -- "$L" -m "$M" --data "$D" --top-k 1 --vocab 300 -o "$T/a.tc" --force -q
if cmp -s "$T/a.tc" "$T/b.tc"; then bad "--force did not replace the file"; else ok; fi
if head -c 8 "$T/a.tc" | grep -q LKTCACHE; then ok; else bad "magic"; fi

# lora-train's data options: prompt masked (fewer positions than tokens), truncation
head -5 "$G" >"$T/g.jsonl"
expect 0 "fields" -- "$L" -m "$M" --data "$T/g.jsonl" --fields prompt=question,completion=answer \
    --top-k 4 --seq-len 160 -o "$T/g.tc" --json -q
has out '"examples":5,"tokens":777,"positions":213,' "prompts masked, examples cut to 160 tokens"

# Ctrl-C while the teacher runs: exit 130, nothing left (neither the output nor a temporary)
head -200 "$G" >"$T/g200.jsonl"
"$L" -m "$M" --data "$T/g200.jsonl" --fields prompt=question,completion=answer --top-k 8 \
    -o "$T/int.tc" -t 1 -q >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 600); do ls "$T" | grep -q "^int.tc.tmp" && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
if [ "$rc" = 130 ]; then ok; else bad "interrupt: exit $rc, expected 130"; fi
has err "interrupted" "interrupt message"
none_left int.tc "interrupted run"

echo "cli_teacher: $passes passed, $fails failed"
[ "$fails" = 0 ]
