#!/usr/bin/python3
"""Cross-check of the forward fixtures against the real peer, Hugging Face transformers.

gen_forward.py is our own implementation of the HF forward; this script loads the same folders
with transformers' AutoModelForCausalLM (float64, eager attention) and compares its logits with
the committed fixtures. Run by hand after regenerating fixtures:
    /usr/bin/python3 -m pip install --break-system-packages transformers==4.46.3 safetensors
    /usr/bin/python3 tests/gen/check_with_transformers.py
Last run: transformers 4.46.3, torch 1.13 (Debian) — see tests/data/README.md for the figures.
"""
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_forward import DATA, SHARED, st_read  # noqa: E402

CASES = [("qwen2-tiny", os.path.join(DATA, "models", "qwen2-tiny")),
         ("llama3-tiny", os.path.join(DATA, "models", "llama3-tiny")),
         ("mistral-tiny", os.path.join(DATA, "models", "mistral-tiny")),
         ("stories260K", os.path.join(SHARED, "models", "stories260K-hf"))]


def main():
    worst = 0.0
    for name, folder in CASES:
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float64,
                                                     attn_implementation="eager")
        model.eval()
        fx = st_read(os.path.join(DATA, "forward", name + ".safetensors"))
        k = 0
        while f"tokens.{k}" in fx:
            ids = torch.from_numpy(fx[f"tokens.{k}"].astype("int64"))[None]
            with torch.no_grad():
                got = model(ids).logits[0].numpy()
            d = abs(got - fx[f"logits.{k}"]).max()
            worst = max(worst, d)
            print(f"{name} seq {k} T={ids.shape[1]}: max |transformers - fixture| = {d:.3g}")
            k += 1
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: worst {worst:.3g}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
