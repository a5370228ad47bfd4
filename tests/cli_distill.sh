#!/usr/bin/env bash
# Distillation end to end on stories260K-hf with the sample whale-style data:
# - self-distillation: an NF4 (and a Q4_0) student trained against its own unquantised base
#   (--teacher self) lowers the held-out KL to that base by at least 30%;
# - a style teacher (an SFT adapter merged into the base) teaches a fresh NF4 student: its
#   held-out KL to the teacher falls and its loss on the style data closes most of the gap to the
#   teacher's;
# - lora-eval --teacher reports the KL, 0 for a model against itself;
# - usage errors (exit 2) and teachers that cannot teach (exit 1: other tokenizer, none).
# Usage: cli_distill.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
. "$SRC/tests/lib_cli.sh"
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
E=$SRC/samples/data/whale-test.jsonl
if [ ! -f "$M/model.safetensors" ]; then echo "SKIP: $M missing"; exit 77; fi

OPTS=(--seq-len 128 --batch 4 --lr 3e-3 -t 1 -q --force)
TRAIN=(--data "$D" "${OPTS[@]}")
val() { # val KEY: the number KEY of the JSON object on stdout
    sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$T/out" | tail -1
}
eval_kl() { # eval_kl TEACHER ARGS...: sets KL and LOSS from lora-eval --json
    local teacher=$1
    shift
    expect 0 "lora-eval --teacher $teacher $*" -- "$B/lora-eval" -m "$M" --data "$E" \
        --teacher "$teacher" --json -t 1 "$@"
    KL=$(val kl)
    LOSS=$(val loss)
}
less() { # less A B WHAT: A < B
    if awk "BEGIN { exit !($1 < $2) }"; then passes=$((passes + 1)); else
        echo "FAIL: $3 ($1 is not below $2)"; fails=$((fails + 1)); fi
}

# --- usage and setup errors ---
expect 2 "kd without teacher" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" --objective kd
has err "needs a teacher" "names the missing teacher"
expect 2 "teacher without objective" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" \
    --teacher self
has err "objective kd, rkl or jsd" "names the objectives"
expect 2 "two teachers" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" --objective kd \
    --teacher self --teacher-cache "$T/none.cache"
expect 2 "jsd beta with kd" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" --objective kd \
    --teacher self --jsd-beta 0.3
expect 2 "kd weight out of range" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" \
    --objective kd --teacher self --kd-weight 1.5
