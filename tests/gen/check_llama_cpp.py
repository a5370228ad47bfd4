#!/usr/bin/python3
"""Cross-check lorakit's GGUF outputs with the real llama.cpp (through llama-cpp-python).

Usage: check_llama_cpp.py BUILD_DIR
  1. lora-merge stories260K-hf + tests/data/adapters/stories-lora → merged.gguf (f32); llama.cpp
     loads it and its logits for `tokens` are compared with PEFT's (reference.safetensors).
  2. lora-export stories-lora → GGUF LoRA; llama.cpp applies it (lora_path) on its own
     ../shared/models/stories260K/stories260K.gguf; logits compared with PEFT's.
  3. An rsLoRA adapter with random factors (lora-random-adapter --rslora) exported to GGUF
     (scale folded into B, alpha 0) and applied by llama.cpp: mean NLL of `tokens` compared with
     lora-eval -a on the Hugging Face base.
Run by hand; llama-cpp-python is not needed by CI (install: pip install --target DIR
llama-cpp-python, then PYTHONPATH=DIR).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from llama_cpp import Llama
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
STORIES = os.path.join(SHARED, "models", "stories260K-hf")
STORIES_GGUF = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")


def logits(model_path, tokens, lora=None):
    # F32 KV cache (llama.cpp defaults to F16, which alone moves logits by ~1e-2)
    kw = dict(model_path=model_path, n_ctx=64, logits_all=True, verbose=False, n_threads=1,
              type_k=0, type_v=0)
    if lora:
        kw["lora_path"] = lora
    llm = Llama(**kw)
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


def nll(lg, tokens):
    tot = 0.0
    for t in range(len(tokens) - 1):
        row = lg[t].astype(np.float64)
        m = row.max()
        tot += m + math.log(np.exp(row - m).sum()) - row[tokens[t + 1]]
    return tot / (len(tokens) - 1)


def run(*args):
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return out


def main():
    b = sys.argv[1]
    ref = load_file(os.path.join(DATA, "adapters", "reference.safetensors"))
    tokens = [int(t) for t in ref["tokens"]]
    want = ref["logits.stories-lora"]
    ad = os.path.join(DATA, "adapters", "stories-lora")
    with tempfile.TemporaryDirectory() as d:
        run(os.path.join(b, "lora-merge"), "-m", STORIES, "-a", ad, "-o", d + "/merged.gguf",
            "--dtype", "f32", "-q")
        got = logits(d + "/merged.gguf", tokens)
        print("1. merged GGUF in llama.cpp vs PEFT: max |logit diff| %.3g" % np.abs(got - want).max())
        run(os.path.join(b, "lora-export"), "-a", ad, "-m", STORIES, "--to", "gguf",
            "-o", d + "/lora.gguf")
        got = logits(STORIES_GGUF, tokens, d + "/lora.gguf")
        print("2. exported GGUF LoRA on llama.cpp's stories260K.gguf vs PEFT: max |logit diff| %.3g"
              % np.abs(got - want).max())
        run(os.path.join(b, "lora-random-adapter"), "-m", STORIES, "-o", d + "/rs", "--rank", "8",
            "--rslora", "--std-b", "0.05", "--seed", "3")
        run(os.path.join(b, "lora-export"), "-a", d + "/rs", "-m", STORIES, "--to", "gguf",
            "-o", d + "/rs.gguf")
        ours = json.loads(run(os.path.join(b, "lora-eval"), "-m", STORIES, "-a", d + "/rs",
                              "--ids", ",".join(map(str, tokens)), "--json"))["loss"]
        base = json.loads(run(os.path.join(b, "lora-eval"), "-m", STORIES,
                              "--ids", ",".join(map(str, tokens)), "--json"))["loss"]
        theirs = nll(logits(STORIES_GGUF, tokens, d + "/rs.gguf"), tokens)
        print("3. rsLoRA (folded) in llama.cpp: loss %.6f, lorakit -a %.6f (base %.6f)"
              % (theirs, ours, base))


if __name__ == "__main__":
    main()
