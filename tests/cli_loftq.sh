#!/usr/bin/env bash
# lora-train --init loftq on stories260K-hf: usage errors (exit 2), the summary on stderr and the
# "loftq" JSON line (one entry per module, reductions in (0, 1)), and the adapter it writes after
# one step at a negligible learning rate: with it, lora-eval's held-out loss of the NF4 and Q4_0
# bases moves towards the f32 model's.
# Usage: cli_loftq.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$1 S=$2 SRC=$3
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
E=$SRC/samples/data/whale-test.jsonl
. "$(dirname "$0")/lib_cli.sh"
ok() { # ok DESCRIPTION -- test...
    local what=$1
    shift 2
    if "$@"; then passes=$((passes + 1)); else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
loss() { sed -n 's/.*"loss":\([-0-9.e]*\).*/\1/p' "$T/out"; }
kl() { sed -n 's/.*"kl":\([-0-9.e]*\).*/\1/p' "$T/out"; }
# closer A B REF: |A - REF| < |B - REF|
closer() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { da = a - r; db = b - r;
    if (da < 0) da = -da; if (db < 0) db = -db; exit !(da < db) }'; }

OPTS=(--data "$D" --seq-len 128 --rank 8 --alpha 16 --steps 1 --lr 1e-9 -t 1)
COMMON=(-m "$M" "${OPTS[@]}")

expect 0 "help" -- "$B/lora-train" --help
has out "--init=peft|loftq" "help names --init"
expect 2 "bad --init" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --init svd
has err "peft or loftq" "bad --init message"
expect 2 "loftq on f32" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --init loftq --quant none
has err "needs a quantised base" "f32 message"
expect 2 "loftq with --init-adapter" -- "$B/lora-train" "${COMMON[@]}" -o "$T/x" --init loftq \
    --init-adapter "$SRC/tests/data/lora/init"
has err "exclude each other" "--init-adapter message"
expect 1 "loftq on a pre-quantised base" -- "$B/lora-train" -m "$SRC/tests/data/bnb/stories260K-nf4-dq" \
    "${OPTS[@]}" -o "$T/x" --init loftq
has err "full-precision weight" "pre-quantised message"
[ ! -e "$T/x/adapter_model.safetensors" ] && ok "no adapter after errors" -- true ||
    ok "no adapter after errors" -- false

expect 0 "eval f32" -- "$B/lora-eval" -m "$M" --quant none --data "$E" -t 1 --json
ref=$(loss)
for q in nf4 q4_0; do
    expect 0 "train $q loftq" -- "$B/lora-train" "${COMMON[@]}" -o "$T/$q" --quant $q --init loftq \
        --json
    has err "LoftQ start (rank 8, one iteration)" "$q summary line"
    has err "loftq: layer 4," "$q per-layer lines"
    grep '"type":"loftq"' "$T/out" >"$T/lq.json"
    ok "$q loftq json" -- "$B/jsoncheck" version seed rank modules mean_reduction total_reduction \
        init_s <"$T/lq.json"
    ok "$q 35 modules" -- test "$(grep -o '"reduction":' "$T/lq.json" | wc -l)" = 35
    ok "$q reductions in (0, 1)" -- awk -v RS=',' -F: '/"reduction"/ {
        if (!($2 > 0 && $2 < 1)) bad = 1 } END { exit bad }' "$T/lq.json"
    ok "$q adapter written" -- test -s "$T/$q/adapter_model.safetensors"
    expect 0 "eval $q" -- "$B/lora-eval" -m "$M" --quant $q --data "$E" -t 1 --json --teacher self
    base=$(loss) base_kl=$(kl)
    expect 0 "eval $q + loftq" -- "$B/lora-eval" -m "$M" --quant $q --data "$E" -a "$T/$q" -t 1 \
        --json --teacher self
    lq=$(loss) lq_kl=$(kl)
    ok "$q + loftq ($lq) closer to f32 ($ref) than $q ($base)" -- closer "$lq" "$base" "$ref"
    echo "$q: held-out KL to the f32 base $base_kl, with the LoftQ start $lq_kl"
    ok "$q + loftq: KL to f32 falls by 20% or more" -- awk "BEGIN { exit !($lq_kl < 0.8 * $base_kl) }"
done

echo "cli_loftq: $passes passed, $fails failed"
[ "$fails" = 0 ]
