#!/usr/bin/python3
"""Peer figure for BENCHMARKS.md: one LoRA training step with Hugging Face transformers + PEFT on
PyTorch (CPU), on a model folder (e.g. the random-weight Qwen2.5-0.5B shape from
lora-random-model). Loads the folder in fp32 or bf16, wraps it with PEFT LoRA (r, alpha 2r, all
seven projections), and times forward + backward + AdamW over --tokens random ids.

    /usr/bin/python3 tests/gen/bench_torch_train.py DIR --dtype bf16 --tokens 512 --rank 16 --threads 2

Prints one JSON line: seconds per step (median of --steps after one warm-up; wall clock, and the
process's CPU seconds over all threads), tokens/s, peak RSS.
Peers: Debian's torch 1.13, transformers 4.46.3, peft 0.13.2.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dt,
                                                 attn_implementation="eager")
    if a.checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    cfg = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, (1, a.tokens))).long()
    times, cpu = [], []
    for i in range(a.steps + 1):
        t0, c0 = time.time(), time.process_time()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.time() - t0)
            cpu.append(time.process_time() - c0)  # all threads; OpenMP's spin-waits count too
    s = statistics.median(times)
    print(json.dumps({"peer": f"torch {torch.__version__}, transformers {transformers.__version__}"
                              f", peft {peft.__version__}",
                      "dtype": a.dtype, "threads": a.threads, "tokens": a.tokens, "rank": a.rank,
                      "checkpointing": a.checkpointing, "s_per_step": round(s, 3),
                      "cpu_s_per_step": round(statistics.median(cpu), 3),
                      "tokens_per_s": round(a.tokens / s, 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                            / 1024)}))


if __name__ == "__main__":
    main()
