#!/usr/bin/env python3
"""Writes samples/data/identity-{train,test}.jsonl for the quickstart: LLaMA-Factory's identity
set (../shared/data/llamafactory-demo/identity.json, 91 Alpaca records in English and Chinese
with {{name}}/{{author}} placeholders) with the assistant named Pico, made by Lorakit Labs, as
chat messages. The 16 English records only (SmolLM2 is an English model, and a short file keeps
the quickstart's training within a few minutes on two cores); four of their questions are held out
(never trained on) to score the adapter: the replies should name Pico. Deterministic; the
committed files are its output.
    python3 samples/make_identity_data.py [IDENTITY_JSON]
"""
import json
import os
import sys

NAME, AUTHOR = "Pico", "Lorakit Labs"
HELD_OUT = ["Who are you?", "What is your name?", "Can you tell me a little bit about yourself?",
            "Are you trained by OpenAI?"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "..", "shared", "data", "llamafactory-demo", "identity.json")
    with open(src, encoding="utf-8") as f:
        records = json.load(f)
    train, test = [], []
    for r in records:
        if any("\u4e00" <= ch <= "\u9fff" for ch in r["instruction"] + r["output"]):
            continue  # the Chinese records
        answer = r["output"].replace("{{name}}", NAME).replace("{{author}}", AUTHOR)
        ex = {"messages": [{"role": "user", "content": r["instruction"]},
                           {"role": "assistant", "content": answer}]}
        (test if r["instruction"] in HELD_OUT else train).append(ex)
    assert len(test) == len(HELD_OUT)
    for name, rows in (("identity-train.jsonl", train), ("identity-test.jsonl", test)):
        with open(os.path.join(here, "data", name), "w", encoding="utf-8") as f:
            for ex in rows:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} examples")


if __name__ == "__main__":
    main()
