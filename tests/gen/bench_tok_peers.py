"""bench_tok_peers.py — peer figures for BENCHMARKS.md: encoding speed of Debian's
python3-sentencepiece on the Llama-2 tokenizer.model, and (when importable) Hugging Face
tokenizers on the tokenizer.json files, on the same English prose as lora-tokenize --bench.

    /usr/bin/python3 tests/gen/bench_tok_peers.py ../shared  # sentencepiece (Debian)
    python3 tests/gen/bench_tok_peers.py ../shared           # HF tokenizers (pip), if installed
Both write the prose file first: the "output" fields of llamafactory-demo/alpaca_en_demo.json
joined by blank lines (703,773 bytes) at /tmp/lk_prose.txt."""
import json
import os
import sys
import time

shared = sys.argv[1]
d = json.load(open(os.path.join(shared, "data/llamafactory-demo/alpaca_en_demo.json")))
text = "\n\n".join(x["output"] for x in d)
open("/tmp/lk_prose.txt", "w").write(text)
nbytes = len(text.encode())


def best(fn, reps=3):
    t = []
    for _ in range(reps):
        c0 = time.process_time()
        n = fn()
        t.append(time.process_time() - c0)
    return n, nbytes / min(t) / 1e6


try:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(
        model_file=os.path.join(shared, "models/llama2-tokenizer/tokenizer.model"))
    n, mbs = best(lambda: len(sp.encode(text)))
    print(f"sentencepiece {spm.__version__} llama2 whole text: {n} tokens, {mbs:.2f} MB/s")
    paras = text.split("\n\n")
    n, mbs = best(lambda: sum(len(x) for x in sp.encode(paras)))
    print(f"sentencepiece {spm.__version__} llama2 per paragraph: {n} tokens, {mbs:.2f} MB/s")
except ImportError:
    pass
try:
    os.environ["RAYON_NUM_THREADS"] = "1"
    import tokenizers
    for name in ["qwen2.5-tokenizer", "llama-3.2-3b-instruct", "llama2-tokenizer"]:
        tk = tokenizers.Tokenizer.from_file(os.path.join(shared, "models", name,
                                                         "tokenizer.json"))
        n, mbs = best(lambda: len(tk.encode(text, add_special_tokens=False).ids))
        print(f"tokenizers {tokenizers.__version__} {name} whole text: {n} tokens, {mbs:.2f} MB/s")
except ImportError:
    pass
