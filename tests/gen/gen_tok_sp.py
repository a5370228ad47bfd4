"""gen_tok_sp.py — SentencePiece reference ids for the tokenizer tests.

Run by hand with Debian's python (apt-get install python3-sentencepiece):
    /usr/bin/python3 tests/gen/gen_tok_sp.py ../shared tests/data/tok
Writes corpus.inp (the strings of tok_corpus.py, separated as llama.cpp's ggml-vocab files are) and
sp-llama2.out / sp-mistral.out: one line of ids per string, no BOS, from tokenizer.model."""
import os
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(__file__))
import tok_corpus  # noqa: E402

shared, out = sys.argv[1], sys.argv[2]
strings = tok_corpus.corpus()
tok_corpus.write_inp(os.path.join(out, "corpus.inp"), strings)
for name, rel in [("llama2", "models/llama2-tokenizer/tokenizer.model"),
                  ("mistral", "models/mistral-7b-instruct-v0.2/tokenizer.model")]:
    sp = spm.SentencePieceProcessor(model_file=os.path.join(shared, rel))
    with open(os.path.join(out, f"sp-{name}.out"), "w") as f:
        for s in strings:
            f.write(" ".join(str(i) for i in sp.encode(s)) + "\n")
print("sentencepiece", spm.__version__ if hasattr(spm, "__version__") else "?", len(strings))
