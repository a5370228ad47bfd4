"""gen_gguf_tok.py — llama.cpp's own tokenizer on GGUF vocabularies: the references of
tests/test_gguf_tok.c (written to tests/data/tok/gguf-*).

Run by hand with the peers of /root/peers (llama.cpp 0c1e57098 from llama-cpp-python 0.3.36's
sdist, built into /root/peers/llama.cpp-build; a venv with transformers 4.46.3 and gguf):
    /root/peers/venv/bin/python tests/gen/gen_gguf_tok.py ../shared tests/data/tok \\
        /root/peers/llama-cpp-python-src/llama_cpp_python-0.3.36/vendor/llama.cpp \\
        /root/peers/llama.cpp-build/bin

Vocabularies: SmolLM2-135M-Instruct's GGUF and ggml-vocab-llama-spm.gguf from ../shared; Qwen2.5
("qwen2") and Llama-3.2 ("llama-bpe") converted here with llama.cpp's convert_hf_to_gguf.py
--vocab-only from the tokenizer folders of ../shared (their GGUFs are too big to keep: the C test
builds the same metadata with lorakit's writer, and gguf-meta.json holds digests of llama.cpp's
tokenizer keys so that the test checks the two files agree). Texts: corpus.inp, specials.inp and
gguf-extra.inp (tok_corpus.gguf_extra, written here). llama_tok_dump.c, compiled against
libllama, runs llama_tokenize (parse_special on, add_special off and on) and llama_detokenize.

Writes, per vocabulary V and text file T:
  gguf-V-T.out      ids without special tokens (llama-tokenize --no-bos), one line per string;
  gguf-V-T.dec      llama_detokenize(ids, remove_special=false, unparse_special=true), only when it
                    differs from the input for some string (else the test expects the input);
  gguf-V-T.decskip  the same with unparse_special=false, kept on the same condition;
  gguf-meta.json    what add_special adds (checked to be the same prefix/suffix for every
                    string), the digests, the SmolLM2 chat renderings of transformers, versions;
  gguf-phi3-T       the same for Llama-2's vocabulary with Phi-3's added control tokens,
                    named "Phi-3-mini-4k-instruct" (general.name), which gives its special tokens
                    llama.cpp's rstrip (the texts with special tokens: specials, gguf-extra);
  gguf-pre-sweep.txt  every tokenizer.ggml.pre name llama.cpp knows, on SmolLM2's vocabulary with
                    the name swapped in (and add_bos_token dropped, so the name's default shows):
                    FNV-1a digests of the ids of each string of corpus.inp + gguf-extra.inp,
                    grouped by equal results, the BOS that add_special gives and a digest of the
                    decoded texts.
transformers 4.46.3, loading SmolLM2's tokenizer from the GGUF (gguf_file=): its ids on every
UTF-8 string are checked to be llama.cpp's under pre "gpt-2" (transformers drops SmolLM's digit
split), and kept in gguf-meta.json for the strings where they differ from llama.cpp's smollm ids;
its apply_chat_template renderings of five conversations (text and ids) too."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import gguf
import transformers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
import tok_corpus  # noqa: E402

SEP = "\n" + tok_corpus.SEP + "\n"
shared, out, llama_src, llama_lib = sys.argv[1:5]
here = os.path.dirname(os.path.abspath(__file__))
tmp = tempfile.mkdtemp(prefix="gguf-tok-")

SMOLLM = os.path.join(shared, "models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf")
SPM = os.path.join(shared, "models/ggml-vocab/ggml-vocab-llama-spm.gguf")


def fnv64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
    return h


def build_dump():
    exe = os.path.join(tmp, "llama_tok_dump")
    subprocess.check_call(["gcc", "-O1", "-o", exe, os.path.join(here, "llama_tok_dump.c"),
                           "-I" + os.path.join(llama_src, "include"),
                           "-I" + os.path.join(llama_src, "ggml/include"), "-L" + llama_lib,
                           "-lllama", "-Wl,-rpath," + llama_lib])
    return exe


def convert(name, files):
    """A vocab-only GGUF by llama.cpp's converter from a folder with these files."""
    d = os.path.join(tmp, name)
    os.makedirs(d)
    for f in files:
        shutil.copy(os.path.join(shared, f), d)
    path = os.path.join(tmp, name + ".gguf")
    subprocess.check_call([sys.executable, os.path.join(llama_src, "convert_hf_to_gguf.py"), d,
                           "--vocab-only", "--outfile", path], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    return path


def read_inp(path):
    data = open(path, "rb").read()
    parts = data.split(SEP.encode())
    assert parts[-1] == b""
    return parts[:-1]


def dump(exe, model, inp):
    """llama.cpp's ids (no special), ids with add_special, decodes: lists per string."""
    prefix = os.path.join(tmp, "dump")
    r = subprocess.run([exe, model, inp, prefix], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    ids = [[int(x) for x in l.split()] for l in open(prefix + ".out").read().split("\n")[:-1]]
    ids_s = [[int(x) for x in l.split()] for l in open(prefix + ".outs").read().split("\n")[:-1]]
    return ids, ids_s, read_inp(prefix + ".dec"), read_inp(prefix + ".decskip")


def special_frame(ids, ids_s):
    """The prefix and suffix add_special puts around every string (must be the same for all)."""
    frames = None
    for a, b in zip(ids, ids_s):
        here = {(tuple(b[:p]), tuple(b[p + len(a):])) for p in range(len(b) - len(a) + 1)
                if b[p:p + len(a)] == a}
        frames = here if frames is None else frames & here
    assert len(frames) == 1, frames
    pre, post = frames.pop()
    return list(pre), list(post)


def write_ids(path, ids):
    with open(path, "w") as f:
        for l in ids:
            f.write(" ".join(str(i) for i in l) + "\n")


def kv_bytes(field):
    """A metadata value as GGUF stores it (type, then payload): what the digests cover."""
    t = field.types[0]
    b = int(t).to_bytes(4, "little")
    if t == gguf.GGUFValueType.ARRAY:
        et = field.types[1]
        b += int(et).to_bytes(4, "little") + len(field.data).to_bytes(8, "little")
        for i in field.data:
            p = bytes(field.parts[i])
            if et == gguf.GGUFValueType.STRING:
                b += len(p).to_bytes(8, "little")
            b += p
        return b
    p = bytes(field.parts[field.data[0]])
    if t == gguf.GGUFValueType.STRING:
        b += len(p).to_bytes(8, "little")
    return b + p


DIGEST_KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
               "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.scores",
               "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
               "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
               "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
               "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
               "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
               "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
               "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
               "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template"]


def digests(path):
    r = gguf.GGUFReader(path)
    return {k: ("%016x" % fnv64(kv_bytes(r.fields[k])) if k in r.fields else None)
            for k in DIGEST_KEYS}


def pre_names():
    src = open(os.path.join(llama_src, "src/llama-vocab.cpp")).read()
    names = []
    for n in re.findall(r'tokenizer_pre == "([^"]+)"', src):
        if n not in names:
            names.append(n)
    return names


class KeySwap:
    """SmolLM2's metadata (no tensors; keys in drop left out) with the string key set to any
    value: written once by gguf-py with a placeholder, then the placeholder is replaced in the
    bytes (and the file re-padded) for each value."""
    MARK = "@@PLACEHOLDER@@"

    def __init__(self, key, drop=()):
        r = gguf.GGUFReader(SMOLLM)
        path = os.path.join(tmp, "swap-template.gguf")
        w = gguf.GGUFWriter(path, arch="llama")
        for k, f in r.fields.items():
            if k.startswith("GGUF.") or k == "general.architecture" or k in drop:
                continue
            t = f.types[0]
            if k == key:
                w.add_string(k, self.MARK)
            elif t == gguf.GGUFValueType.ARRAY:
                w.add_array(k, f.contents())
            else:
                w.add_key_value(k, f.contents(), t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        data = open(path, "rb").read()
        end = max(f.offset + sum(p.nbytes for p in f.parts)
                  for f in gguf.GGUFReader(path).fields.values())
        m = self.MARK.encode()
        at = data.index(len(m).to_bytes(8, "little") + m)
        self.head, self.tail = data[:at], data[at + 8 + len(m):end]

    def write(self, value, name="swap.gguf"):
        body = self.head + len(value.encode()).to_bytes(8, "little") + value.encode() + self.tail
        body += b"\0" * (-len(body) % 32)
        path = os.path.join(tmp, name)
        open(path, "wb").write(body)
        return path


PHI3_ADDED = ["<|endoftext|>", "<|assistant|>", "<|user|>", "<|end|>"]


def phi3():
    """llama.cpp's per-model attributes: under a Phi-3 general.name the special tokens strip the
    whitespace after them (not <unk>, <s>, <|endoftext|>; llama.cpp refuses a Phi-3 vocabulary
    without those and </s>). Llama-2's vocabulary with Phi-3's added control tokens, so named."""
    r = gguf.GGUFReader(SPM)
    path = os.path.join(tmp, "phi3.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        t, v = f.types[0], f.contents()
        if k == "general.name":
            v = "Phi-3-mini-4k-instruct"
        elif k == "tokenizer.ggml.tokens":
            v = v + PHI3_ADDED
        elif k == "tokenizer.ggml.scores":
            v = v + [0.0] * len(PHI3_ADDED)
        elif k == "tokenizer.ggml.token_type":
            v = v + [3] * len(PHI3_ADDED)
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, v)
        else:
            w.add_key_value(k, v, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main():
    exe = build_dump()
    extra = tok_corpus.gguf_extra()
    tok_corpus.write_inp_bytes(os.path.join(out, "gguf-extra.inp"), extra)
    inps = {name: os.path.join(out, name + ".inp") for name in ["corpus", "specials",
                                                                "gguf-extra"]}
    vocabs = {
        "smollm2": SMOLLM,
        "llama-spm": SPM,
        "qwen2": convert("qwen2", ["models/qwen2.5-tokenizer/" + f for f in
                                   ["tokenizer.json", "tokenizer_config.json", "vocab.json",
                                    "merges.txt"]] + ["models/qwen2.5-0.5b/config.json"]),
        "llama-bpe": convert("llama-bpe", ["models/llama-3.2-3b-instruct/" + f for f in
                                           ["tokenizer.json", "tokenizer_config.json",
                                            "special_tokens_map.json", "config.json"]]),
    }
    meta = {"llama.cpp": "0c1e57098 (llama-cpp-python 0.3.36)",
            "transformers": transformers.__version__, "gguf-py": "vendored with llama.cpp",
            "add_special": {}, "digests": {}}
    vocabs["phi3"] = phi3()
    for v, path in vocabs.items():
        frame = None
        for t, inp in inps.items():
            if v == "phi3" and t == "corpus":
                continue
            strings = read_inp(inp)
            ids, ids_s, dec, decskip = dump(exe, path, inp)
            assert len(ids) == len(strings), (v, t)
            write_ids(os.path.join(out, f"gguf-{v}-{t}.out"), ids)
            f = special_frame(ids, ids_s)
            assert frame in (None, f), (v, frame, f)
            frame = f
            for suffix, d in (("dec", dec), ("decskip", decskip)):
                p = os.path.join(out, f"gguf-{v}-{t}.{suffix}")
                if d != strings:
                    tok_corpus.write_inp_bytes(p, d)
                elif os.path.exists(p):
                    os.remove(p)
        meta["add_special"][v] = {"prefix": frame[0], "suffix": frame[1]}
        if v in ("qwen2", "llama-bpe"):
            meta["digests"][v] = digests(path)

    # transformers' tokenizer from SmolLM2's GGUF: its ids where they are not llama.cpp's, and
    # the check that those are llama.cpp's ids under pre "gpt-2" (transformers 4.46.3 converts
    # the GGUF vocabulary with the plain GPT-2 pre-tokenizer and drops smollm's digit split)
    tk = AutoTokenizer.from_pretrained(os.path.dirname(SMOLLM),
                                       gguf_file=os.path.basename(SMOLLM))
    # (no add_bos_token: each pre-tokenizer name's default shows)
    swap = KeySwap("tokenizer.ggml.pre", drop=("tokenizer.ggml.add_bos_token",))
    differ = {}
    for t, inp in inps.items():
        ids = [[int(x) for x in l.split()] for l in
               open(os.path.join(out, f"gguf-smollm2-{t}.out")).read().split("\n")[:-1]]
        gpt2 = dump(exe, swap.write("gpt-2"), inp)[0]
        for i, s in enumerate(read_inp(inp)):
            try:
                text = s.decode("utf-8")
            except UnicodeDecodeError:
                continue
            hf = tk.encode(text, add_special_tokens=False)
            assert hf == gpt2[i], (t, i, text)
            if hf != ids[i]:
                differ.setdefault(t, {})[str(i)] = hf
    meta["transformers_differs"] = differ
    convs = [
        ([{"role": "user", "content": "What is the capital of France?"}], True),
        ([{"role": "user", "content": "What is the capital of France?"}], False),
        ([{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Arr! Ahoy."}, {"role": "user", "content": "Bye"}],
         True),
        ([{"role": "user", "content": "Write code:\n```c\nint x = 1;\n```"},
          {"role": "assistant", "content": "Done.\n\n  Indented <|im_end|> text"}], False),
        ([{"role": "user", "content": "  spaces  "}, {"role": "assistant", "content": ""},
          {"role": "user", "content": "\u4f60\u597d \U0001F642"}], True),
    ]
    meta["chat"] = [{"messages": m, "add_generation_prompt": g,
                     "text": tk.apply_chat_template(m, tokenize=False, add_generation_prompt=g),
                     "ids": tk.apply_chat_template(m, tokenize=True, add_generation_prompt=g)}
                    for m, g in convs]

    # every pre-tokenizer name on SmolLM2's vocabulary
    sweep_inp = os.path.join(tmp, "sweep.inp")
    with open(sweep_inp, "wb") as f:
        f.write(open(inps["corpus"], "rb").read() + open(inps["gguf-extra"], "rb").read())
    groups, lines = [], []
    for name in pre_names():
        r = dump(exe, swap.write(name), sweep_inp)
        if r is None:
            lines.append(f"name {name} refused")
            continue
        ids, ids_s, dec, _ = r
        dg = " ".join("%016x" % fnv64(" ".join(str(i) for i in l).encode()) for l in ids)
        if dg not in groups:
            groups.append(dg)
        pre, post = special_frame(ids, ids_s)
        decd = fnv64(b"".join(d + SEP.encode() for d in dec))
        lines.append(f"name {name} {groups.index(dg)} {pre[0] if pre else -1} {decd:016x}")
    with open(os.path.join(out, "gguf-pre-sweep.txt"), "w") as f:
        f.write("# gen_gguf_tok.py: tokenizer.ggml.pre names on SmolLM2's vocabulary; see the "
                "README\n")
        for i, g in enumerate(groups):
            f.write(f"group {i} {g}\n")
        for l in lines:
            f.write(l + "\n")
    with open(os.path.join(out, "gguf-meta.json"), "w") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    shutil.rmtree(tmp)
    print("transformers differs:", {k: len(v) for k, v in differ.items()}, "groups", len(groups))


main()
