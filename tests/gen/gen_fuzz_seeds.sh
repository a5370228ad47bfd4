#!/usr/bin/env bash
# Seed corpora of the fuzz harnesses: tests/fuzz/corpus/<harness>/, one small valid input per
# file, made from committed fixtures, lorakit's own writers (lora-random-model, lora-quantize,
# lora-train, lora-teacher) and gguf-py 0.10.0 for a GGUF with every metadata type and tensor type. Real
# tokenizers from ../shared are cut down to a few hundred tokens (same normalizer, pre-tokenizer,
# decoder and added tokens). Run by hand (outputs are committed; CI never runs this):
#   bash tests/gen/gen_fuzz_seeds.sh BUILD_DIR SHARED_DIR
set -euo pipefail
B=$(cd "$1" && pwd) S=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")/../.." && pwd)
D=$here/tests/data C=$here/tests/fuzz/corpus
SEP='#@lkfz@#'
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$C"
mkdir -p "$C"/{safetensors,gguf,checkpoint,config,tokenizer,tokenizer_config,dataset,adapter,model,tcache,gguf_tok}

# ---- model: the micro Llama of tests/fuzz/micro in every on-disk form the loader reads ----
"$B/lora-random-model" -c "$here/tests/fuzz/micro/config.json" -o "$T/bf16" --dtype bf16 -q
"$B/lora-random-model" -c "$here/tests/fuzz/micro/config.json" -o "$T/f32" --dtype f32 -q
for t in nf4 q4_0 q8_0 iq4_nl; do
    "$B/lora-quantize" -m "$T/f32" --type $t -o "$T/$t" -q >/dev/null
done
"$B/lora-quantize" -m "$T/f32" --type q8_0 --quant-embed q8_0 -o "$T/q8e" -q >/dev/null
"$B/lora-quantize" -m "$T/f32" --type nf4 --format hf-bnb -o "$T/bnb" -q >/dev/null
"$B/lora-quantize" -m "$T/f32" --type nf4 --format hf-bnb --double-quant -o "$T/bnbdq" -q >/dev/null
for v in bf16 f32 nf4 q4_0 q8_0 iq4_nl q8e bnb bnbdq; do
    cp "$T/$v/model.safetensors" "$C/model/$v.safetensors"
done

# ---- safetensors: small real files of several dtypes, plus one of every dtype by hand ----
cp "$T/q8e/model.safetensors" "$C/safetensors/q8e.safetensors"
cp "$D/adapters/qwen2-dora/adapter_model.safetensors" "$C/safetensors/dora.safetensors"
/usr/bin/python3 - "$C/safetensors/dtypes.safetensors" <<'EOF'
import json, struct, sys
sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
         "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
h, off, data = {"__metadata__": {"format": "pt", "lorakit.quant": "nf4"}}, 0, b""
for i, (dt, sz) in enumerate(sizes.items()):
    shape = [[3], [2, 3], [1, 2, 2], [0, 5], []][i % 5]
    n = 1
    for d in shape:
        n *= d
    h[f"t.{dt.lower()}"] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n * sz]}
    data += bytes((i * 7 + k) % 251 for k in range(n * sz))
    off += n * sz
js = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(js)) + js + data)
EOF

