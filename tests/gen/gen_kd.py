#!/usr/bin/python3
"""Reference for src/kd.c (tests/test_kd.c): distillation losses and their gradient w.r.t. the
student's final hidden states, in float64 with torch autograd.

    /usr/bin/python3 -m pip install --no-deps --target /tmp/trl017 trl==0.17.0   (optional)
    PYTHONPATH=/tmp/trl017 /usr/bin/python3 tests/gen/gen_kd.py

Student: h [T, C] and head [V, C] (logits z = h·headᵀ); teacher: ht [T, C_T] and a larger head
[V_T, C_T] cut to its first V rows (y = ht·thead[:V]ᵀ), C_T != C, V > 4096 so that two vocabulary
chunks of kd.c are used, T = 40 > 32 rows so that two row blocks are; targets with some -100.
Per position with a target, at temperature tau (student and teacher logits both divided by tau):
    loss = (1 - alpha)·CE(z, target) + alpha·tau²·D
with D as TRL's GKDTrainer.generalized_jsd_loss (trl 0.17.0) defines it: beta = 0 forward
KL(p_T‖p_S), beta = 1 reverse KL(p_S‖p_T), else m = beta·p_T + (1 - beta)·p_S and
D = beta·KL(p_T‖m) + (1 - beta)·KL(p_S‖m). When trl is importable, the D sums of every full-vocab
case are checked against TRL's own function (loaded from the installed trl source by itself,
since importing the trl package needs accelerate and datasets).
Top-k cases: the teacher as a cache of its k most likely ids at tau with their log-probabilities
and the log of the remaining mass, stored in fp32; D compared over k + 1 buckets (the k ids and a
tail holding every other id), computed from the stored fp32 values.
Writes tests/data/kd/kd.safetensors: the inputs, then per case N: loss.N, ce.N, kd.N (F64 sums)
and dh.N = grad_scale·∂(Σ loss)/∂h (F32 [T, C]); the cases are listed in the metadata.
"""
import ast
import importlib.util
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "kd",
                   "kd.safetensors")
T, C, V, CT, VT, K = 40, 8, 4133, 12, 4160, 20
GRAD_SCALE = 0.25
# (objective, tau, beta, alpha, top-k)
CASES = [("fkl", 1.0, 0.0, 1.0, 0), ("fkl", 2.0, 0.0, 0.5, 0), ("rkl", 1.0, 0.0, 1.0, 0),
         ("rkl", 0.7, 0.0, 0.3, 0), ("jsd", 1.0, 0.5, 1.0, 0), ("jsd", 1.5, 0.1, 0.7, 0),
         ("jsd", 1.0, 0.0, 1.0, 0), ("jsd", 2.0, 1.0, 0.9, 0), ("fkl", 1.0, 0.0, 1.0, K),
         ("fkl", 2.0, 0.0, 0.6, K), ("rkl", 1.5, 0.0, 1.0, K), ("jsd", 1.0, 0.3, 0.8, K),
         ("jsd", 0.8, 0.9, 1.0, K)]


def divergence(lp, lq, kind, beta):
    """Per-row D from log-probabilities lp (teacher) and lq (student) over the last dim, written
    the way TRL's generalized_jsd_loss is (F.kl_div(input, target) = KL(target ‖ input))."""
    if kind == "fkl" or (kind == "jsd" and beta == 0):
        return F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1)
    if kind == "rkl" or (kind == "jsd" and beta == 1):
        return F.kl_div(lp, lq, reduction="none", log_target=True).sum(-1)
    b = torch.tensor(beta, dtype=lq.dtype)
    lm = torch.logsumexp(torch.stack([lq + torch.log(1 - b), lp + torch.log(b)]), dim=0)
    return (b * F.kl_div(lm, lp, reduction="none", log_target=True) +
            (1 - b) * F.kl_div(lm, lq, reduction="none", log_target=True)).sum(-1)


def trl_jsd():
    """TRL's GKDTrainer.generalized_jsd_loss as a plain function, or None without trl."""
    spec = importlib.util.find_spec("trl")
    if spec is None:
        return None, None
    path = os.path.join(spec.submodule_search_locations[0], "trainer", "gkd_trainer.py")
    tree = ast.parse(open(path).read())
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == "GKDTrainer":
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "generalized_jsd_loss":
                    fn.decorator_list = []
                    ns = {"torch": torch, "F": F}
                    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), ns)
                    version = open(os.path.join(spec.submodule_search_locations[0],
                                                "__init__.py")).read()
                    version = version.split("__version__ = \"")[1].split("\"")[0]
                    return ns["generalized_jsd_loss"], version
    raise RuntimeError("generalized_jsd_loss not found in " + path)


