#!/usr/bin/python3
"""Reference logits for lorakit's forward (tests/test_forward.c).

An independent PyTorch implementation of the Hugging Face Llama / Qwen2 / Mistral forward
(transformers' modeling_llama.py semantics: RMSNorm, rotate_half RoPE with the llama3 frequency
scaling, grouped-query causal attention with an optional sliding window, SwiGLU, tied or separate
LM head, q/k/v bias). RoPE frequencies and angles are computed in fp32 exactly as transformers does;
everything else runs in float64, so the fixtures are the exact answer to HF's maths.

Writes, under tests/data/:
  models/qwen2-tiny/    random Qwen2-shaped model (q/k/v bias, GQA, tied, rope_theta 1e6), BF16
  models/llama3-tiny/   random Llama-3-shaped model (llama3 rope_scaling, untied head, head_dim
                        given and != hidden/heads), F32
  models/mistral-tiny/  random Mistral-shaped model with sliding_window 5, F32
  forward/<name>.safetensors   tokens.K (I32 [T]) and logits.K (F32 [T, V]) for a few sequences
  forward/stories260K-greedy.safetensors  prompt.K / greedy.K: 120 greedy tokens after each prompt

Run by hand with Debian's python3-torch (1.13):  /usr/bin/python3 tests/gen/gen_forward.py
Needs ../shared/models/stories260K-hf beside the checkout.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")

ST_DTYPES = {"F32": np.float32, "I32": np.int32, "F16": np.float16}


def st_read(path):
    """Minimal safetensors reader (numpy); BF16 widened to float32 bit-exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        buf = raw[base + b:base + t]
        if e["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=ST_DTYPES[e["dtype"]])
        out[name] = arr.reshape(e["shape"]).copy()
    return out


def st_write(path, tensors):
    """Minimal safetensors writer: tensors = {name: (dtype_str, np.ndarray of raw values)}."""
    hdr, blobs, off = {}, [], 0
    for name, (dt, arr) in tensors.items():
        b = arr.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hdr["__metadata__"] = {"format": "pt", "generator": "tests/gen/gen_forward.py"}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_bf16_bits(x):
    """float32 -> bf16 bits, round to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def inv_freq_hf(cfg, hd):
    """transformers' default / linear / llama3 RoPE inverse frequencies, fp32."""
    rs = cfg.get("rope_scaling") or {}
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        g = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * g / factor + smooth * g
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, g)
    return inv


