#!/usr/bin/env bash
# The first hour of a new user (issue 16), one check per surprise that used to pass silently:
# the base an adapter was trained on is recorded and the other tools default to it (and warn when
# told otherwise); runs and data that train nothing fail and say why; tool-calling conversations
# load; range errors name the option and value with exit 2 in every tool; --fields suggestions;
# pre-tokenised data without a tokenizer; --seed only where it does something; the adapter names
# its base by absolute path or hub id; progress and evaluation messages; the SVGs render.
# Usage: cli_ux.sh BUILD_DIR SHARED_DIR SOURCE_DIR
set -u
B=$(cd "$1" && pwd) S=$(cd "$2" && pwd) SRC=$(cd "$3" && pwd) # absolute: one check runs elsewhere
M=$S/models/stories260K-hf
D=$SRC/samples/data/whale-train.jsonl
E=$SRC/samples/data/whale-test.jsonl
G=$S/data/llamafactory-demo/glaive_toolcall_en_demo.json
IDS=1,403,407,261,378,432,295,260,349,440,287,351
. "$(dirname "$0")/lib_cli.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
TR0=(--data "$D" --seq-len 128 --batch 1 --lr 3e-3 -t 1)
TR=("${TR0[@]}" --rank 4)

ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
hasnot() { ! grep -q -- "$2" "$T/$1" && ok || { bad "$3: '$2' in $1"; grep -- "$2" "$T/$1" | head -3; }; }
count() { grep -c -- "$2" "$T/$1"; } # count FILE PATTERN: matching lines
jnum() { grep -o "\"$1\":[-0-9.e+]*" "$T/out" | tail -1 | cut -d: -f2; } # a number of --json
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d < t && -d < t) }'; }

# --- the training base is recorded, and the other tools default to it --------------------------
expect 0 "train on the default (NF4) base" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 3 \
    -o "$T/a" -q
head -c 4096 "$T/a/adapter_model.safetensors" >"$T/header"
has header '"format":"pt"' "PEFT's metadata kept"
has header '"lorakit.base_quant":"nf4"' "base format in the safetensors metadata"
has header '"lorakit.base_compute":"int8"' "compute type in the safetensors metadata"
expect 0 "inspect shows the record" -- "$B/lora-inspect" "$T/a" --json
has out '"trained_on":{"quant":"nf4","quant_embed":"f32","compute":"int8"}' "inspect JSON"
expect 0 "eval with the adapter's base" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS --json
has err "base nf4 (embeddings f32, int8 compute): $T/a was trained on it" "eval says which base"
hasnot err "warning" "no warning when the base is the adapter's"
L_DEF=$(jnum loss)
expect 0 "eval --quant nf4" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS --json --quant nf4
[ "$(jnum loss)" = "$L_DEF" ] && ok || bad "the default is not the recorded nf4 base: $L_DEF"
expect 0 "eval --quant none" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS --json --quant none
L_F32=$(jnum loss)
[ "$L_F32" != "$L_DEF" ] && ok || bad "nf4 and f32 bases gave the same loss"
has err "warning: $T/a was trained on the base nf4 (embeddings f32, int8 compute), but runs here on f32" \
    "mismatch warning"
has err "leave --quant out to use the adapter's base" "mismatch hint"
expect 0 "generate with the adapter's base" -- "$B/lora-generate" -m "$M" -a "$T/a" --ids 1,2 \
    -n 3 --temp 0
has err "base nf4" "generate says which base"
expect 0 "an adapter without a record" -- "$B/lora-eval" -m "$M" --ids $IDS --json \
    -a "$SRC/tests/data/adapters/stories-lora"
has err "does not record the base it was trained on" "no record said"
expect 0 "merge into the recorded base" -- "$B/lora-merge" -m "$M" -a "$T/a" -o "$T/merged"
has err "merging into $M dequantised from nf4: $T/a was trained on the base nf4" \
    "merge says which base and why"
has out "base weights: dequantised from nf4" "merge summary"
expect 0 "eval with the adapter's base, f32 compute" -- "$B/lora-eval" -m "$M" -a "$T/a" --ids $IDS \
    --json --compute f32
L_EXACT=$(jnum loss) # the merged weights are the NF4 base's values + the delta, exactly
expect 0 "eval the merged model" -- "$B/lora-eval" -m "$T/merged" --ids $IDS --json --quant none
close "$(jnum loss)" "$L_EXACT" 1e-4 && ok || bad "merged $(jnum loss) != NF4 base + adapter $L_EXACT"
expect 0 "merge into the original weights" -- "$B/lora-merge" -m "$M" -a "$T/a" -o "$T/m2" \
    --base-quant none
