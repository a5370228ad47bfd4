"""tok_corpus.py — the varied test corpus for the tokenizer fixtures (deterministic, seed 1234).

Imported by gen_tok_sp.py (Debian python3 + python3-sentencepiece) and gen_tok_hf.py (python with
Hugging Face `tokenizers`). Strings: prose, code, CJK, emoji (incl. ZWJ sequences), runs of spaces,
tabs and newlines, digits, mixed scripts, combining marks (NFC matters), random Unicode soup.
The strings avoid "<s>", "</s>", "<unk>" (SentencePiece reads them as text, tokenizer.json as
special tokens)."""
import random

SEP = "__ggml_vocab_test__"

FIXED = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t\n ", "a", " a", "a ", "Hello world",
    " Hello world", "Hello  world", "Hello\nworld", "   leading and trailing   ",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; i++) { s += a[i]; }",
    "if x != None and y >= 3:\n\tprint(f\"{x!r}\")\n", "<html><body class=\"x\">&amp;</body></html>",
    "1234567890", "3.14159265358979", "1,000,000 + 2,500 = 1,002,500", "0x1F 0b1010 1e-9",
    "你好，世界！今天天气很好。", "日本語のテキストとカタカナ、ひらがな。", "한국어 문장입니다.",
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "ภาษาไทย", "🦙🦙 llama 🚀 rocket 👩‍👩‍👧‍👦 family 🇫🇷 flag", "emoji at end 😀",
    "café naïve résumé", "cafe\u0301 nai\u0308ve", "e\u0301\u0301 o\u0308\u0304", "ﬁ ﬂ ① ㈱ Ⅻ",
    "mixed English 和中文 and русский и 日本語 123 🙂",
    "I've been 'there' — it's what we'd do; they'll say “hi” … OK?",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE", "UPPER lower MiXeD", "a\u00a0b\u2003c\u3000d",
    "tabs\tand\ttabs\t\t\tend", "trailing newlines\n\n", "\r\n windows \r\n line \r\n",
    "    indented code\n        more\n", "!!!???...,,,;;;:::", "@user #hashtag $100 %50 ^&*()",
    "https://example.com/path?q=1&r=2#frag", "email@example.org", "under_score snake_case_name",
    "C++ and C# and F#", "▁already▁has▁metaspace", "Ġbyte Ċ level ĉ chars",
]

SCRIPTS = [
    (0x41, 0x5A), (0x61, 0x7A), (0x30, 0x39), (0x20, 0x20), (0x0A, 0x0A), (0x21, 0x2F),
    (0xC0, 0xFF), (0x391, 0x3C9), (0x410, 0x44F), (0x5D0, 0x5EA), (0x627, 0x64A), (0x905, 0x939),
    (0x3041, 0x3093), (0x30A1, 0x30F6), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F600, 0x1F64F),
    (0x1F300, 0x1F3FF), (0x300, 0x36F), (0x2000, 0x206F), (0xFF01, 0xFF5E),
]

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could people "
         "my than first water been call who oil its now find long down day did get come made may "
         "part tokenizer merges vocabulary adapter gradient quantisation").split()


def soup(rng, n):
    out = []
    for _ in range(n):
        a, b = rng.choice(SCRIPTS)
        out.append(chr(rng.randint(a, b)))
    return "".join(out)


def prose(rng, n):
    ws = []
    for _ in range(n):
        w = rng.choice(WORDS)
        r = rng.random()
        if r < 0.1:
            w = w.capitalize()
        elif r < 0.13:
            w = w.upper()
        elif r < 0.2:
            w += rng.choice([",", ".", "!", "?", ";", ":", "'s", "n't"])
        elif r < 0.25:
            w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
        ws.append(w)
    seps = [" ", " ", " ", " ", "  ", "\n", "\n\n", "\t", "   "]
    return "".join(w + rng.choice(seps) for w in ws).rstrip(" ") if ws else ""


