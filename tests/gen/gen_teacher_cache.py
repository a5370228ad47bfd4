#!/usr/bin/python3
"""Reference top-k teacher entries for lora-teacher (tests/test_tcache.c, tests/cli_teacher.sh).

Hugging Face transformers runs stories260K-hf (float64, eager attention) over a small
pre-tokenised dataset and, at every trained position t (t < n-1, labels[t+1] != -100), takes
log_softmax(logits[t] / tau) in float64, its top-k ids and log-probabilities, and
log_tail = log(1 - sum(exp(topk))) computed as logsumexp over the other ids.

Writes, under tests/data/teacher/:
  data.jsonl      {"input_ids", "labels"} lines: TinyStories text tokenised by the model's
                  tokenizer (BOS added); lengths 1..150 tokens (one longer than two forward
                  pieces of 64), one fully masked example, prompt-masked ones
  expected.json   {"k", "runs": [{"tau", "examples": [{"positions", "ids", "logp",
                  "log_tail"}]}]} for tau 1 and 2, k = 8

Run by hand:  /usr/bin/python3 tests/gen/gen_teacher_cache.py
Needs ../shared/models/stories260K-hf and ../shared/data/tinystories beside the checkout.
"""
import json
import os

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "teacher")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "stories260K-hf")
K = 8


def examples(tok):
    text = open(os.path.join(SHARED, "data", "tinystories", "tinystories_sample.txt")).read()
    stories = [s.strip() for s in text.split("<|endoftext|>") if s.strip()]
    ids = [tok(s).input_ids for s in stories]  # BOS first, as the tokenizer adds it
    out = []
    # (tokens, masked prefix length): plain text, a long one (> 2 pieces of 64), a prompt-masked
    # one, a fully masked one, a single token, two tokens
    out.append((ids[0][:40], 0))
    out.append((ids[1][:150], 0))
    out.append((ids[2][:60], 25))
    out.append((ids[3][:20], 20))
    out.append((ids[0][:1], 0))
    out.append((ids[4 % len(ids)][:2], 0))
    out.append((ids[1][150:200] or ids[1][:50], 10))
    res = []
    for toks, masked in out:
        labels = [(-100 if i < masked else t) for i, t in enumerate(toks)]
        res.append((toks, labels))
    return res


def entries(model, toks, labels, tau):
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0].double()
    lp = torch.log_softmax(logits / tau, dim=-1)
    ex = {"positions": [], "ids": [], "logp": [], "log_tail": []}
    for t in range(len(toks) - 1):
        if labels[t + 1] == -100:
            continue
        v, i = torch.topk(lp[t], K)
        rest = torch.ones_like(lp[t], dtype=torch.bool)
        rest[i] = False
        ex["positions"].append(t)
        ex["ids"].append(i.tolist())
        ex["logp"].append([float("%.7g" % x) for x in v.tolist()])
        ex["log_tail"].append(float("%.7g" % torch.logsumexp(lp[t][rest], 0).item()))
    return ex


def main():
    tok = transformers.AutoTokenizer.from_pretrained(MODEL)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        MODEL, torch_dtype=torch.float64, attn_implementation="eager")
    model.eval()
    data = examples(tok)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "data.jsonl"), "w") as f:
        for toks, labels in data:
            f.write(json.dumps({"input_ids": toks, "labels": labels}) + "\n")
    runs = [{"tau": tau, "examples": [entries(model, t, l, tau) for t, l in data]}
            for tau in (1.0, 2.0)]
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"k": K, "model": "stories260K-hf", "torch": torch.__version__,
                   "transformers": transformers.__version__, "runs": runs}, f)
    print("examples", len(data), "positions",
          sum(len(e["positions"]) for e in runs[0]["examples"]))


if __name__ == "__main__":
    main()