expect 2 "unknown objective" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" -o "$T/x" --objective dpo
expect 2 "eval teacher options alone" -- "$B/lora-eval" -m "$M" --data "$E" --teacher-quant nf4
mkdir -p "$T/notok"
cp "$M/config.json" "$M/model.safetensors" "$T/notok/"
expect 1 "teacher without tokenizer" -- "$B/lora-eval" -m "$M" --data "$E" --teacher "$T/notok"
has err "notok" "names the teacher folder"
mkdir -p "$T/othertok"
cp "$M"/* "$T/othertok/"
# swap two vocabulary entries: same size, another tokenizer
sed -i 's/"<0x41>": *68/"<0x41>": 69X/; s/"<0x42>": *69/"<0x42>": 68/; s/69X/69/' \
    "$T/othertok/tokenizer.json"
expect 1 "teacher with another tokenizer" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" \
    -o "$T/x" --objective kd --teacher "$T/othertok"
has err "tokenizers do not match" "says the tokenizers differ"
has err "token id 68" "names the first differing id"
[ ! -e "$T/x/adapter_model.safetensors" ] && passes=$((passes + 1)) ||
    { echo "FAIL: an adapter was written"; fails=$((fails + 1)); }

# --- lora-eval --teacher ---
eval_kl self
less "$KL" 1e-6 "a model's KL to itself"
eval_kl self --quant nf4
BASE_KL_NF4=$KL
less 0.02 "$KL" "NF4 is measurably away from the f32 base"

# --- self-distillation against quantisation loss ---
for q in nf4 q4_0; do
    eval_kl self --quant $q
    before=$KL
    expect 0 "self-distillation $q" -- "$B/lora-train" -m "$M" --quant $q "${TRAIN[@]}" --steps 20 \
        --objective kd --teacher self -o "$T/sd-$q"
    eval_kl self --quant $q -a "$T/sd-$q"
    echo "self-distillation $q: held-out KL to the f32 base $before -> $KL"
    less "$KL" "$(awk "BEGIN { print 0.7 * $before }")" "$q student: KL falls by 30% or more"
done

# --- the same from a top-k teacher cache (lora-teacher), only the student in memory ---
head -n 100 "$D" >"$T/small.jsonl"
expect 0 "lora-teacher" -- "$B/lora-teacher" -m "$M" --data "$T/small.jsonl" --top-k 32 \
    -o "$T/small.tc" -t 1 -q
one_step() { # one_step TEACHER-ARGS...: KD of the first step (fresh adapter: the plain NF4 model)
    expect 0 "one step $*" -- "$B/lora-train" -m "$M" --quant nf4 --data "$T/small.jsonl" \
        --seq-len 128 --batch 4 --steps 1 -t 1 -q --force --json --objective kd -o "$T/one" "$@"
    val kd
}
kd_full=$(one_step --teacher self)
kd_top=$(one_step --teacher-cache "$T/small.tc")
echo "first step's KL to the f32 base: full vocabulary $kd_full, top-32 cache $kd_top"
less "$kd_top" "$(awk "BEGIN { print $kd_full * 1.000001 }")" "buckets cannot exceed the full KL"
less "$(awk "BEGIN { print 0.95 * $kd_full }")" "$kd_top" "top-32 is within 5% of the full KL"
eval_kl self --quant nf4
before=$KL
expect 0 "self-distillation from the cache" -- "$B/lora-train" -m "$M" --quant nf4 \
    --data "$T/small.jsonl" --seq-len 128 --batch 4 --lr 3e-3 --steps 20 -t 1 -q --force \
    --objective kd --teacher-cache "$T/small.tc" -o "$T/sdc"
eval_kl self --quant nf4 -a "$T/sdc"
echo "self-distillation from the cache: held-out KL $before -> $KL"
less "$KL" "$(awk "BEGIN { print 0.7 * $before }")" "cache student: KL falls by 30% or more"
expect 1 "cache at another temperature" -- "$B/lora-train" -m "$M" --data "$T/small.jsonl" \
    "${OPTS[@]}" --steps 1 --objective kd --kd-temp 2 --teacher-cache "$T/small.tc" -o "$T/x"
has err "temperature 1" "names the cache's temperature"
expect 1 "cache of other data" -- "$B/lora-train" -m "$M" "${TRAIN[@]}" --steps 1 \
    --objective kd --teacher-cache "$T/small.tc" -o "$T/x"
has err "small.tc" "names the cache"
head -c 5000 "$T/small.tc" >"$T/cut.tc"
expect 1 "truncated cache" -- "$B/lora-train" -m "$M" --data "$T/small.jsonl" "${OPTS[@]}" \
    --steps 1 --objective kd --teacher-cache "$T/cut.tc" -o "$T/x"
has err "cut.tc" "names the truncated cache"

# --- a style teacher teaches a fresh student ---
expect 0 "SFT for the teacher" -- "$B/lora-train" -m "$M" --quant none "${TRAIN[@]}" --steps 30 -o "$T/sft"
expect 0 "merge the teacher" -- "$B/lora-merge" -m "$M" -a "$T/sft" -o "$T/teacher" --force
expect 0 "teacher's own loss" -- "$B/lora-eval" -m "$T/teacher" --data "$E" --json
TEACHER_LOSS=$(val loss)
eval_kl "$T/teacher" --quant nf4
kl0=$KL loss0=$LOSS
expect 0 "distil the style" -- "$B/lora-train" -m "$M" --quant nf4 "${TRAIN[@]}" \
    --steps 30 --objective kd --teacher "$T/teacher" --json -o "$T/kd"
has out '"kd":' "step lines carry the divergence"
eval_kl "$T/teacher" --quant nf4 -a "$T/kd"
echo "style teacher: KL $kl0 -> $KL; loss $loss0 -> $LOSS (teacher $TEACHER_LOSS)"
less "$KL" "$(awk "BEGIN { print 0.3 * $kl0 }")" "student's KL to the teacher falls"
less "$(awk "BEGIN { print $LOSS - $TEACHER_LOSS }")" \
    "$(awk "BEGIN { print 0.3 * ($loss0 - $TEACHER_LOSS) }")" "student's loss nears the teacher's"
# the other objectives and mixing run and learn too
for o in "rkl" "jsd --jsd-beta 0.3" "kd --kd-temp 2 --kd-weight 0.5"; do
    # shellcheck disable=SC2086
    expect 0 "objective $o" -- "$B/lora-train" -m "$M" --quant nf4 "${TRAIN[@]}" --steps 6 \
        --objective $o --teacher "$T/teacher" --eval-data "$E" --json -o "$T/o"
    has out '"eval_kl":' "eval reports the KL to the teacher"
    less "$(val eval_kl)" "$kl0" "objective $o lowers the KL"
done

echo "cli_distill: $passes passed, $fails failed"
[ "$fails" = 0 ]
