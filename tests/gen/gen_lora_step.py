#!/usr/bin/python3
"""Reference for one LoRA training step (tests/test_lora_step.c), made with the real peers:
Hugging Face transformers + PEFT on Debian's torch 1.13.

    /usr/bin/python3 -m pip install --break-system-packages transformers==4.46.3 peft==0.13.2
    /usr/bin/python3 tests/gen/gen_lora_step.py

Base: ../shared/models/stories260K-hf (f32). LoraConfig r=4, lora_alpha=8 (and a second run with
use_rslora=True), all seven projections, dropout 0. A and B are set to seeded random non-zero
values and saved with PEFT's save_pretrained (tests/data/lora/init[-rslora]/). Batch: two
pre-tokenised sequences of 24 tokens with the first 6 labels masked (-100); loss = transformers'
mean cross-entropy over the unmasked shifted labels of the whole batch; one torch.optim.SGD step
(lr 0.5); "-nf4": the same on the base whose projections went through lorakit's NF4 (row-wise
blocks of 64, bit-exact bitsandbytes quantiser of gen_nf4.py) and back.
Writes tests/data/lora/step[-rslora|-nf4].safetensors: the token ids, labels, the loss and
every lora_A/lora_B after the step under PEFT's key names.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "lora")
BASE = os.path.join(HERE, "..", "..", "..", "shared", "models", "stories260K-hf")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def nf4_dequantize_(model):
    """Replace every decoder projection by its NF4 round trip as lorakit stores it: each row on
    its own, zero-padded to blocks of 64, fp32 absmax per block (gen_nf4.py's bit-exact
    bitsandbytes quantiser)."""
    from gen_nf4 import NF4, quantize_nf4_row
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.split(".")[-1] not in TARGETS:
                continue
            w = mod.weight.detach().numpy()
            out = np.empty_like(w)
            for r in range(w.shape[0]):
                codes, absmax = quantize_nf4_row(w[r], 64)
                q = np.empty(codes.size * 2, dtype=np.uint8)
                q[0::2], q[1::2] = codes >> 4, codes & 15
                vals = (NF4[q].reshape(len(absmax), 64) * absmax[:, None]).reshape(-1)
                out[r] = vals[: w.shape[1]]
            mod.weight.copy_(torch.from_numpy(out))


def run(tag, rslora, nf4=False):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    if nf4:
        nf4_dequantize_(model)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM", use_rslora=rslora)
    model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    init_dir = os.path.join(DATA, "init" + tag)
    model.save_pretrained(init_dir)
    os.remove(os.path.join(init_dir, "README.md"))  # PEFT's model-card template
    cj = os.path.join(init_dir, "adapter_config.json")
    with open(cj) as f:
        c = json.load(f)
    c["base_model_name_or_path"] = "stories260K-hf"  # not this machine's absolute path
    with open(cj, "w") as f:
        json.dump(c, f, indent=2)
    rng = np.random.default_rng(7)
    ids = torch.from_numpy(rng.integers(3, 512, (2, 24))).long()
    ids[:, 0] = 1
    labels = ids.clone()
    labels[:, :6] = -100
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    opt.step()
    t = {"input_ids": ids.to(torch.int32).contiguous(), "labels": labels.to(torch.int32).contiguous(),
         "loss": out.loss.detach().reshape(1).float()}
    for n, p in model.named_parameters():
        if "lora_" in n:
            key = n.replace(".default", "")
            t[key] = p.detach().float().contiguous()
    save_file(t, os.path.join(DATA, "step" + tag + ".safetensors"),
              metadata={"peers": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}",
                        "lr": "0.5"})
    print(tag or "plain", "loss", float(out.loss))


def main():
    os.makedirs(DATA, exist_ok=True)
    which = sys.argv[1:] or ["plain", "rslora", "nf4"]
    if "plain" in which:
        run("", False)
    if "rslora" in which:
        run("-rslora", True)
    if "nf4" in which:  # the same step on the NF4-dequantised base
        run("-nf4", False, nf4=True)


if __name__ == "__main__":
    sys.exit(main())