has err "warning: $T/a was trained on the base nf4.*but is merged into the original weights" \
    "merge mismatch warning"
expect 0 "export to GGUF" -- "$B/lora-export" -a "$T/a" -m "$M" --to gguf -o "$T/a.gguf"
expect 0 "back to PEFT" -- "$B/lora-export" --from "$T/a.gguf" -m "$M" --to peft -o "$T/a2"
expect 0 "the record survives both" -- "$B/lora-inspect" "$T/a2" --json
has out '"trained_on":{"quant":"nf4"' "record after GGUF and back"
grep -q '"base_model_name_or_path":[[:space:]]*"/' "$T/a/adapter_config.json" && ok ||
    bad "base_model_name_or_path is not absolute: $(grep base_model "$T/a/adapter_config.json")"
# a relative -m, and a Hugging Face hub cache folder (its id is recorded)
mkdir -p "$T/hub/models--org--tiny/snapshots/0123abc"
cp "$M"/* "$T/hub/models--org--tiny/snapshots/0123abc/"
(cd "$T/hub/models--org--tiny/snapshots" &&
    "$B/lora-train" -m 0123abc "${TR[@]}" --steps 1 -o "$T/hubrun" -q >/dev/null 2>&1)
grep -q '"base_model_name_or_path":[[:space:]]*"org/tiny"' "$T/hubrun/adapter_config.json" \
    2>/dev/null && ok ||
    bad "hub id not recorded: $(grep base_model "$T/hubrun/adapter_config.json" 2>&1)"

# --- options that used to be accepted silently -----------------------------------------------
expect 2 "--alpha 0" -- "$B/lora-train" -m "$M" "${TR[@]}" -o "$T/x" --alpha 0
has err "lora-train: --alpha must be above 0, got 0 (leave --alpha out" "alpha 0 refused"
expect 2 "--rank beyond the model" -- "$B/lora-train" -m "$M" "${TR0[@]}" -o "$T/x" --rank 100000
has err "lora-train: --rank must be at most 32 for this model (k_proj is \[32, 64\]), got 100000" \
    "rank limit named"
[ ! -e "$T/x" ] && ok || bad "a refused run made its folder"
expect 2 "--eval-every without --eval-data" -- "$B/lora-train" -m "$M" "${TR[@]}" -o "$T/x" \
    --eval-every 5
has err "lora-train: --eval-every needs --eval-data FILE" "eval-every alone"
expect 2 "a weight that is not a number" -- "$B/lora-eval" -m "$M" -a "$T/a:abc" --ids 1,2
has err "lora-eval: -a '$T/a:abc': the weight after ':' must be a number, got 'abc'" "-a DIR:abc"

# --- data that trains nothing ----------------------------------------------------------------
long="Once upon a time there was a little girl who liked to play in the park with her dog."
long="$long $long $long $long"
for i in 1 2 3 4 5; do
    printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"Yes."}]}\n' \
        "$long"
done >"$T/trunc.jsonl"
expect 1 "every answer truncated away" -- "$B/lora-train" -m "$M" --data "$T/trunc.jsonl" \
    --chat-template alpaca --seq-len 64 -o "$T/t1" -t 1
has err "lost every trained token to truncation at --seq-len 64" "truncation counted"
has err "error: training data: no example keeps a token to train on: 5 of 5" "fails, says why"
has err "hint: --seq-len [0-9]* keeps one in each" "suggests --seq-len"
[ ! -e "$T/t1" ] && ok || bad "a run that cannot train made its folder"
printf '{"messages":[{"role":"user","content":"Hi."},{"role":"assistant","content":"Yes."}]}\n' \
    >>"$T/trunc.jsonl"
expect 1 "steps without a trained token only" -- "$B/lora-train" -m "$M" \
    --data "$T/trunc.jsonl" --chat-template alpaca --seq-len 100 -o "$T/t2" -t 1 --steps 2 \
    --seed 1
has err "error: the run trained nothing: of 2 steps, 2 had no trained token" "empty run fails"
[ ! -e "$T/t2/adapter_config.json" ] && ok || bad "an empty run wrote an adapter"
expect 0 "some steps without a trained token" -- "$B/lora-train" -m "$M" \
    --data "$T/trunc.jsonl" --chat-template alpaca --seq-len 100 -o "$T/t3" -t 1 --steps 3 \
    --seed 1 --json
has out '"loss":null' "an empty step has no loss"
has out '"empty":true' "an empty step is marked"
hasnot err "non-finite" "empty steps are not called non-finite"
has err "warning: 2 of the 3 steps run had no trained token" "empty steps counted"

# --- tool-calling conversations ------------------------------------------------------------------
for tk in qwen2.5-tokenizer llama-3.2-3b-instruct; do
    expect 0 "glaive demo with $tk" -- "$B/lora-tokenize" -m "$S/models/$tk" --data "$G" --json
    has out '"examples":300,"bad":0' "every glaive line loads ($tk)"
done
expect 0 "glaive demo, a template without tools" -- "$B/lora-tokenize" \
    -m "$S/models/qwen2.5-tokenizer" --data "$G" --chat-template llama2 --json
has err "153 examples skipped: they use the role 'function_call' (tool calls), which the llama2 template does not define" \
    "one message per role, with the count"
[ "$(count err "function_call")" = 1 ] && ok || bad "function_call reported $(count err function_call) times"

# --- messages -----------------------------------------------------------------------------------
head -3 "$S/data/gsm8k/test.jsonl" >"$T/gsm.jsonl"
expect 1 "GSM8K columns" -- "$B/lora-train" -m "$M" --data "$T/gsm.jsonl" -o "$T/g"
has err "has: question, answer; .*try --fields prompt=question,completion=answer" "--fields hint"
mkdir "$T/notok"
cp "$M/config.json" "$M/model.safetensors" "$T/notok/"
printf '{"input_ids":[1,403,407,261,378,432,295,260]}\n{"input_ids":[1,349,440],"labels":[-100,440,287]}\n' \
    >"$T/ids.jsonl"
expect 0 "pre-tokenised data, no tokenizer" -- "$B/lora-train" -m "$T/notok" --data "$T/ids.jsonl" \
    --seq-len 16 --steps 2 -o "$T/n1" -t 1 -q
expect 1 "text data, no tokenizer" -- "$B/lora-train" -m "$T/notok" --data "$D" --steps 1 \
    -o "$T/n2" -t 1
has err "line 1: a prompt_completion record needs the model's tokenizer, and there is none" \
    "names the line and the need"
has err "the model's tokenizer did not load" "says why"
for tool in lora-eval lora-merge lora-export lora-inspect lora-quantize lora-teacher; do
    "$B/$tool" --help >"$T/out"
    hasnot out "--seed" "$tool lists --seed, which does nothing there"
done
for tool in lora-train lora-generate lora-tokenize lora-random-model lora-random-adapter lora-bench; do
    "$B/$tool" --help >"$T/out"
    has out "--seed" "$tool lists --seed"
done
# every tool: an unknown option and a bad value are usage errors (exit 2)
for tool in lora-train lora-eval lora-generate lora-merge lora-export lora-inspect lora-quantize \
    lora-teacher lora-tokenize lora-random-model lora-random-adapter lora-bench lora-bench-kernels; do
    expect 2 "$tool unknown option" -- "$B/$tool" --no-such-option
    expect 2 "$tool -t -1" -- "$B/$tool" -t -1
done
expect 2 "generate -n -1" -- "$B/lora-generate" -m "$M" --ids 1 -n -1
has err "lora-generate: --max-new-tokens must be at least 0, got -1" "-n range"
expect 2 "bench --decode -1" -- "$B/lora-bench" -m "$M" --decode -1
has err "lora-bench: --decode must be at least 0, got -1" "one option per message"
expect 2 "inspect --top 9" -- "$B/lora-inspect" "$T/a" --top 9
has err "lora-inspect: --top must be between 0 and 8, got 9" "--top range"
expect 2 "bench-kernels --shapes foo" -- "$B/lora-bench-kernels" --shapes foo
has err "lora-bench-kernels: --shapes: 'foo', expected qwen2.5-0.5b or smollm2-135m" "--shapes"
expect 2 "bench-kernels --cpu-time on 2 threads" -- "$B/lora-bench-kernels" --cpu-time -t 2
has err "lora-bench-kernels: --cpu-time: needs -t 1 (the CPU time of one thread), got -t 2" \
    "--cpu-time names the thread count it needs"
expect 0 "bench-kernels --cpu-time" -- "$B/lora-bench-kernels" --cpu-time -t 1 --tokens 4 \
    --types q4_0 --compute int8 --reps 1
has out "; thread CPU time" "the table says which clock timed it"

# --- progress and evaluation -----------------------------------------------------------------
expect 0 "eval sample and progress fields" -- "$B/lora-train" -m "$M" "${TR[@]}" --steps 4 \
    -o "$T/p" --eval-data "$E" --eval-every 2 --eval-max 3 --json --log-every 1
has out '"eval_examples":3' "--eval-max evaluates a fixed sample"
has out '"epoch":' "JSON steps give the epoch"
has err "epoch [0-9.]*  loss [0-9.]*  grad norm" "progress line: epoch and grad norm"
has err "eval at step 2: loss .* (.* tokens of 3 examples" "eval line"
# on a terminal (script gives the run a pty): no message glued to the progress line
script -qec "'$B/lora-train' -m '$M' --data '$D' --seq-len 128 --rank 4 -t 1 --steps 4 \
    --save-every 2 --eval-data '$E' --eval-every 2 --eval-max 2 -o '$T/tty-run'" /dev/null \
    >"$T/tty.txt" 2>&1
tr '\r' '\n' <"$T/tty.txt" >"$T/tty"
[ "$(grep -c 'ETA.*lora-train:' "$T/tty")" = 0 ] && ok || bad "a message glued to the progress line"
has tty "epoch [0-9.]* loss" "terminal progress line"
grep -q $'\033\\[Klora-train: eval at step 2' "$T/tty.txt" && ok ||
    bad "the progress line is not cleared before a message"
has tty "eval at step 2: [0-9]*/2 examples" "evaluation shows its own progress"
expect 0 "eval summary in words" -- "$B/lora-eval" -m "$M" -a "$T/a" --data "$E"
has out "^$M + $T/a, base nf4, int8 compute: loss [0-9.]*  perplexity" "results labelled"
has out "scored tokens of 40 examples of $E: only their trained tokens" "numbers explained"
has err "40 examples (0 skipped), .* each example on its own" "no packing talk for eval data"

