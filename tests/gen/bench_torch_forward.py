#!/usr/bin/python3
"""Peer figure for BENCHMARKS.md: PyTorch forward tokens/s of a Hugging Face Llama/Qwen2 folder.

The same maths as tests/gen/gen_forward.py, written with batched torch ops (F.linear, one masked
matmul attention per layer) in the dtype asked for, under torch.no_grad(), with a fixed thread
count. Usage (Debian's python3-torch 1.13):
    /usr/bin/python3 tests/gen/bench_torch_forward.py MODEL_DIR --dtype fp32|bf16 --tokens 512 --threads 2
Prints one JSON line: tokens/s (best of --repeat) and peak RSS.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_forward import inv_freq_hf, st_read  # noqa: E402


def build(cfg, W, dt):
    return {k: torch.from_numpy(v).to(dt) for k, v in W.items()}


@torch.no_grad()
def forward(cfg, w, tokens, dt):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    T = tokens.shape[0]
    pos = torch.arange(T, dtype=torch.float32)
    ang = (inv_freq_hf(cfg, hd)[:, None] @ pos[None, :]).T
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(dt), emb.sin().to(dt)
    mask = torch.full((T, T), float("-inf")).triu(1).to(dt)

    def rms(x, g):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dt) * g

    def rot(x):
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-b, a], -1) * sin

    def lin(x, n):
        return F.linear(x, w[n + ".weight"], w.get(n + ".bias"))

    x = w["model.embed_tokens.weight"][tokens]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rot(lin(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1))
        k = rot(lin(h, p + "self_attn.k_proj").view(T, KVH, hd).transpose(0, 1))
        v = lin(h, p + "self_attn.v_proj").view(T, KVH, hd).transpose(0, 1)
        k = k.repeat_interleave(H // KVH, 0)
        v = v.repeat_interleave(H // KVH, 0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask
        a = (s.float().softmax(-1).to(dt) @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + lin(a, p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        x = x + lin(F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"),
                    p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    return F.linear(x, w.get("lm_head.weight", w["model.embed_tokens.weight"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    t0 = time.time()
    w = build(cfg, st_read(os.path.join(a.model, "model.safetensors")), dt)
    load = time.time() - t0
    tok = torch.from_numpy(np.random.default_rng(0).integers(0, cfg["vocab_size"], a.tokens))
    best = 1e30
    for _ in range(a.repeat):
        t0 = time.time()
        forward(cfg, w, tok, dt)
        best = min(best, time.time() - t0)
    print(json.dumps({"peer": "pytorch " + torch.__version__, "dtype": a.dtype,
                      "threads": a.threads, "tokens": a.tokens, "load_s": round(load, 2),
                      "tokens_per_s": round(a.tokens / best, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                            / 1024)}))


if __name__ == "__main__":
    main()
