#!/usr/bin/env python3
"""Reference logits, loss and greedy chat continuations of SmolLM2-135M-Instruct loaded from its
GGUF file by transformers (f32 compute on the dequantised weights, tied embeddings), for
test_model_gguf.c's parity test (lorakit loads the same GGUF in place).

Peer: transformers 4.46.3 + gguf 0.19.0 + torch 2.15 (/root/peers/venv), whose GGUF loader
dequantises every tensor with gguf-py and un-permutes llama.cpp's q/k rows.

Usage: /root/peers/venv/bin/python tests/gen/gen_gguf_model.py \
           [GGUF_DIR] [GGUF_NAME] [OUT_JSON]
Defaults: ../shared/models/smollm2-135m-instruct-gguf, SmolLM2-135M-Instruct.Q4_1.gguf,
tests/data/gguf_model/smollm2_q4_1.json.

For each prompt (chat template with the generation prompt, ids from transformers' tokenizer):
the ids, the last position's 16 largest logits (id, value) and the logits of a fixed subset of
ids (every 1021st), the mean next-token NLL over the prompt, and 24 greedy tokens.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "../../../shared/models/smollm2-135m-instruct-gguf")
name = sys.argv[2] if len(sys.argv) > 2 else "SmolLM2-135M-Instruct.Q4_1.gguf"
out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(
    HERE, "../data/gguf_model/smollm2_q4_1.json")

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Translate 'good morning' into Spanish.",
]
N_GEN = 24
SUBSET_STEP = 1021

torch.manual_seed(0)
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, tie_word_embeddings=True,
                                             torch_dtype=torch.float32)
model.eval()
assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
V = model.config.vocab_size

cases = []
with torch.no_grad():
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}],
                                      add_generation_prompt=True, return_tensors="pt")
        logits = model(ids).logits[0].double()
        last = logits[-1]
        top = torch.topk(last, 16)
        logp = torch.log_softmax(logits[:-1], dim=-1)
        nll = -logp.gather(1, ids[0, 1:, None]).mean().item()
        # an explicit mask: the prompt holds <|im_end|> (id 2), which is also the pad id
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_GEN,
                             do_sample=False, eos_token_id=None, pad_token_id=tok.eos_token_id)
        cases.append({
            "prompt": p,
            "ids": ids[0].tolist(),
            "top_ids": top.indices.tolist(),
            "top_logits": [round(v, 6) for v in top.values.tolist()],
            "subset_logits": [round(last[i].item(), 6) for i in range(0, V, SUBSET_STEP)],
            "nll": nll,
            "greedy": gen[0, ids.shape[1]:].tolist(),
            "greedy_text": tok.decode(gen[0, ids.shape[1]:]),
        })
        print(p, "->", repr(cases[-1]["greedy_text"]), "nll", round(nll, 5))

os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump({"model": name, "peer": "transformers 4.46.3 (gguf 0.19.0, torch 2.15.0), f32",
               "vocab": V, "subset_step": SUBSET_STEP, "cases": cases}, f, indent=1)
print("wrote", out)