def topk_cache(y, tau):
    """fp32 top-k cache of the teacher logits y [T, V] at tau: ids, logp, log_tail."""
    lp = F.log_softmax(y / tau, dim=-1)
    logp, ids = torch.topk(lp, K, dim=-1)
    rest = lp.clone()
    rest.scatter_(-1, ids, -math.inf)
    return ids.to(torch.int32), logp.float(), torch.logsumexp(rest, dim=-1).float()


def bucketed(z, tau, ids, logp, log_tail):
    """Teacher and student log-probabilities over the k + 1 buckets [T, K + 1]."""
    lq = F.log_softmax(z / tau, dim=-1)
    lq_top = lq.gather(-1, ids.long())
    rest = lq.scatter(-1, ids.long(), -math.inf)
    lq_b = torch.cat([lq_top, torch.logsumexp(rest, dim=-1, keepdim=True)], -1)
    lp_b = torch.cat([logp.double(), log_tail.double()[:, None]], -1)
    return lp_b, lq_b


def main():
    g = np.random.default_rng(6)
    h = g.standard_normal((T, C)).astype(np.float32)
    head = (0.7 * g.standard_normal((V, C))).astype(np.float32)
    # the teacher sees the student's features plus its own: y ≈ z + noise, so D is moderate
    ht = np.concatenate([h, g.standard_normal((T, CT - C))], 1).astype(np.float32)
    thead = (0.4 * g.standard_normal((VT, CT))).astype(np.float32)
    thead[:V, :C] = head + 0.3 * g.standard_normal((V, C))
    thead = thead.astype(np.float32)
    targets = g.integers(0, V, T).astype(np.int32)
    targets[[0, 5, 6, 17, 33]] = -100
    out = {"h": torch.from_numpy(h), "head": torch.from_numpy(head), "ht": torch.from_numpy(ht),
           "thead": torch.from_numpy(thead), "targets": torch.from_numpy(targets)}
    valid = torch.from_numpy(targets >= 0)
    tg = torch.from_numpy(targets.astype(np.int64))[valid]
    y = (torch.from_numpy(ht).double() @ torch.from_numpy(thead[:V]).double().T)[valid]
    jsd_fn, trl_version = trl_jsd()
    worst = 0.0
    for n, (kind, tau, beta, alpha, k) in enumerate(CASES):
        hv = torch.from_numpy(h).double().requires_grad_(True)
        z = (hv @ torch.from_numpy(head).double().T)[valid]
        ce = F.cross_entropy(z, tg, reduction="none")
        if k:
            ids, logp, log_tail = topk_cache(y, tau)
            full_ids = torch.zeros((T, K), dtype=torch.int32)
            full_ids[valid] = ids
            out[f"ids.{n}"] = full_ids
            out[f"logp.{n}"] = torch.zeros((T, K)).index_put((valid,), logp)
            out[f"log_tail.{n}"] = torch.zeros(T).index_put((valid,), log_tail)
            lp, lq = bucketed(z, tau, ids, logp, log_tail)
        else:
            lp, lq = F.log_softmax(y / tau, dim=-1), F.log_softmax(z / tau, dim=-1)
        d = divergence(lp, lq, kind, beta)
        if jsd_fn is not None and not k:
            b = {"fkl": 0.0, "rkl": 1.0}.get(kind, beta)
            want = jsd_fn(z[None].detach(), y[None], beta=b, temperature=tau, reduction="sum")
            dd = float(d.detach().sum())
            worst = max(worst, abs(float(want) - dd) / dd)
        loss = ((1 - alpha) * ce + alpha * tau * tau * d).sum()
        loss.backward()
        out[f"loss.{n}"] = torch.tensor([float(loss)], dtype=torch.float64)
        out[f"ce.{n}"] = torch.tensor([float(ce.sum())], dtype=torch.float64)
        out[f"kd.{n}"] = torch.tensor([float(tau * tau * d.sum())], dtype=torch.float64)
        out[f"dh.{n}"] = (GRAD_SCALE * hv.grad).float()
        print(f"case {n}: {kind} tau {tau} beta {beta} alpha {alpha} k {k}: "
              f"loss {float(loss):.6f} D/pos {float(d.mean()):.4f}")
    if jsd_fn is not None:
        print(f"TRL {trl_version} generalized_jsd_loss agrees: max rel diff {worst:.2e}")
        assert worst < 1e-12
    meta = {"peers": f"torch {torch.__version__}" +
            (f", trl {trl_version} generalized_jsd_loss cross-check" if jsd_fn else ""),
            "grad_scale": str(GRAD_SCALE),
            "cases": json.dumps([list(c) for c in CASES])}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata=meta)


if __name__ == "__main__":
    main()
