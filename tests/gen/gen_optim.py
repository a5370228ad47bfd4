#!/usr/bin/python3
"""Reference for src/optim.c (tests/test_optim.c): torch.optim.AdamW / SGD over 5 steps with fixed
gradients, torch.nn.utils.clip_grad_norm_, and transformers' cosine / linear / constant schedules
with warmup. Debian's torch 1.13 + transformers 4.46.3:
    /usr/bin/python3 tests/gen/gen_optim.py
"""
import os

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_linear_schedule_with_warmup)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "optim",
                   "optim.safetensors")


def main():
    g = np.random.default_rng(3)
    p0 = torch.from_numpy(g.standard_normal(37).astype(np.float32))
    grads = torch.from_numpy(g.standard_normal((5, 37)).astype(np.float32))
    t = {"p0": p0.clone(), "grads": grads.clone()}
    for name, make in (("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.999),
                                                              eps=1e-8, weight_decay=0.1)),
                       ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.01, weight_decay=0.1))):
        p = torch.nn.Parameter(p0.clone())
        opt = make([p])
        for s in range(5):
            p.grad = grads[s].clone()
            opt.step()
        t[name] = p.detach().clone()
    p = torch.nn.Parameter(p0.clone())
    p.grad = grads[0].clone() * 3
    t["clip_norm"] = torch.tensor([float(torch.nn.utils.clip_grad_norm_([p], 1.0))])
    t["clipped"] = p.grad.clone()
    for name, fn in (("cosine", get_cosine_schedule_with_warmup),
                     ("linear", get_linear_schedule_with_warmup)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
        sch = fn(opt, num_warmup_steps=10, num_training_steps=100)
        lrs = []
        for _ in range(100):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
        t["lr_" + name] = torch.tensor(lrs, dtype=torch.float32)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sch = get_constant_schedule_with_warmup(opt, num_warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    t["lr_constant"] = torch.tensor(lrs, dtype=torch.float32)
    save_file(t, OUT, metadata={"peers": f"torch {torch.__version__}, transformers "
                                         f"{transformers.__version__}"})


if __name__ == "__main__":
    main()
