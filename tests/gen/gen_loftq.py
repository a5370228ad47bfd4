#!/usr/bin/python3
"""gen_loftq.py — LoftQ reference data for tests/test_loftq.c.

1. loftq/planted.safetensors: two residual-like matrices and what the peers make of them.
   - `R_a` [60, 90] with a planted spectrum (top 8 singular values 2·0.8^j, the other 52 below
     0.1, random orthogonal bases): PEFT 0.13.2's own LoftQ factorisation of it at rank 8,
     peft.utils.loftq_utils._low_rank_decomposition (torch.linalg.svd, L = U·√S, R = √S·Vh),
     as `B_a` = L [60, 8] and `A_a` = R [8, 90]: PEFT's lora_B and lora_A for scaling 1; `S_a`
     the singular values of R_a (float64 numpy.linalg.svd of the stored fp32 matrix).
   - `R_b` [110, 40] of N(0, 1) entries (a flat, noise-like spectrum, the hard case for a
     randomized SVD) and `S_b` its singular values, for the Eckart-Young bound
     ‖R − R_r‖_F = sqrt(Σ_{j>=r} σ_j²).
2. loftq/stories260K-r8.json: for every projection of ../shared/models/stories260K-hf and each of
   nf4 and q4_0, ‖W‖, ‖R‖ with R = W − deq(Q(W)), and the optimal remaining norm ‖R − R_8‖ of a
   rank-8 approximation (float64 SVD). The quantisers are independent of lorakit's C code: NF4 is
   gen_nf4.py's numpy replica of bitsandbytes (blocksize 64, rows zero-padded to whole blocks),
   Q4_0 the gguf Python package's reference quantiser (llama.cpp's quantize_row_q4_0_ref), rows
   zero-padded to a multiple of 32 as lorakit stores them.

Run by hand (needs numpy, torch, peft 0.13.2, safetensors, gguf):
    /usr/bin/python3 tests/gen/gen_loftq.py ../shared/models/stories260K-hf tests/data/loftq
"""
import json
import os
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType, quants
from peft.utils.loftq_utils import _low_rank_decomposition
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_nf4 import NF4, quantize_nf4_row  # noqa: E402


def orthonormal(rng, n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def planted(rng, out, inn, r):
    k = min(out, inn)
    top = 2.0 * 0.8 ** np.arange(r)
    tail = np.sort(rng.uniform(0.0, 0.1, k - r))[::-1]
    s = np.concatenate([top, tail])
    m = orthonormal(rng, out, k) @ np.diag(s) @ orthonormal(rng, inn, k).T
    return m.astype(np.float32)


def deq_nf4(w, bs=64):
    out, n = w.shape
    rows = []
    for i in range(out):
        codes, absmax = quantize_nf4_row(w[i], bs)
        q = np.empty(codes.size * 2, dtype=np.uint8)
        q[0::2], q[1::2] = codes >> 4, codes & 15
        vals = (NF4[q].reshape(-1, bs) * absmax[:, None]).astype(np.float32)
        rows.append(vals.reshape(-1)[:n])
    return np.stack(rows)


def deq_q4_0(w):
    out, n = w.shape
    pad = (-n) % 32
    wp = np.pad(w, ((0, 0), (0, pad)))
    q = quants.quantize(wp, GGMLQuantizationType.Q4_0)
    return quants.dequantize(q, GGMLQuantizationType.Q4_0)[:, :n].astype(np.float32)


def model_stats(model_dir, r):
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    res = {"rank": r, "nf4": {}, "q4_0": {}}
    for name in sorted(w):
        if not name.endswith("_proj.weight"):
            continue
        x = w[name].astype(np.float32)
        for fmt, deq in (("nf4", deq_nf4), ("q4_0", deq_q4_0)):
            resid = (x.astype(np.float64) - deq(x).astype(np.float64))
            s = np.linalg.svd(resid, compute_uv=False)
            res[fmt][name[: -len(".weight")]] = {
                "weight_norm": float(np.linalg.norm(x.astype(np.float64))),
                "residual_norm": float(np.linalg.norm(resid)),
                "optimal_remaining": float(np.sqrt((s[r:] ** 2).sum())),
            }
    return res


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    ra = planted(rng, 60, 90, 8)
    peft = _low_rank_decomposition(torch.from_numpy(ra.astype(np.float64)), reduced_rank=8)
    rb = rng.standard_normal((110, 40)).astype(np.float32)
    save_file({
        "R_a": ra,
        "B_a": peft["L"].numpy().astype(np.float32),
        "A_a": peft["R"].numpy().astype(np.float32),
        "S_a": np.linalg.svd(ra.astype(np.float64), compute_uv=False),
        "R_b": rb,
        "S_b": np.linalg.svd(rb.astype(np.float64), compute_uv=False),
    }, os.path.join(out, "planted.safetensors"))
    with open(os.path.join(out, "stories260K-r8.json"), "w") as f:
        json.dump(model_stats(model_dir, 8), f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