# ---- gguf: LoRA adapters (llama.cpp's layout) and a model-like file with every type ----
cp "$D/adapters/llama3-rslora.gguf" "$C/gguf/"
/usr/bin/python3 - "$C/gguf/types.gguf" <<'EOF'
import sys
import numpy as np
import gguf
from gguf import quants
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_type("adapter")
w.add_string("adapter.type", "lora")
w.add_float32("adapter.lora.alpha", 16.0)
w.add_uint8("t.u8", 200); w.add_int8("t.i8", -3); w.add_uint16("t.u16", 60000)
w.add_int16("t.i16", -3000); w.add_uint32("t.u32", 1 << 31); w.add_int32("t.i32", -5)
w.add_float64("t.f64", 2.5); w.add_bool("t.bool", True); w.add_uint64("t.u64", 1 << 40)
w.add_int64("t.i64", -(1 << 40))
w.add_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "\u2581a", "b"])
w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0, -3.0, -4.0])
w.add_array("tokenizer.ggml.token_type", [2, 3, 3, 1, 1])
rng = np.random.default_rng(0)
a = rng.standard_normal((2, 64)).astype(np.float32)
b = rng.standard_normal((32, 2)).astype(np.float32)
w.add_tensor("blk.0.attn_q.weight.lora_a", a)
w.add_tensor("blk.0.attn_q.weight.lora_b", b.astype(np.float16))
for blk, qt in ((1, gguf.GGMLQuantizationType.Q8_0), (2, gguf.GGMLQuantizationType.Q4_0)):
    x = rng.standard_normal((2, 64)).astype(np.float32)
    w.add_tensor(f"blk.{blk}.ffn_up.weight.lora_a", quants.quantize(x, qt), raw_dtype=qt)
    w.add_tensor(f"blk.{blk}.ffn_up.weight.lora_b",
                 rng.standard_normal((32, 2)).astype(np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF
# one tensor of two rows of each type lorakit reads but does not write, the blocks taken from
# tests/data/quant's dequantisation fixtures (gguf-py 0.19.0 of the peers' venv; PY_GGUF overrides)
"${PY_GGUF:-/root/peers/venv/bin/python}" - "$C/gguf/read-only-types.gguf" "$D/quant" <<'EOF'
import struct
import sys
import numpy as np
import gguf
w = gguf.GGUFWriter(sys.argv[1], "llama")
for name in ("q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs"):
    d = open(f"{sys.argv[2]}/gguf_dq_{name}.bin", "rb").read()
    bl, bb, nb = struct.unpack("<3I", d[:12])
    per_row = 2 if bl == 32 else 1
    rows = np.frombuffer(d[12:12 + 2 * per_row * bb], dtype=np.uint8).reshape(2, per_row * bb)
    w.add_tensor(f"t.{name}", rows, raw_dtype=gguf.GGMLQuantizationType[name.upper()])
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF

# ---- checkpoint: two real checkpoints of a 2-step run on stories260K (rank 1, q only) ----
"$B/lora-train" -m "$S/models/stories260K-hf" --data "$D/tok/ds/text.jsonl" -o "$T/run" \
    --rank 1 --targets q --steps 2 --save-every 1 --seq-len 16 -t 1 -q
cp "$T/run/checkpoint-1/state.ckpt" "$C/checkpoint/step1.ckpt"
cp "$T/run/checkpoint-2/state.ckpt" "$C/checkpoint/step2.ckpt"

# ---- tcache: lora-teacher caches of stories260K (one chunk; top-8 at temperature 2; two chunks) ----
"$B/lora-teacher" -m "$S/models/stories260K-hf" --data "$D/tok/ds/text.jsonl" --top-k 4 \
    --seq-len 16 -o "$C/tcache/a.lktc" -q -t 1
"$B/lora-teacher" -m "$S/models/stories260K-hf" --data "$D/teacher/data.jsonl" --top-k 8 \
    --kd-temp 2 --seq-len 64 -o "$C/tcache/b.lktc" -q -t 1
for i in 1 2 3 4 5 6 7 8; do cat "$D/teacher/data.jsonl"; done >"$T/d8.jsonl"
"$B/lora-teacher" -m "$S/models/stories260K-hf" --data "$T/d8.jsonl" --top-k 1 --seq-len 64 \
    -o "$C/tcache/d.lktc" -q -t 1

# chunk payloads for fuzz_tcache's wrapped mode: 4 parameter bytes, then a decompressed chunk
/usr/bin/python3 - "$C/tcache" <<'EOF2'
import struct, subprocess, sys
d = sys.argv[1]
for name in ("a", "b"):
    f = open(f"{d}/{name}.lktc", "rb").read()
    k, V, io = struct.unpack("<Q", f[16:24])[0], struct.unpack("<Q", f[32:40])[0], \
        struct.unpack("<Q", f[72:80])[0]
    off, cs, us, first, ne, _ = struct.unpack("<6Q", f[io:io + 48])
    raw = subprocess.run(["zstd", "-d", "-c"], input=f[off:off + cs], capture_output=True,
                         check=True).stdout
    assert len(raw) == us and k <= 8 and ne <= 16 and V - k - 1 < 1024
    params = bytes([k - 1, (V - k - 1) & 255, (V - k - 1) >> 8, ne - 1])
    open(f"{d}/{name}.chunk", "wb").write(params + raw)
EOF2
# regression input (fuzz_tcache found it): one example with no tokens, whose empty arrays were
# NULL pointers offset by 0
printf '\0\0\0\0\0\0\0\0\0\0\0\0' >"$C/tcache/empty-example.chunk"

# ---- config: every committed and shared config.json ----
for d in "$D"/models/* "$D"/bnb/* "$S"/models/*; do
    [ -f "$d/config.json" ] && cp "$d/config.json" "$C/config/$(basename "$d").json"
done
cp "$here/tests/fuzz/micro/config.json" "$C/config/micro.json"

# ---- tokenizer: stories260K and the added-tokens fixture whole; real ones cut down ----
cp "$D/bnb/stories260K-nf4-dq/tokenizer.json" "$C/tokenizer/stories260K.json"
cp "$D/tok/added/tokenizer.json" "$C/tokenizer/added.json"
/usr/bin/python3 - "$S/models" "$C/tokenizer" <<'EOF'
import json, sys
src, out = sys.argv[1], sys.argv[2]
for name, keep in (("qwen2.5-tokenizer", 400), ("llama-3.2-3b-instruct", 400),
                   ("mistral-7b-instruct-v0.2", 500)):
    j = json.load(open(f"{src}/{name}/tokenizer.json"))
    m = j["model"]
    vocab = {t: i for t, i in m["vocab"].items() if i < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    added = [t for t in j["added_tokens"] if t["special"]][:8]
    for k, t in enumerate(added):
        t["id"] = keep + k
    j["added_tokens"] = added
    pp = j.get("post_processor") or {}
    for p in pp.get("processors", [pp]):
        if p.get("type") == "TemplateProcessing":  # BOS renumbered like the added tokens
            bos = [t for t in added if t["content"] in p["special_tokens"]][:1]
            p["special_tokens"] = {t["content"]: {"id": t["content"], "ids": [t["id"]],
                                                  "tokens": [t["content"]]} for t in bos}
            head = [{"SpecialToken": {"id": t["content"], "type_id": 0}} for t in bos]
            p["single"] = head + [{"Sequence": {"id": "A", "type_id": 0}}]
            p["pair"] = p["single"] + [{"Sequence": {"id": "B", "type_id": 1}}]
    json.dump(j, open(f"{out}/{name.split('-')[0]}.json", "w"), ensure_ascii=False)
EOF

# ---- gguf_tok: GGUF tokenizers cut to their first 300 tokens (gguf-py 0.19.0 of the peers'
# venv; PY_GGUF overrides): SmolLM2's "gpt2" vocabulary under several pre-tokenizer names (regex
# lists, digit groups, empty-match splits, ignore_merges), and the Llama-2 "llama" one ----
"${PY_GGUF:-/root/peers/venv/bin/python}" - "$S/models" "$C/gguf_tok" <<'EOF'
import sys
import gguf
src, out = sys.argv[1], sys.argv[2]
KEEP = 300


def cut(path, name, pre=None):
    r = gguf.GGUFReader(f"{src}/{path}")
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("tokenizer.")}
    toks = f["tokenizer.ggml.tokens"][:KEEP]
    w = gguf.GGUFWriter(f"{out}/{name}.gguf", arch="llama")
    for k, v in f.items():
        t = r.fields[k].types[0]
        if k == "tokenizer.ggml.merges":
            keep = set(toks)
            v = [m for m in v if " " in m[1:] and m.split(" ", 1)[0] in keep
                 and m.split(" ", 1)[1] in keep and m.replace(" ", "", 1) in keep]
        elif t == gguf.GGUFValueType.ARRAY:
            v = v[:KEEP]
        if k == "tokenizer.ggml.pre" and pre:
            v = pre
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, v)
        elif k.endswith("_token_id") and v >= KEEP:
            continue
        else:
            w.add_key_value(k, v, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


sm = "smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
for pre in ("smollm", "llama-bpe", "qwen2", "default", "superbpe", "afmoe", "deepseek-llm",
            "tekken"):
    cut(sm, "smollm2-" + pre, pre)
cut("ggml-vocab/ggml-vocab-llama-spm.gguf", "llama-spm")
EOF

# ---- tokenizer_config: the real chat templates, with stories260K's special tokens ----
/usr/bin/python3 - "$S/models" "$D/bnb/stories260K-nf4-dq/tokenizer_config.json" \
    "$C/tokenizer_config" "$SEP" <<'EOF'
import json, sys
src, base, out, sep = sys.argv[1:5]
cfg = json.load(open(base))
json.dump(cfg, open(f"{out}/stories260K.json", "w"), indent=1)
for name in ("qwen2.5-tokenizer", "llama-3.2-3b-instruct", "mistral-7b-instruct-v0.2",
             "llama2-tokenizer"):
    t = json.load(open(f"{src}/{name}/tokenizer_config.json"))
    c = dict(cfg, chat_template=t.get("chat_template", ""))
    json.dump(c, open(f"{out}/{name.split('-')[0]}.json", "w"), indent=1)
alp = dict(cfg)
alp.pop("bos_token")
alp["chat_template"] = [{"name": "default", "template": "### Instruction:\n{{ x }}"}]
with open(f"{out}/split.json", "w") as f:
    f.write(json.dumps(alp) + sep + json.dumps({"bos_token": {"content": "<s>"},
                                                "eos_token": "</s>"}) + sep +
            "{% for m in messages %}<|im_start|>system\\nYou are a bot.<|im_end|>{% endfor %}")
EOF

# ---- dataset: each committed JSONL after one option byte (see fuzz_dataset.c) ----
# (0x48: auto format and chat template, packed, not strict, seq_len 64; 0x28: seq_len 7;
# 0x40: one example per row; 0x93: strict, alpaca format, seq_len 1, llama3.1 chat)
ctl=(48 28 40 48 93 48 28 48 40)
k=0
for f in "$D"/tok/ds/*.jsonl "$D"/tok/ds/array.json; do
    case $f in */tools*) continue ;; esac # below, with the ChatML template's tool calls
    { printf "\\x${ctl[k % 9]}"; cat "$f"; } >"$C/dataset/$(basename "$f")"
    k=$((k + 1))
done
for f in "$D"/tok/ds/tools*.jsonl; do # tool calls and results: auto (ChatML), packed, seq_len 512
    { printf '\x68'; cat "$f"; } >"$C/dataset/$(basename "$f")"
done
{ printf '\x48'; head -c 3000 "$here/samples/data/whale-train.jsonl"; } >"$C/dataset/whale.jsonl"

# ---- adapter: adapter_config.json + separator + adapter_model.safetensors ----
for a in "$D/adapters/qwen2-dora" "$D/adapters/llama3-rslora" "$D/adapters/qwen2-lora" "$T/run"; do
    { cat "$a/adapter_config.json"; printf '%s' "$SEP"; cat "$a/adapter_model.safetensors"; } \
        >"$C/adapter/$(basename "$a")"
done
cp "$T/run/adapter_model.safetensors" "$C/safetensors/peft.safetensors"
cp "$D/adapters/stories-lora/adapter_config.json" "$C/adapter/stories-config-only"

du -sh "$C"
