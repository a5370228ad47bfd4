"""gen_tok_hf.py — Hugging Face `tokenizers` reference ids for the tokenizer tests.

Run by hand with a python that has Hugging Face tokenizers (pip install tokenizers; used: 0.23.3):
    python3 tests/gen/gen_tok_hf.py ../shared tests/data/tok
Reads corpus.inp (written by gen_tok_sp.py) and writes hf-<name>.out (ids, no special tokens) for
each tokenizer.json under ../shared/models, plus the added-token fixture folder added/ (a copy of
stories260K-hf's tokenizer.json with merges in the ["a", "b"] form and extra added tokens using
lstrip, rstrip, single_word and normalized) with added.inp / added.out (with special tokens)."""
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
import tok_corpus  # noqa: E402

shared, out = sys.argv[1], sys.argv[2]
strings = tok_corpus.corpus()

# Llama-2 and Mistral through tokenizer.json gave files identical to sp-*.out: not kept.
def write_decoded(tk, name):
    """hf-NAME.dec: decode(encode(s)) of every corpus string, HF's decoder (inp format)."""
    tok_corpus.write_inp(os.path.join(out, f"hf-{name}.dec"),
                         [tk.decode(tk.encode(s, add_special_tokens=False).ids,
                                    skip_special_tokens=False) for s in strings])


MODELS = {"qwen2.5": "qwen2.5-tokenizer", "llama3": "llama-3.2-3b-instruct",
          "stories260K": "stories260K-hf"}
for name, d in MODELS.items():
    tk = Tokenizer.from_file(os.path.join(shared, "models", d, "tokenizer.json"))
    with open(os.path.join(out, f"hf-{name}.out"), "w") as f:
        for s in strings:
            f.write(" ".join(str(i) for i in tk.encode(s, add_special_tokens=False).ids) + "\n")
    write_decoded(tk, name)

# added-token options on the small stories260K vocabulary
j = json.load(open(os.path.join(shared, "models/stories260K-hf/tokenizer.json")))
j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
n = len(j["model"]["vocab"])
extra = [("<tool>", dict(special=True, normalized=False)),
         ("[L]", dict(special=False, normalized=False, lstrip=True)),
         ("[R]", dict(special=False, normalized=False, rstrip=True)),
         ("[LR]", dict(special=True, normalized=False, lstrip=True, rstrip=True)),
         ("word", dict(special=False, normalized=False, single_word=True)),
         ("ness", dict(special=False, normalized=True)),
         ("<tool_call>", dict(special=True, normalized=False))]
for i, (c, kw) in enumerate(extra):
    t = dict(id=n + i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False,
             special=False)
    t.update(kw)
    j["added_tokens"].append(t)
os.makedirs(os.path.join(out, "added"), exist_ok=True)
with open(os.path.join(out, "added", "tokenizer.json"), "w") as f:
    json.dump(j, f, ensure_ascii=False)
tk = Tokenizer.from_file(os.path.join(out, "added", "tokenizer.json"))
added = ["<tool>x", "a <tool> b", "a   [L] b", "a [R]   b", "x  [LR]  y", "word", "a word b",
         "awordb", "words", "_word", "word.", "goodness me", "good ness", "<tool_call><tool>",
         "<tool_cal", "[L][R][LR]", "  [L]", "[R]  ", "café [LR] 你好", "\n[LR]\n"]
tok_corpus.write_inp(os.path.join(out, "added.inp"), added)
with open(os.path.join(out, "added.out"), "w") as f:
    for s in added:
        f.write(" ".join(str(i) for i in tk.encode(s).ids) + "\n")

# Pipeline variants on the corpus (ids without special tokens), to cover code paths the shipped
# tokenizers do not use. The C test builds the same variants from the same source files.
#   metaspace-first:  stories260K, normalizer NFKC+Lowercase, Metaspace(first, split=false)
#   metaspace-always: stories260K, normalizer NFD, Metaspace(always, split=true), Metaspace decoder
#   qwen-gpt2:        Qwen2.5 vocab, no normalizer, ByteLevel(add_prefix_space, use_regex) only
#   qwen-smollm:      Qwen2.5 vocab, SmolLM's Sequence[Digits(individual), ByteLevel(use_regex)]
VARIANTS = {
    "metaspace-first": ("stories260K-hf", {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
                                                           {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "first", "split": False}}),
    "metaspace-always": ("stories260K-hf", {
        "normalizer": {"type": "NFD"},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True}}),
    "qwen-gpt2": ("qwen2.5-tokenizer", {
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                          "use_regex": True}}),
    "qwen-smollm": ("qwen2.5-tokenizer", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]}}),
}
for name, (d, patch) in VARIANTS.items():
    j = json.load(open(os.path.join(shared, "models", d, "tokenizer.json")))
    j.update(patch)
    tk = Tokenizer.from_str(json.dumps(j))
    with open(os.path.join(out, f"hf-{name}.out"), "w") as f:
        for s in strings:
            f.write(" ".join(str(i) for i in tk.encode(s, add_special_tokens=False).ids) + "\n")
    write_decoded(tk, name)

# Special-token soup: corpus pieces, Unicode soup and special-token texts of every family mixed
# (seed 5), through all five tokenizers: ids, decode, and decode with skip_special_tokens.
rng = random.Random(5)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>",
            "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "[INST]", " ", "\n",
            "\u2581", "<0x0A>", "<|fim_prefix|>"]
mixed = []
for i in range(120):
    parts = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(SPECIALS))
        elif r < 0.6:
            parts.append(rng.choice(strings)[:rng.randint(0, 40)])
        else:
            parts.append(tok_corpus.soup(rng, rng.randint(1, 12)))
    mixed.append("".join(parts))
tok_corpus.write_inp(os.path.join(out, "specials.inp"), mixed)
for name, d in dict(MODELS, llama2="llama2-tokenizer",
                    mistral="mistral-7b-instruct-v0.2").items():
    tk = Tokenizer.from_file(os.path.join(shared, "models", d, "tokenizer.json"))
    enc = [tk.encode(s, add_special_tokens=False).ids for s in mixed]
    with open(os.path.join(out, f"hf-specials-{name}.out"), "w") as f:
        for ids in enc:
            f.write(" ".join(str(i) for i in ids) + "\n")
    for suffix, skip in (("dec", False), ("decskip", True)):
        tok_corpus.write_inp(os.path.join(out, f"hf-specials-{name}.{suffix}"),
                             [tk.decode(ids, skip_special_tokens=skip) for ids in enc])

# Split behaviours (Qwen2.5 vocabulary, no normalizer): Split(Regex "\\s+" or String " ",
# behavior) then ByteLevel without its regex, on the special-token soup: ids only.
for beh in ["Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
    pat = {"String": " "} if beh == "Contiguous" else {"Regex": "\\s+"}
    j = json.load(open(os.path.join(shared, "models/qwen2.5-tokenizer/tokenizer.json")))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": pat, "behavior": beh, "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
         "use_regex": False}]}
    tk = Tokenizer.from_str(json.dumps(j))
    with open(os.path.join(out, f"hf-split-{beh}.out"), "w") as f:
        for s in mixed:
            f.write(" ".join(str(i) for i in tk.encode(s, add_special_tokens=False).ids) + "\n")
print("tokenizers", tokenizers.__version__)