def corpus():
    rng = random.Random(1234)
    out = list(FIXED)
    for i in range(120):
        k = i % 4
        if k == 0:
            out.append(prose(rng, rng.randint(3, 40)))
        elif k == 1:
            out.append(soup(rng, rng.randint(1, 30)))
        elif k == 2:
            out.append(prose(rng, 5) + soup(rng, 5) + prose(rng, 5))
        else:
            out.append(" " * rng.randint(0, 5) + prose(rng, 8) + "\n" * rng.randint(0, 3) +
                       " " * rng.randint(0, 6))
    return out


def write_inp(path, strings):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for s in strings:
            f.write(s + "\n" + SEP + "\n")


def gguf_extra():
    """Strings for the GGUF tokenizers (bytes: some are not UTF-8): special tokens of every family
    next to each other, inside words and half-written; invalid and overlong UTF-8 (llama.cpp reads
    it as U+FFFD / the short form), a NUL, non-ASCII digits (digit splitting), long runs, and
    texts over 4 KiB (the encoder's word cache). Code points above U+10FFFF and surrogates are left
    out: llama.cpp cannot write them back (it throws or keeps the bytes)."""
    rng = random.Random(77)
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>",
                "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<tool_call>", "</tool_call>",
                "<repo_name>", "<reponame>", "<file_sep>", "<jupyter_code>", "<0x0A>",
                "<|reserved_special_token_0|>", "\u2581<PRE>", "[INST]", "<|user|>", "<|end|>",
                "<|assistant|>"]
    out = [
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
        "<s>[INST] Hello [/INST] Hi</s>", "<s> <s>  </s></s>", "x<|im_start|x", "<|im_end",
        "<|im_end|><|im_end", " <|im_start|> ", "\n<|im_end|>\n", "<tool_call>{\"a\": 1}</tool_call>",
        "<|fim_prefix|>def f(x):<|fim_suffix|>\n    return y<|fim_middle|>",
        "<repo_name>lorakit<reponame>x<file_sep>a.c\n", "<jupyter_start><jupyter_code>print(1)",
        "<unk> <0x0A> \u2581<PRE> <|reserved_special_token_0|>", "<<|im_start|>>", "<|<|eot_id|>|>",
        "\u0661\u0662\u0663\u0664\u0665 \u0663.\u0661\u0664 \u2460\u2461\u2462 \u216b \u00bd",
        "1" * 100, "12345678901234567890 0.000001 -42 1e10 3,141,592", " " * 300, "\n" * 50,
        "\t" * 9 + "x", "a" + " " * 7 + "b" + "\u3000" * 3 + "c\u00a0\u00a0d", "\r\n\r\n \r\n",
        "Hello'S World'LL it'Re", "\U0001F9D1\u200D\U0001F4BB \U0001F44D\U0001F3FD \u2764\uFE0F",
        "<|user|>\n Hi <|end|> \n<|assistant|>\n\n Hello</s>  x <s> y <unk> z<|endoftext|> w",
    ]
    out = [s.encode() for s in out]
    out += [b"\xff", b"abc\x80def", b"\xe4\xb8", b"tail \xe4\xb8\xad\xe6", b"\xc0\x80 overlong",
            b"\xe0\x80\xaf slash", b"a\x00b", b"\xf8\x88\x80\x80\x80 five", b"<|im_start|>\xff<|im_end|>"]
    for i in range(30):
        parts = []
        for _ in range(rng.randint(2, 8)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(specials))
            elif r < 0.7:
                parts.append(prose(rng, rng.randint(1, 6)))
            else:
                parts.append(soup(rng, rng.randint(1, 8)))
        out.append("".join(parts).encode())
    long_prose = prose(random.Random(3), 1200)
    out.append(long_prose.encode())
    out.append(("def f(x):\n    return x * 2  # twice\n\n" * 150).encode())
    out.append((long_prose[:3000] + "<|im_end|>" + long_prose[3000:6000]).encode())
    return out


def write_inp_bytes(path, strings):
    with open(path, "wb") as f:
        for s in strings:
            f.write(s + ("\n" + SEP + "\n").encode())
