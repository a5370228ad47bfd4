#!/usr/bin/env python3
"""Hostile inputs of tests/data/malformed/ (one file or folder per case; the expected exit code
and message of each are in tests/data/malformed/MANIFEST.tsv, run by tests/cli_malformed.sh).

Each case starts from a small valid file — a one-module PEFT adapter and GGUF LoRA written here,
the micro Llama of tests/fuzz/micro in float, bitsandbytes and lorakit NF4 form (seed corpora of
the fuzzers), a real checkpoint of tests/fuzz/corpus/checkpoint — and breaks exactly one thing.
Run by hand with the system Python (numpy only; zstd from the command line for checkpoints):
    /usr/bin/python3 tests/gen/gen_malformed.py
"""
import json
import os
import shutil
import struct
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
OUT = os.path.join(TESTS, "data", "malformed")
CORPUS = os.path.join(TESTS, "fuzz", "corpus")
MICRO = os.path.join(TESTS, "fuzz", "micro", "config.json")
rng = np.random.default_rng(7)


def path(name):
    return os.path.join(OUT, name)


def write(name, data):
    p = path(name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors ---------------------------------------------------------------------------

def st_bytes(tensors, meta=None, header=None, hlen=None):
    """tensors: list of (name, dtype, shape, raw bytes[, (begin, end)]): the raw bytes are
    appended in order; data_offsets are where they land unless given."""
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for t in tensors:
        name, dt, shape, raw = t[:4]
        off = t[4] if len(t) > 4 else (len(data), len(data) + len(raw))
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": list(off)}
        data += raw
    js = (header if header is not None else json.dumps(h)).encode()
    return struct.pack("<Q", len(js) if hlen is None else hlen) + js + data


def st_read(p):
    d = open(p, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    return json.loads(d[8:8 + n]), d[8 + n:], n


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


PRE = "base_model.model.model.layers.0.self_attn.q_proj."
CFG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
       "base_model_name_or_path": "stories260K-hf"}


def adapter(name, tensors=None, cfg=None, cfg_text=None, **kw):
    a, b = f32(2, 64), f32(64, 2)
    if tensors is None:
        tensors = [(PRE + "lora_A.weight", "F32", [2, 64], a.tobytes()),
                   (PRE + "lora_B.weight", "F32", [64, 2], b.tobytes())]
    write(name + "/adapter_config.json", cfg_text if cfg_text is not None
          else json.dumps(cfg if cfg is not None else CFG, indent=1))
    write(name + "/adapter_model.safetensors", st_bytes(tensors, **kw))


def adapters():
    A, B = f32(2, 64).tobytes(), f32(64, 2).tobytes()
    adapter("adapter-ok")
    adapter("st-header-beyond-file", hlen=1 << 40)
    adapter("st-overlap", [(PRE + "lora_A.weight", "F32", [2, 64], A + B, (0, 512)),
                           (PRE + "lora_B.weight", "F32", [64, 2], b"", (256, 768))])
    adapter("st-offset-out-of-range", [(PRE + "lora_A.weight", "F32", [2, 64], A),
                                       (PRE + "lora_B.weight", "F32", [64, 2], b"",
                                        (512, 1024))])
    adapter("st-shape-overflow", [(PRE + "lora_A.weight", "F32", [1 << 40, 1 << 40], A,
                                   (0, 512)),
                                  (PRE + "lora_B.weight", "F32", [64, 2], B)])
    adapter("st-byte-size-overflow", [(PRE + "lora_A.weight", "F32", [1 << 31, 1 << 31], A,
                                       (0, 512)),
                                      (PRE + "lora_B.weight", "F32", [64, 2], B)])
    adapter("st-wrong-dtype-size", [(PRE + "lora_A.weight", "F16", [2, 64], A),
                                    (PRE + "lora_B.weight", "F32", [64, 2], B)])
    name = PRE + "lora_A.weight"
    dup = ('{"%s": {"dtype": "F32", "shape": [2, 64], "data_offsets": [0, 512]}, '
           '"%s": {"dtype": "F32", "shape": [64, 2], "data_offsets": [512, 1024]}}' % (name, name))
    adapter("st-duplicate-name", [("x", "F32", [2, 64], A), ("y", "F32", [64, 2], B)], header=dup)
    adapter("st-unknown-dtype", [(PRE + "lora_A.weight", "F31", [2, 64], A),
                                 (PRE + "lora_B.weight", "F32", [64, 2], B)])
    adapter("adapter-rank-mismatch", [(PRE + "lora_A.weight", "F32", [2, 64], A),
                                      (PRE + "lora_B.weight", "F32", [32, 4], B)])
    adapter("adapter-config-rank", cfg=dict(CFG, r=8))
    adapter("adapter-rank-pattern-1e300", cfg=dict(CFG, rank_pattern={"q_proj": 1e300}))
    adapter("adapter-b-without-a", [(PRE + "lora_B.weight", "F32", [64, 2], B)])
    adapter("adapter-embedding", [("base_model.model.model.embed_tokens.lora_A", "F32", [2, 64],
                                   A)])
    adapter("json-non-utf8", cfg_text="")
    write("json-non-utf8/adapter_config.json", b'{"r": 2, "base_model_name_or_path": "caf\xe9"}')
    adapter("json-deeply-nested", cfg_text='{"r": 2, "x": ' + "[" * 1500 + "]" * 1500 + "}")
    adapter("json-nul-in-string", cfg_text='{"r": 2, "peft_type": "LORA\\u0000 IA3"}')
    adapter("json-trailing-data", cfg_text=json.dumps(CFG) + '\n{"r": 8}\n')
    adapter("json-huge-number", cfg_text='{"r": 1e999}')
    # no path in an adapter is followed: base_model_name_or_path names a real model folder
    adapter("adapter-base-path", cfg=dict(CFG, base_model_name_or_path="../../models/qwen2-tiny"))
    adapter("adapter-base-abs-path", cfg=dict(CFG, base_model_name_or_path="/etc"))


# ---- GGUF ----------------------------------------------------------------------------------

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, version=3, align=32, n_tensors=None, n_kv=None):
    """kvs: list of raw KV byte strings; tensors: (name, ne, type, data bytes[, offset])."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs)
    data, infos = b"", b""
    for t in tensors:
        name, ne, typ, raw = t[:4]
        off = t[4] if len(t) > 4 else len(data)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(
            struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", typ, off)
        if len(t) <= 4:
            data += raw + b"\0" * (-len(raw) % align)
    out += infos
    out += b"\0" * (-len(out) % align)
    return out + data


def kv_str(k, v):
    return gstr(k) + struct.pack("<I", 8) + gstr(v)


def kv_f32(k, v):
    return gstr(k) + struct.pack("<If", 6, v)


def kv_u32(k, v):
    return gstr(k) + struct.pack("<II", 4, v)


LORA_KV = [kv_str("general.architecture", "qwen2"), kv_str("general.type", "adapter"),
           kv_str("adapter.type", "lora"), kv_f32("adapter.lora.alpha", 4.0)]
GA, GB = "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"


def q8_0(x, scale_bits=None):
    """x: [rows, 32k] float → Q8_0 blocks (fp16 d, 32 int8), d forced to scale_bits if given."""
    out = b""
    for blk in x.reshape(-1, 32):
        d = np.abs(blk).max() / 127
        q = np.round(blk / d).astype(np.int8) if d else np.zeros(32, np.int8)
        dh = np.float16(d).view(np.uint16) if scale_bits is None else scale_bits
        out += struct.pack("<H", int(dh)) + q.tobytes()
    return out


def q4_0(x, scale_bits):
    out = b""
    for blk in x.reshape(-1, 32):
        out += struct.pack("<H", scale_bits) + bytes(16)
    return out


def ggufs():
    A, B = f32(2, 64), f32(64, 2)
    ok = [(GA, [64, 2], 0, A.tobytes()), (GB, [2, 64], 0, B.tobytes())]
    write("gguf-ok.gguf", gguf(LORA_KV, ok))
    write("gguf-nan-scale.gguf", gguf(LORA_KV, [(GA, [64, 2], 8, q8_0(A, 0x7e00)), ok[1]]))
    write("gguf-inf-scale.gguf", gguf(LORA_KV, [(GA, [64, 2], 2, q4_0(A, 0x7c00)), ok[1]]))
    write("gguf-dims-overflow.gguf", gguf(LORA_KV, [(GA, [1 << 40, 1 << 40], 0, b""), ok[1]]))
    write("gguf-offset-beyond.gguf", gguf(LORA_KV, [ok[0], (GB, [2, 64], 0, b"", 1 << 20)]))
    write("gguf-overlap.gguf", gguf(LORA_KV, [ok[0], (GB, [2, 64], 0, b"", 0)]))
    write("gguf-duplicate-tensor.gguf", gguf(LORA_KV, [ok[0], (GA, [2, 64], 0, B.tobytes())]))
    write("gguf-duplicate-key.gguf", gguf(LORA_KV + [kv_str("adapter.type", "lora")], ok))
    write("gguf-huge-string.gguf", gguf([struct.pack("<Q", 1 << 62) + b"general.name"], ok))
    write("gguf-huge-count.gguf", gguf(LORA_KV, ok, n_tensors=1 << 60))
    write("gguf-rank-mismatch.gguf", gguf(LORA_KV, [ok[0], (GB, [4, 32], 0, B.tobytes())]))
    write("gguf-alignment-zero.gguf", gguf(LORA_KV + [kv_u32("general.alignment", 0)], ok))
    write("gguf-future-version.gguf", gguf(LORA_KV, ok, version=4))
    write("gguf-truncated.gguf", gguf(LORA_KV, ok)[:-100])
    write("gguf-bad-magic.gguf", b"GGML" + gguf(LORA_KV, ok)[4:])


# ---- model folders (the micro Llama) ------------------------------------------------------

def config(name, text):
    """A model folder with only config.json: the load stops there."""
    write(name + "/config.json", text)


def model(name, src, patch, shift=0):
    """shift: extra header bytes, so the tensors lie that far off the 64-byte alignment."""
    h, data, _ = st_read(os.path.join(CORPUS, "model", src))
    data = bytearray(data)
    meta = h.pop("__metadata__", None)
    patch(h, data, meta)
    hd = dict(h)
    if meta is not None:
        hd = {"__metadata__": meta, **h}
    js = json.dumps(hd).encode()
    js += b" " * (-(8 + len(js)) % 64 + shift)
    write(name + "/model.safetensors", struct.pack("<Q", len(js)) + js + bytes(data))
    shutil.copy(MICRO, path(name + "/config.json"))


def set_f32(h, data, tname, index, value):
    off = h[tname]["data_offsets"][0] + 4 * index
    data[off:off + 4] = struct.pack("<f", value)


def models():
    Q = "model.layers.0.self_attn.q_proj.weight"
    def bf16_at(k, bits):
        return lambda h, d, m: d.__setitem__(slice(h[Q]["data_offsets"][0] + 2 * k,
                                                   h[Q]["data_offsets"][0] + 2 * k + 2), bits)
    model("model-ok", "bf16.safetensors", lambda h, d, m: None)
    model("model-nan-weight", "bf16.safetensors", bf16_at(5, b"\xc0\x7f"))
    model("model-inf-weight", "bf16.safetensors", bf16_at(1, b"\x80\x7f"))

    def bnb_inf(h, d, m):
        set_f32(h, d, "model.layers.0.mlp.down_proj.weight.absmax", 3, float("inf"))
    model("bnb-inf-absmax", "bnb.safetensors", bnb_inf)

    def bnb_shape(h, d, m):
        qs = "model.layers.0.mlp.down_proj.weight.quant_state.bitsandbytes__nf4"
        b0, b1 = h[qs]["data_offsets"]
        st = json.loads(bytes(d[b0:b1]))
        st["shape"] = [1e300, 64]
        raw = json.dumps(st, separators=(",", ":")).encode()
        raw += b" " * (b1 - b0 - len(raw))
        assert len(raw) == b1 - b0
        d[b0:b1] = raw
    model("bnb-quant-state-shape", "bnb.safetensors", bnb_shape)

    def nf4_nan(h, d, m):  # lorakit NF4 rows: codes, then the fp32 absmax of each block
        t = "model.layers.0.mlp.down_proj.weight"
        b0, b1 = h[t]["data_offsets"]
        rb = h[t]["shape"][1]
        d[b0 + rb - 4:b0 + rb] = struct.pack("<f", float("nan"))
    model("nf4-nan-scale", "nf4.safetensors", nf4_nan)

    def q8_inf(h, d, m):  # lorakit Q8_0 rows: blocks of fp16 d + 32 int8
        t = "model.layers.0.mlp.up_proj.weight"
        b0 = h[t]["data_offsets"][0]
        d[b0:b0 + 2] = struct.pack("<H", 0x7c00)
    model("q8-inf-scale", "q8_0.safetensors", q8_inf)
    # unaligned rows are copied before the scales are checked: the copy must not leak
    model("q8-inf-scale-unaligned", "q8_0.safetensors", q8_inf, shift=8)

    def version(h, d, m):
        m["lorakit.version"] = "99"
    model("nf4-future-version", "nf4.safetensors", version)
    cfg = json.loads(open(MICRO).read())
    config("config-absurd-dims", json.dumps(dict(cfg, hidden_size=1 << 40)))
    config("config-head-dim-odd", json.dumps(dict(cfg, head_dim=15)))
    config("config-bos-1e300", json.dumps(dict(cfg, bos_token_id=1e300)))
    config("config-duplicate-key", json.dumps(cfg)[:-1] + ', "vocab_size": 64}')
    config("config-deeply-nested", '{"x": ' + '{"a": ' * 1100 + "1" + "}" * 1100 + "}")
    config("config-non-utf8", open(MICRO, "rb").read().replace(b'"llama"', b'"ll\xffama"'))
    # sharded index naming files outside the folder
    for case, shard in (("index-dotdot", "../model-ok/model.safetensors"),
                        ("index-absolute", "/etc/passwd")):
        os.makedirs(path(case), exist_ok=True)
        shutil.copy(MICRO, path(case + "/config.json"))
        h, _, _ = st_read(path("model-ok/model.safetensors"))
        wm = {k: shard for k in h if k != "__metadata__"}
        write(case + "/model.safetensors.index.json", json.dumps({"weight_map": wm}, indent=1))


# ---- tokenizers ----------------------------------------------------------------------------

def tokenizers():
    src = os.path.join(CORPUS, "tokenizer", "qwen2.5.json")
    tok = open(src, "rb").read()
    write("tok-truncated/tokenizer.json", tok[: len(tok) // 2])
    write("tok-non-utf8/tokenizer.json", tok.replace(b'"version"', b'"vers\xc0\xafion"', 1))
    write("tok-deeply-nested/tokenizer.json", b'{"model": ' + b"[" * 1500 + b"]" * 1500 + b"}")
    j = json.loads(tok)
    j["model"]["vocab"]["huge"] = 1 << 29
    write("tok-huge-id/tokenizer.json", json.dumps(j))
    j = json.loads(tok)
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(?<=a+"
    write("tok-bad-regex/tokenizer.json", json.dumps(j))
    write("tok-bos-not-in-vocab/tokenizer.json", tok)
    write("tok-bos-not-in-vocab/tokenizer_config.json", json.dumps({"bos_token": "<nope>"}))


# ---- checkpoints (resumed by lora-train; made with --rank 1 --targets q --seq-len 16) -------

def checkpoints():
    ck = open(os.path.join(CORPUS, "checkpoint", "step1.ckpt"), "rb").read()
    write("ckpt-ok/state.ckpt", ck)
    write("ckpt-truncated/state.ckpt", ck[:-40])
    flip = bytearray(ck)
    flip[len(ck) // 2] ^= 0x10
    write("ckpt-bit-flip/state.ckpt", bytes(flip))
    write("ckpt-bad-magic/state.ckpt", b"LKCKPX" + ck[6:])
    write("ckpt-future-version/state.ckpt", ck[:8] + b"\x02" + ck[9:])
    big = bytearray(ck)
    big[24:32] = struct.pack("<Q", 1 << 35)
    write("ckpt-huge-count/state.ckpt", bytes(big))
    write("ckpt-trailing-bytes/state.ckpt", ck + b"junk")
    # a description that is not UTF-8, in a frame with a valid checksum
    meta_len, n = struct.unpack("<QQ", ck[16:32])
    raw = subprocess.run(["zstd", "-d", "-c"], input=ck[32:], capture_output=True,
                         check=True).stdout
    meta = raw[:meta_len].replace(b'"step"', b'"st\xffp"')
    frame = subprocess.run(["zstd", "-3", "-c", "--check"], input=meta + raw[meta_len:],
                           capture_output=True, check=True).stdout
    write("ckpt-meta-non-utf8/state.ckpt", ck[:32] + frame)


# ---- teacher caches (lora-train --teacher-cache; a.lktc: text.jsonl, --seq-len 16, top-4) --

M64 = (1 << 64) - 1
XP = (11400714785074694791, 14029467366897019727, 1609587929392839161, 9650029242287828579,
      2870177450012600261)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def xround(acc, v):
    return (rotl((acc + v * XP[1]) & M64, 31) * XP[0]) & M64


def xxh64(b, seed=0):
    """XXH64 from the xxHash specification (independent of src/tcache.c's)."""
    n, p = len(b), 0
    u64 = lambda i: int.from_bytes(b[i:i + 8], "little")
    if n >= 32:
        v = [(seed + XP[0] + XP[1]) & M64, (seed + XP[1]) & M64, seed, (seed - XP[0]) & M64]
        while n - p >= 32:
            v = [xround(v[i], u64(p + 8 * i)) for i in range(4)]
            p += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M64
        for x in v:
            h = ((h ^ xround(0, x)) * XP[0] + XP[3]) & M64
    else:
        h = (seed + XP[4]) & M64
    h = (h + n) & M64
    while n - p >= 8:
        h = (rotl(h ^ xround(0, u64(p)), 27) * XP[0] + XP[3]) & M64
        p += 8
    if n - p >= 4:
        h = (rotl(h ^ (int.from_bytes(b[p:p + 4], "little") * XP[0]) & M64, 23) * XP[1]
             + XP[2]) & M64
        p += 4
    for c in b[p:]:
        h = (rotl(h ^ (c * XP[4]) & M64, 11) * XP[0]) & M64
    for s_, m in ((33, XP[1]), (29, XP[2])):
        h = ((h ^ (h >> s_)) * m) & M64
    return h ^ (h >> 32)


def zstd(args, data):
    tmp = path("tmp.bin")
    open(tmp, "wb").write(data)  # from a file, so the frame records its content size
    out = subprocess.run(["zstd", *args, "-c", tmp], capture_output=True, check=True).stdout
    os.remove(tmp)
    return out


def tcaches():
    tc = open(os.path.join(CORPUS, "tcache", "a.lktc"), "rb").read()
    hb, io = struct.unpack("<I", tc[12:16])[0], struct.unpack("<Q", tc[72:80])[0]
    assert xxh64(tc[io:io + 48], xxh64(tc[:hb])) == struct.unpack("<Q", tc[-8:])[0]
    write("tcache-ok.lktc", tc)
    write("tcache-truncated.lktc", tc[:-20])
    write("tcache-bad-magic.lktc", b"LKTCACHX" + tc[8:])
    flip = bytearray(tc)
    flip[hb + 40] ^= 4
    write("tcache-chunk-bit-flip.lktc", bytes(flip))
    # an id outside the vocabulary, in a chunk with valid frame and checksums
    off, cs, us, first, ne, _ = struct.unpack("<6Q", tc[io:io + 48])
    raw = bytearray(zstd(["-d"], tc[off:off + cs]))
    nt = struct.unpack(f"<{ne}I", raw[:4 * ne])
    T = sum(nt)
    ids0 = 8 * ne + 4 * T + sum((t + 7) // 8 for t in nt)
    N = sum(struct.unpack(f"<{ne}I", raw[4 * ne:8 * ne]))
    k = struct.unpack("<Q", tc[16:24])[0]
    raw[ids0 + 2 * N * k] = 1  # byte plane 2 of the first id: id += 65536 > vocab
    frame = zstd(["-3", "--check"], bytes(raw))
    head = bytearray(tc[:hb])
    head[72:80] = struct.pack("<Q", hb + len(frame))
    ix = struct.pack("<6Q", hb, len(frame), us, first, ne, xxh64(frame))
    body = bytes(head) + frame + ix
    write("tcache-id-beyond-vocab.lktc",
          body + struct.pack("<Q", xxh64(ix, xxh64(bytes(head)))))


# ---- GGUF tokenizers (lora-tokenize -m FILE.gguf) ----------------------------------------------

def kv_bool(k, v):
    return gstr(k) + struct.pack("<IB", 7, v)


def kv_arr(k, typ, items):
    """An array KV: typ 8 strings, 5 i32, 6 f32."""
    body = b"".join(gstr(x) if typ == 8 else struct.pack("<i" if typ == 5 else "<f", x)
                    for x in items)
    return gstr(k) + struct.pack("<IIQ", 9, typ, len(items)) + body


def gguf_tokenizers():
    """A byte-level BPE vocabulary of six tokens and one merge ("gpt2", pre smollm), and a
    SentencePiece one ("llama" with scores), each broken one way; no tensors."""
    toks = ["a", "b", "ab", "<|im_end|>"]
    base = {"tokenizer.ggml.model": kv_str("tokenizer.ggml.model", "gpt2"),
            "tokenizer.ggml.pre": kv_str("tokenizer.ggml.pre", "smollm"),
            "tokenizer.ggml.tokens": kv_arr("tokenizer.ggml.tokens", 8, toks),
            "tokenizer.ggml.token_type": kv_arr("tokenizer.ggml.token_type", 5, [1, 1, 1, 3]),
            "tokenizer.ggml.merges": kv_arr("tokenizer.ggml.merges", 8, ["a b"]),
            "tokenizer.ggml.eos_token_id": kv_u32("tokenizer.ggml.eos_token_id", 3)}

    def case(name, **change):
        kvs = dict(base, **{k.replace("__", "."): v for k, v in change.items()})
        write(name, gguf([v for v in kvs.values() if v is not None], []))

    case("gtok-ok.gguf")
    case("gtok-no-model.gguf", tokenizer__ggml__model=None)
    case("gtok-unknown-model.gguf", tokenizer__ggml__model=kv_str("tokenizer.ggml.model", "bert"))
    case("gtok-unknown-pre.gguf", tokenizer__ggml__pre=kv_str("tokenizer.ggml.pre", "made-up"))
    case("gtok-pre-wrong-type.gguf", tokenizer__ggml__pre=kv_u32("tokenizer.ggml.pre", 2))
    case("gtok-tokens-wrong-type.gguf",
         tokenizer__ggml__tokens=kv_arr("tokenizer.ggml.tokens", 5, [1, 2, 3, 4]))
    case("gtok-types-short.gguf",
         tokenizer__ggml__token_type=kv_arr("tokenizer.ggml.token_type", 5, [1, 1, 1]))
    case("gtok-no-merges.gguf", tokenizer__ggml__merges=None)
    case("gtok-add-bos-wrong-type.gguf",
         tokenizer__ggml__add_bos_token=kv_u32("tokenizer.ggml.add_bos_token", 1))
    case("gtok-huge-array.gguf", tokenizer__ggml__tokens=gstr("tokenizer.ggml.tokens") +
         struct.pack("<IIQ", 9, 8, 1 << 40))
    spm = {"tokenizer.ggml.model": kv_str("tokenizer.ggml.model", "llama"),
           "tokenizer.ggml.tokens": kv_arr("tokenizer.ggml.tokens", 8,
                                           ["<unk>", "<s>", "</s>", "\u2581a"]),
           "tokenizer.ggml.scores": kv_arr("tokenizer.ggml.scores", 6, [0, 0, 0, -1.0])}
    write("gtok-spm-ok.gguf", gguf(list(spm.values()), []))
    spm["tokenizer.ggml.scores"] = kv_arr("tokenizer.ggml.scores", 6, [0, float("nan"), 0, 0])
    write("gtok-spm-nan-score.gguf", gguf(list(spm.values()), []))
    spm["tokenizer.ggml.scores"] = kv_arr("tokenizer.ggml.scores", 6, [0, 0, 0, 0, 0])
    write("gtok-spm-scores-long.gguf", gguf(list(spm.values()), []))


# ---- datasets (lora-tokenize --data --strict) ----------------------------------------------

def datasets():
    write("data-deeply-nested.jsonl", '{"text": ' + "[" * 1500 + "]" * 1500 + "}\n")
    write("data-bad-ids.jsonl", '{"input_ids": [1, 2, 1e300]}\n')
    write("data-not-json.jsonl", '{"text": "a"}\n{"text": \n')


def main():
    for e in os.listdir(OUT) if os.path.isdir(OUT) else []:  # all but the hand-written manifest
        if e != "MANIFEST.tsv":
            p = os.path.join(OUT, e)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    os.makedirs(OUT, exist_ok=True)
    adapters()
    ggufs()
    models()
    tokenizers()
    checkpoints()
    tcaches()
    gguf_tokenizers()
    datasets()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"{OUT}: {total} bytes")


main()