# --- the pictures ------------------------------------------------------------------------------
has p/loss.svg "Training loss: stories260K-hf on whale-train.jsonl" "loss.svg title"
has p/loss.svg "rank 4, alpha 4, lr 0.003" "loss.svg settings"
has p/loss.svg ">training loss (each step)<" "legend: training"
has p/loss.svg ">held-out loss (--eval-data)<" "legend: evaluation"
has p/loss.svg ">optimiser step<" "x axis name"
has p/loss.svg ">loss (cross-entropy, nats per trained token)<" "y axis name"
[ "$(grep -c 'text-anchor="end">[0-9.]*<' "$T/p/loss.svg")" -ge 3 ] && ok || bad "y tick values"
[ "$(grep -c 'text-anchor="middle">[0-9]*<' "$T/p/loss.svg")" -ge 2 ] && ok || bad "x tick values"
hasnot a/loss.svg "held-out loss" "no evaluation legend without evaluation"
expect 0 "inspect diff with a picture" -- "$B/lora-inspect" "$T/a" "$T/a2" --svg "$T/diff.svg"
has diff.svg "cosine: the two updates" "heatmap titled with the statistic"
has diff.svg "adapter 2: $T/a2" "heatmap titled with both adapters"
has diff.svg ">-1<" "legend bottom on a fixed scale"
has diff.svg ">1<" "legend top on a fixed scale"
cp "$T/diff.svg" "$T/diff.before"
expect 1 "an existing SVG" -- "$B/lora-inspect" "$T/a" "$T/a2" --svg "$T/diff.svg"
[ ! -s "$T/out" ] && ok || bad "the report was printed before the SVG was refused"
has err "diff.svg already exists (use --force to overwrite)" "refusal message"
cmp -s "$T/diff.svg" "$T/diff.before" && ok || bad "the existing SVG changed"
"$B/lora-inspect" "$T/a" --svg "$T/one.svg" >/dev/null 2>&1
if command -v rsvg-convert >/dev/null; then
    for svg in p/loss.svg a/loss.svg diff.svg one.svg; do
        rsvg-convert "$T/$svg" -o "$T/x.png" 2>"$T/err" && [ "$(head -c 4 "$T/x.png" | od -An -c |
            tr -d ' ')" = "211PNG" ] && ok || bad "$svg does not render: $(head -2 "$T/err")"
    done
else
    echo "SKIP: rsvg-convert missing (bash .ci/deps.sh installs librsvg2-bin)"
fi

echo "cli_ux: $passes passed, $fails failed"
[ "$fails" = 0 ]