def forward(cfg, W, tokens):
    """Logits [T, V] in float64 for one sequence starting at position 0."""
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    win = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    T = len(tokens)
    w = {k: torch.from_numpy(v).double() for k, v in W.items()}

    pos = torch.arange(T, dtype=torch.float32)
    inv = inv_freq_hf(cfg, hd)
    ang = (inv[:, None].float() @ pos[None, :].float()).T  # [T, hd/2] fp32 like HF
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos().double(), emb.sin().double()

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rot(x):  # x [nh, T, hd]
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-b, a], dim=-1) * sin

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        if name + ".bias" in w:
            y = y + w[name + ".bias"]
        return y

    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if win:
        idx = torch.arange(T)
        mask &= (idx[None, :] > idx[:, None] - win)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(T, KVH, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, KVH, hd).transpose(0, 1)
        q, k = rot(q), rot(k)
        k = k.repeat_interleave(H // KVH, dim=0)
        v = v.repeat_interleave(H // KVH, dim=0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (s @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + lin(a, p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        u = lin(h, p + "mlp.up_proj")
        x = x + lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def make_model(name, cfg, dtype, seed):
    """Random weights (N(0, 0.02)-ish, norms near 1) written as a HF folder; returns f32 weights
    exactly as stored."""
    g = np.random.default_rng(seed)
    C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or C // H
    qwen = cfg["model_type"] == "qwen2"
    shapes = {"model.embed_tokens.weight": (V, C)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes[p + "input_layernorm.weight"] = (C,)
        shapes[p + "post_attention_layernorm.weight"] = (C,)
        for n, o, i in (("q", H * hd, C), ("k", KVH * hd, C), ("v", KVH * hd, C),
                        ("o", C, H * hd)):
            shapes[p + f"self_attn.{n}_proj.weight"] = (o, i)
            if qwen and n != "o":
                shapes[p + f"self_attn.{n}_proj.bias"] = (o,)
        shapes[p + "mlp.gate_proj.weight"] = (F, C)
        shapes[p + "mlp.up_proj.weight"] = (F, C)
        shapes[p + "mlp.down_proj.weight"] = (C, F)
    shapes["model.norm.weight"] = (C,)
    if not cfg.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (V, C)
    W, out = {}, {}
    for n, shp in shapes.items():
        if n.endswith("norm.weight"):
            a = (1.0 + 0.1 * g.standard_normal(shp)).astype(np.float32)
        elif n.endswith("bias"):
            a = (0.1 * g.standard_normal(shp)).astype(np.float32)
        else:
            # larger than 0.02 so that the tiny model's logits are far from uniform
            a = (0.15 * g.standard_normal(shp)).astype(np.float32)
        if dtype == "BF16":
            bits = to_bf16_bits(a)
            out[n] = ("BF16", bits)
            a = (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            out[n] = ("F32", a)
        W[n] = a
    d = os.path.join(DATA, "models", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    st_write(os.path.join(d, "model.safetensors"), out)
    return W


def write_logits(name, cfg, W, seqs):
    t = {}
    for k, s in enumerate(seqs):
        t[f"tokens.{k}"] = ("I32", np.array(s, dtype=np.int32))
        t[f"logits.{k}"] = ("F32", forward(cfg, W, s).numpy().astype(np.float32))
    st_write(os.path.join(DATA, "forward", name + ".safetensors"), t)


def greedy(cfg, W, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(forward(cfg, W, ids)[-1].argmax()))
    return ids[len(prompt):]


def main():
    os.makedirs(os.path.join(DATA, "forward"), exist_ok=True)
    rng = np.random.default_rng(1234)
    base = {"attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "torch_dtype": "float32"}
    qwen = dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=64,
                intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=300, rope_theta=1000000.0,
                tie_word_embeddings=True, use_sliding_window=False, sliding_window=4096,
                bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    llama3 = dict(base, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64,
                  intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=24, vocab_size=320, rope_theta=500000.0,
                  rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                "original_max_position_embeddings": 64, "rope_type": "llama3"},
                  tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                  bos_token_id=1, eos_token_id=[2, 3])
    mistral = dict(base, architectures=["MistralForCausalLM"], model_type="mistral",
                   hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, vocab_size=200,
                   rope_theta=10000.0, sliding_window=5, tie_word_embeddings=False,
                   bos_token_id=1, eos_token_id=2)
    for name, cfg, dt, seed in (("qwen2-tiny", qwen, "BF16", 1), ("llama3-tiny", llama3, "F32", 2),
                                ("mistral-tiny", mistral, "F32", 3)):
        W = make_model(name, cfg, dt, seed)
        V = cfg["vocab_size"]
        seqs = [[1], list(rng.integers(0, V, 7)), list(rng.integers(0, V, 45))]
        write_logits(name, cfg, W, [[int(x) for x in s] for s in seqs])

    sdir = os.path.join(SHARED, "models", "stories260K-hf")
    with open(os.path.join(sdir, "config.json")) as f:
        scfg = json.load(f)
    SW = st_read(os.path.join(sdir, "model.safetensors"))
    # "Once upon a time," / "Lily and Tom went to" / a longer story opening (ids from tok512)
    seqs = [[1, 403, 407, 261, 378, 432],
            [1, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385]]
    seqs.append([1] + [int(x) for x in rng.integers(3, 512, 90)])
    write_logits("stories260K", scfg, SW, seqs)
    g = {}
    for k, p in enumerate(([1], [1, 401, 396, 267])):
        g[f"prompt.{k}"] = ("I32", np.array(p, dtype=np.int32))
        g[f"greedy.{k}"] = ("I32", np.array(greedy(scfg, SW, p, 120), dtype=np.int32))
    st_write(os.path.join(DATA, "forward", "stories260K-greedy.safetensors"), g)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
